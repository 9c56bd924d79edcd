"""The handler's own log lines (stdlib ``logging`` and ``conveyor.get_logger``) come out through the
processor's structlog output, with the message's ids bound, at the level the user asked for."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

SCRIPT = """
import asyncio, logging, sys
import conveyor
from conveyor.logs import configure_logging
from conveyor.testing import make_message, run

configure_logging(sys.argv[1], sys.argv[2])
app = conveyor.App()
log = conveyor.get_logger("shop.orders")

@app.handler("order.created")
def on_order(order: dict) -> None:
    logging.getLogger("shop").info("stdlib info %s", order["id"])
    logging.getLogger("shop").warning("stdlib warning", extra={"order_id": order["id"]})
    log.info("structured", order_id=order["id"])
    logging.getLogger("botocore.credentials").info("Found credentials in environment variables.")
    try:
        raise ValueError("inner")
    except ValueError:
        logging.getLogger("shop").exception("it failed")

message = make_message({"id": "o-1"}, type="order.created", message_id="m-42", request_id="req-7")
asyncio.run(run(app, message))
"""


def lines(fmt: str, level: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, fmt, level], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stderr.splitlines()


def test_json_lines_carry_the_message_ids_type_and_logger() -> None:
    records = [json.loads(line) for line in lines("json", "info")]
    by_event = {r["event"]: r for r in records}
    for event in ("stdlib info o-1", "stdlib warning", "structured", "it failed"):
        record = by_event[event]
        assert (record["message_id"], record["request_id"], record["message_type"]) == (
            "m-42",
            "req-7",
            "order.created",
        )
    assert by_event["stdlib info o-1"]["logger"] == "shop"
    assert by_event["stdlib info o-1"]["level"] == "info"
    assert by_event["stdlib warning"]["order_id"] == "o-1"  # logging's extra={...} become fields
    assert by_event["structured"]["logger"] == "shop.orders"
    assert by_event["structured"]["order_id"] == "o-1"
    assert "ValueError: inner" in by_event["it failed"]["exception"]
    assert "Found credentials in environment variables." not in by_event  # a library's chatter stays out


def test_the_level_the_user_asked_for_holds_for_the_handlers_lines() -> None:
    events = {json.loads(line)["event"] for line in lines("json", "warning")}
    assert "stdlib warning" in events
    assert "it failed" in events
    assert "stdlib info o-1" not in events
    assert "structured" not in events


@pytest.mark.parametrize("level", ["debug", "info"])
def test_console_lines_carry_the_ids_too(level: str) -> None:
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines("console", level)]  # without colours
    [line] = [line for line in plain if "stdlib info o-1" in line]
    assert "message_id=m-42" in line
    assert "message_type=order.created" in line
