"""The no-op ceiling: the same request as the writers get (parsed and validated the same way as the
naive writer's), answered 202 with no AWS call. What FastAPI and uvicorn alone cost per request on
this machine with the project's Python: ``python -m uvicorn bench.baselines.noop_writer:app``."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class NewMessage(BaseModel):
    body: Any
    attributes: dict[str, str] = {}


@app.post("/messages", status_code=202)
async def post_message(message: NewMessage) -> dict[str, str]:
    return {"message_id": str(uuid.uuid4())}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
