"""The naive writer: what most tutorials write. A FastAPI endpoint that sends each request's
message with one boto3 ``send_message`` (a plain ``def``: FastAPI runs it in its thread pool).

Configured with ``CONVEYOR_SQS_ENDPOINT_URL`` and ``CONVEYOR_QUEUE_URL``; served by uvicorn:
``python -m uvicorn bench.baselines.naive_writer:app``. ``/metrics`` counts its SQS calls.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
from fastapi import FastAPI
from prometheus_client import make_asgi_app
from pydantic import BaseModel

from bench.baselines.counting import count_calls

QUEUE_URL = os.environ["CONVEYOR_QUEUE_URL"]
sqs = count_calls(boto3.client("sqs", endpoint_url=os.environ.get("CONVEYOR_SQS_ENDPOINT_URL")))

app = FastAPI()
app.mount("/metrics", make_asgi_app())


class NewMessage(BaseModel):
    body: Any
    attributes: dict[str, str] = {}


@app.post("/messages", status_code=202)
def post_message(message: NewMessage) -> dict[str, str]:
    attributes = {name: {"DataType": "String", "StringValue": value} for name, value in message.attributes.items()}
    sent = sqs.send_message(QueueUrl=QUEUE_URL, MessageBody=json.dumps(message.body), MessageAttributes=attributes)
    return {"message_id": sent["MessageId"]}


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
