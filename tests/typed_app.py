"""A user's app as the contract shows it: typed handlers of two types, one sync, a default, and what
each was called with (the tests read ``CALLS``)."""

from __future__ import annotations

import threading
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, Field

import conveyor

app = conveyor.App()
CALLS: list[tuple[str, object, conveyor.Message | None, str]] = []  # (type, payload, message, thread)


class Currency(StrEnum):
    EUR = "EUR"
    USD = "USD"


class Line(BaseModel):
    sku: str
    quantity: int = Field(ge=1)


class OrderCreated(BaseModel):
    order_id: str
    amount: Decimal
    currency: Currency = Currency.EUR
    lines: list[Line] = []


class OrderCancelled(BaseModel):
    order_id: str
    reason: str = ""


@app.handler("order.created")
async def on_order(order: OrderCreated, message: conveyor.Message) -> None:
    if order.order_id == "retry-me":
        raise conveyor.Retry(after=7)
    if order.order_id == "reject-me":
        raise conveyor.Reject("refused by the handler")
    if order.order_id == "boom":
        raise RuntimeError("the downstream failed")
    CALLS.append(("order.created", order, message, threading.current_thread().name))


@app.handler("order.cancelled")
def on_cancel(cancelled: OrderCancelled) -> None:  # a plain function: run in a thread, no message parameter
    CALLS.append(("order.cancelled", cancelled, None, threading.current_thread().name))
