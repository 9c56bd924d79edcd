"""Handlers used by tests that run the real `queue-processor` (CONVEYOR_HANDLER=tests.handlers:...).

Each records what it saw in the SQLite file named by CONVEYOR_TEST_RECORD (one row per delivery,
with the pid of the process that handled it), so tests assert on deliveries, not on logs.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import time
from contextlib import closing

from conveyor import Message, PermanentError

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS deliveries"
    " (message_id TEXT, body TEXT, request_id TEXT, receive_count INT, at REAL, pid INT)"
)


def record(message: Message) -> None:
    path = os.environ.get("CONVEYOR_TEST_RECORD")
    if not path:
        return
    with closing(sqlite3.connect(path, timeout=30)) as db, db:
        db.execute(SCHEMA)
        db.execute(
            "INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?)",
            (message.message_id, message.body, message.request_id, message.receive_count, time.time(), os.getpid()),
        )


async def work(message: Message) -> None:
    """Parse, sleep CONVEYOR_TEST_SLEEP seconds (default 0.1), record."""
    message.json()
    await asyncio.sleep(float(os.environ.get("CONVEYOR_TEST_SLEEP", "0.1")))
    record(message)


async def flaky(message: Message) -> None:
    """Fail CONVEYOR_TEST_FAIL_RATE of the calls (default 0.2) at random, else like ``work``."""
    if random.random() < float(os.environ.get("CONVEYOR_TEST_FAIL_RATE", "0.2")):
        raise RuntimeError("injected failure")
    await work(message)


async def always_fail(message: Message) -> None:
    raise RuntimeError("this handler always fails")


def blocking(message: Message) -> None:
    """A plain function (run in a thread): block CONVEYOR_TEST_SLEEP seconds (default 0.1), record."""
    time.sleep(float(os.environ.get("CONVEYOR_TEST_SLEEP", "0.1")))
    record(message)


class BadAmountError(PermanentError):
    """A permanent error of the test's own (dead-lettered at once, recorded by its qualified name)."""


async def fail_by_type(message: Message) -> None:
    """Raise what the body names (``{"fail": "ValueError" | "KeyError" | "BadAmountError"}``), else
    like ``work``: so that one run fills the DLQ with several error types."""
    kind = message.json().get("fail")
    if kind == "ValueError":
        raise ValueError("bad value")
    if kind == "KeyError":
        raise KeyError("missing key")
    if kind == "BadAmountError":
        raise BadAmountError("amount below zero")
    record(message)


async def down_while_marked(message: Message) -> None:
    """A downstream that is down while the file CONVEYOR_TEST_DOWN_FILE exists (every call fails), else
    like ``work``."""
    if os.path.exists(os.environ["CONVEYOR_TEST_DOWN_FILE"]):  # noqa: ASYNC240 - one stat, the test's switch
        raise ConnectionError("downstream refused the connection")
    await work(message)
