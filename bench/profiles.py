"""What a run measures: the full benchmark (`make bench`) and the quick one (`make bench-quick`, CI).

The quick profile keeps every point of the full one (each concurrency, each client count, both
systems) and shortens each measurement, so the gate checks the same comparisons on every commit.
"""

from __future__ import annotations

from dataclasses import dataclass

CONVEYOR = "conveyor"
NAIVE = "naive-boto3"  # the baseline as tutorials write it (consumer, and FastAPI + boto3 writer)
NOOP = "noop-fastapi"  # the writer's ceiling: FastAPI + uvicorn answering without an AWS call


@dataclass(frozen=True)
class Profile:
    name: str
    processor_concurrency: tuple[int, ...] = (10, 50, 100)
    processor_seconds: float = 20.0  # about how long one drain at the ideal rate takes
    handler_seconds: float = 0.1
    rss_run: bool = True  # Conveyor with 1,000 handlers in flight (1 s handler): peak RSS
    writer_clients: tuple[int, ...] = (1, 16, 64)
    writer_seconds: float = 10.0
    latency_rate: float = 200.0  # messages posted per second, steady
    latency_seconds: float = 30.0
    cost_rates: tuple[float, ...] = (20, 50, 200, 1000)  # steady rates of the cost curve (none: not run)
    cost_windows_ms: tuple[float, ...] = (0, 20, 100, 250)  # CONVEYOR_BATCH_WINDOW_MS at each rate
    cost_seconds: float = 15.0
    # (MiB, messages, clients) of bench/scenarios/payloads.py (none: not run): enough messages for a rate,
    # few enough for a short run; the last one posts one 32 MiB body at a time
    payload_points: tuple[tuple[int, int, int], ...] = ((1, 20, 2), (5, 10, 2), (32, 4, 2), (32, 2, 1))
    # bench/scenarios/mirror.py (0 rounds: not run): off/on rounds of the A/B, then the mirror queue deleted mid-load
    mirror_rounds: int = 3
    mirror_seconds: float = 5.0
    mirror_clients: int = 64
    mirror_fault_seconds: float = 10.0


FULL = Profile("full")
# The cost curve (about 8 min) is left out of the quick run: what it shows is design-guaranteed and
# unit-tested (tests/unit/test_batch_window.py); the full run measures it.
# The payloads through S3 (about a minute) too: the unit and LocalStack tests cover their correctness.
QUICK = Profile(
    "quick", processor_seconds=2.5, rss_run=False, writer_seconds=2.5, latency_seconds=5.0, cost_rates=(),
    payload_points=(), mirror_rounds=0,
)  # fmt: skip
PROFILES = {profile.name: profile for profile in (FULL, QUICK)}
