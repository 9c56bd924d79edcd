"""Numbers the deploy files must agree with, shared by the deploy tests."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# After CONVEYOR_SHUTDOWN_GRACE_SECONDS, the processor still drains its polls (up to 1 s) and flushes
# its deletes: it exits within about grace + 5 s.
PROCESSOR_DRAIN_SECONDS = 5
IMAGE_UID = 10001  # deploy/Dockerfile's USER
SQS_IN_FLIGHT_LIMIT = 120_000  # messages in flight per standard queue
# The claim check's bucket (a public contract, the name is fixed): the writer stores large payloads in
# it, the processor fetches and deletes them. The settings-name checks accept it even where a settings
# class does not name it, so that the deploy files and Conveyor's own settings can change apart (a
# Conveyor without it ignores the variable).
PAYLOAD_BUCKET_VARIABLE = "CONVEYOR_PAYLOAD_BUCKET"
