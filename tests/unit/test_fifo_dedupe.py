"""A FIFO batch handler with an idempotency store: a message the handler reported fine but released
behind a failed one of its group (to keep the order) has its key recorded as completed, so it is
skipped, not run again, when the group comes back."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conveyor import BatchFailures, Message, batch_handler, metadata
from conveyor.idempotency import Claim, open_store
from conveyor.processor.engine import Engine
from conveyor.processor.engine.dedupe import Dedupe
from conveyor.processor.user_code import adapt
from conveyor.testing.sqs import InMemorySqs, as_client
from tests.unit.engine_support import config_for, sample, started, until

QUEUE = "work.fifo"


def put_keyed(fake: InMemorySqs, name: str, key: str) -> None:
    attributes = {metadata.IDEMPOTENCY_KEY: {"DataType": "String", "StringValue": key}}
    fake.put(QUEUE, json.dumps({"name": name}), attributes, "g")


async def test_a_message_reported_fine_behind_a_retried_one_completes_once(tmp_path: Path) -> None:
    fake = InMemorySqs()
    fake.create(QUEUE)
    put_keyed(fake, "m1", "k1")
    put_keyed(fake, "m2", "k2")
    completed: Counter[str] = Counter()  # per message: the handler's runs that it reported fine
    batches: list[list[str]] = []

    @batch_handler
    def handle(messages: list[Message]) -> BatchFailures:
        names = [message.json()["name"] for message in messages]
        batches.append(names)
        failures: dict[str, BaseException] = {}
        for message, name in zip(messages, names, strict=True):
            if name == "m1" and message.receive_count == 1:
                failures[message.message_id] = ConnectionError("the database blinked")
            else:
                completed[name] += 1
        return failures

    async with open_store(f"sqlite:///{tmp_path}/s.sqlite3") as store:
        config = config_for(fake, QUEUE, visibility_timeout=1, retry_base_seconds=0, retry_max_seconds=0)
        dedupe = Dedupe(store, visibility_timeout=1, ttl_seconds=60, linger=0.01)
        with ThreadPoolExecutor(1) as pool:
            engine = Engine(as_client(fake), config, adapt(handle, pool), dedupe=dedupe)
            async with started(engine):
                await until(lambda: not fake.queues[QUEUE].messages, timeout=10)
        assert await store.claim(["k1", "k2"], "another-process", 60) == [Claim.COMPLETED, Claim.COMPLETED]
    assert batches[0] == ["m1", "m2"]  # one batch, in group order; m2 went back behind m1
    assert completed == {"m1": 1, "m2": 1}  # was: m2 twice (its claim was released, not completed)
    assert sample(engine, "conveyor_processor_duplicates_skipped_total") == 1  # m2, when it came back
    assert sorted(json.loads(m.body)["name"] for m in fake.queues[QUEUE].deleted) == ["m1", "m2"]
