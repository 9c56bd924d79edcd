"""Effectively once, what it costs: the processor at concurrency 50 with the 0.1 s
handler, without and with the Redis idempotency store, in the same run (one claim round trip per
received batch of ten, one for the completions). Target: with the store, still at least 90% of the
ideal drain rate.

    .venv/bin/python -m bench.run --only dedupe

The writer's side (Idempotency-Key replay) is measured in docs/idempotency.md.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from harness.redis import RedisServer

from bench.profiles import CONVEYOR, Profile
from bench.results import Emit
from bench.scenarios.processor import Drain, run_drain

CONCURRENCY = 50


def measure(endpoint: str, profile: Profile, emit: Emit) -> None:
    messages = int(CONCURRENCY / profile.handler_seconds * profile.processor_seconds)
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
        redis = RedisServer(Path(directory)).start()
        try:
            for store, extra in (("none", ()), ("redis", (("CONVEYOR_IDEMPOTENCY_STORE", redis.url),))):
                drain = Drain(CONVEYOR, CONCURRENCY, messages, profile.handler_seconds, extra)
                params = {"concurrency": CONCURRENCY, "messages": messages, "store": store}
                emit("processor-dedupe", CONVEYOR, params, run_drain(endpoint, drain))
        finally:
            redis.stop()
