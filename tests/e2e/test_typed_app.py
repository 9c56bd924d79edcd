"""A user's app, as a user writes it in a folder of their own: both services started there with
CONVEYOR_APP (no PYTHONPATH), typed posts valid and invalid, bodies sent straight to SQS past the
writer, the handler's own log lines, and the AsyncAPI document."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from conveyor.localstack import free_port
from tests.e2e.services import start, stopped_at_the_end
from tests.localstack_fixtures import Queues, drain, wait_for

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

pytestmark = pytest.mark.e2e

APP = """
import json
import logging
import os
from decimal import Decimal

from pydantic import BaseModel

import conveyor

app = conveyor.App()
log = logging.getLogger("shop.orders")


class OrderCreated(BaseModel):
    order_id: str
    amount: Decimal


@app.handler("order.created")
async def on_order(order: OrderCreated, message: conveyor.Message) -> None:
    log.info("order received %s", order.order_id)
    with open(os.environ["SHOP_RECORD"], "a") as record:
        line = {"order_id": order.order_id, "amount": str(order.amount), "id": message.message_id}
        record.write(json.dumps(line) + "\\n")
"""


def attribute(value: str) -> MessageAttributeValueTypeDef:
    return {"DataType": "String", "StringValue": value}


def env_for(queues: Queues, record: Path, **extra: str) -> dict[str, str]:
    env = queues.env(CONVEYOR_APP="shop.messages:app", SHOP_RECORD=str(record), CONVEYOR_WAIT_TIME_SECONDS="1", **extra)
    env.pop("PYTHONPATH", None)  # found from the folder the services start in, as uvicorn finds an app
    return env


def test_a_users_app_is_served_and_handled_from_its_folder(queues: Queues, sqs: SQSClient, tmp_path: Path) -> None:
    folder = tmp_path / "orders-service"
    (folder / "shop").mkdir(parents=True)
    (folder / "shop" / "__init__.py").write_text("")
    (folder / "shop" / "messages.py").write_text(textwrap.dedent(APP))
    record = tmp_path / "handled.jsonl"
    writer_port, processor_port = free_port(), free_port()
    writer_log, processor_log = tmp_path / "writer.log", tmp_path / "processor.log"
    writer_env = env_for(queues, record, CONVEYOR_WRITER_PORT=str(writer_port))
    processor_env = env_for(queues, record, CONVEYOR_PROCESSOR_PORT=str(processor_port))
    with (
        stopped_at_the_end(start("queue-writer", writer_env, writer_port, writer_log, cwd=folder)) as writer,
        stopped_at_the_end(start("queue-processor", processor_env, processor_port, processor_log, cwd=folder)),
    ):
        api = writer.url
        good = httpx.post(f"{api}/messages", json={"type": "order.created", "body": {"order_id": "o-1", "amount": 9.5}})
        bad = httpx.post(f"{api}/messages", json={"type": "order.created", "body": {"order_id": 1}})
        unknown = httpx.post(f"{api}/messages", json={"type": "order.refunded", "body": {}})
        assert good.status_code == 202
        assert (bad.status_code, bad.json()["field"]) == (422, "body.order_id")
        assert [e["field"] for e in bad.json()["errors"]] == ["body.order_id", "body.amount"]
        assert (unknown.status_code, unknown.json()["field"]) == (422, "type")
        # past the writer, straight to SQS: the processor judges them by the same model
        sqs.send_message(
            QueueUrl=queues.url,
            MessageBody='{"order_id": "o-2", "amount": "3"}',
            MessageAttributes={"conveyor.type": attribute("order.created")},
        )
        sqs.send_message(
            QueueUrl=queues.url,
            MessageBody='{"order_id": "o-3"}',
            MessageAttributes={"conveyor.type": attribute("order.created")},
        )
        sqs.send_message(QueueUrl=queues.url, MessageBody="{}", MessageAttributes={"conveyor.type": attribute("nope")})
        dead = drain(sqs, queues.dlq_url, 2, timeout=30)
        wait_for(lambda: record.exists() and len(record.read_text().splitlines()) == 2, 30, "both valid orders handled")
        document = httpx.get(f"{api}/asyncapi.json").json()
    handled = sorted(json.loads(line)["order_id"] for line in record.read_text().splitlines())
    assert handled == ["o-1", "o-2"]
    records = {
        r["error_type"]: r
        for r in (json.loads(m["MessageAttributes"]["conveyor.dead_letter"]["StringValue"]) for m in dead)
    }
    assert set(records) == {"conveyor.InvalidMessageError", "conveyor.UnknownMessageTypeError"}
    assert records["conveyor.InvalidMessageError"]["validation_errors"] == [
        {"field": "body.amount", "message": "Field required"}
    ]
    assert set(document["components"]["messages"]) == {"order.created"}
    lines = [json.loads(line) for line in processor_log.read_text().splitlines() if line.startswith("{")]
    [loaded] = [line for line in lines if line["event"] == "app_loaded"]
    assert loaded["handlers"] == {"order.created": "shop.messages:on_order"}
    handler_lines = [line for line in lines if line.get("logger") == "shop.orders"]
    assert {line["event"] for line in handler_lines} == {"order received o-1", "order received o-2"}
    assert all(line["message_type"] == "order.created" and line["message_id"] for line in handler_lines)
