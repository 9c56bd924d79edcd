"""Figures of a run (messages, duplicates, recovery times), appended as JSON lines to
.conveyor/reliability.jsonl; the quality report (`make report`, bench/report.py) shows the last
record of each test."""

from __future__ import annotations

import json
import time
from pathlib import Path

REPORT = Path(__file__).resolve().parents[2] / ".conveyor" / "reliability.jsonl"


def report(test: str, **figures: object) -> None:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with REPORT.open("a") as out:
        out.write(json.dumps({"test": test, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}))
        out.write("\n")
