"""The writer's side of typed contracts: a body is validated against its type's model before
anything is sent, with the same answers on the fast path and the FastAPI route; the type travels as
``conveyor.type``; the API documents show each type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pydantic
import pytest
from pydantic import BaseModel
from pydantic_core import core_schema

import conveyor
from conveyor import metadata
from conveyor.settings import WriterSettings
from conveyor.testing.sqs import InMemorySqs
from tests import typed_app
from tests.unit.conftest import QUEUE, running_writer

PROBLEM = "application/problem+json"
ORDER = {"order_id": "o-1", "amount": "12.50"}


@pytest.fixture
async def typed(fake: InMemorySqs, writer_settings: WriterSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_writer(fake, writer_settings, contracts=typed_app.app) as client:
        yield client


def on_queue(fake: InMemorySqs) -> list[tuple[str, dict[str, Any]]]:
    return [(m.body, m.attributes) for m in fake.queues[QUEUE].messages.values()]


async def test_a_valid_typed_message_is_sent_with_its_type(typed: httpx.AsyncClient, fake: InMemorySqs) -> None:
    answer = await typed.post("/messages", json={"type": "order.created", "body": ORDER})
    assert answer.status_code == 202
    [(body, attributes)] = on_queue(fake)
    assert body == '{"order_id":"o-1","amount":"12.50"}'  # as the client wrote it, not re-serialised
    assert attributes[metadata.TYPE] == {"DataType": "String", "StringValue": "order.created"}


async def test_an_invalid_body_is_a_422_naming_every_field_and_nothing_is_sent(
    typed: httpx.AsyncClient, fake: InMemorySqs
) -> None:
    body = {"order_id": 5, "lines": [{"sku": "a", "quantity": 0}]}
    answer = await typed.post("/messages", json={"type": "order.created", "body": body})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM
    problem = answer.json()
    assert problem["field"] == "body.order_id"
    assert [e["field"] for e in problem["errors"]] == ["body.order_id", "body.amount", "body.lines.0.quantity"]
    assert problem["title"] == "Invalid message"
    assert on_queue(fake) == []


@pytest.mark.parametrize(
    ("message", "detail"),
    [
        (
            {"type": "order.refunded", "body": ORDER},
            "no handler for message type 'order.refunded'; one of: order.cancelled, order.created",
        ),
        ({"body": ORDER}, "a message needs a type (this app has no default handler)"),
    ],
)
async def test_an_unknown_or_missing_type_is_a_422_naming_type(
    typed: httpx.AsyncClient, fake: InMemorySqs, message: dict[str, Any], detail: str
) -> None:
    answer = await typed.post("/messages", json=message)
    assert answer.status_code == 422
    assert answer.json()["field"] == "type"
    assert detail in answer.json()["detail"]
    assert on_queue(fake) == []


@pytest.mark.parametrize("name", ["has space", "", "é", "x" * 129])
async def test_a_type_name_out_of_the_rule_is_a_422(typed: httpx.AsyncClient, name: str) -> None:
    answer = await typed.post("/messages", json={"type": name, "body": ORDER})
    assert answer.status_code == 422
    assert answer.json()["field"] == "type"


async def test_with_a_default_handler_a_message_may_carry_no_type(
    fake: InMemorySqs, writer_settings: WriterSettings
) -> None:
    app = conveyor.App()

    class Ping(BaseModel):
        n: int

    @app.default
    async def ping(value: Ping) -> None: ...

    async with running_writer(fake, writer_settings, contracts=app) as client:
        assert (await client.post("/messages", json={"body": {"n": 1}})).status_code == 202
        refused = await client.post("/messages", json={"body": {"n": "x"}})
    assert refused.status_code == 422
    assert refused.json()["field"] == "body.n"
    [(_, attributes)] = on_queue(fake)
    assert metadata.TYPE not in attributes


async def test_without_an_app_the_type_travels_unchecked(api: httpx.AsyncClient, fake: InMemorySqs) -> None:
    assert (await api.post("/messages", json={"type": "anything.goes", "body": [1]})).status_code == 202
    [(_, attributes)] = on_queue(fake)
    assert attributes[metadata.TYPE]["StringValue"] == "anything.goes"


async def test_the_type_takes_one_of_the_ten_attribute_slots(typed: httpx.AsyncClient) -> None:
    # request id and content type are always there; with the type, 7 of the user's fit
    attributes = {f"a{i}": "v" for i in range(8)}
    answer = await typed.post("/messages", json={"type": "order.created", "body": ORDER, "attributes": attributes})
    assert answer.status_code == 422
    assert "at most 7 attributes" in answer.json()["detail"]


async def test_each_batch_entry_is_validated_on_its_own(typed: httpx.AsyncClient, fake: InMemorySqs) -> None:
    answer = await typed.post(
        "/messages/batch",
        json={"messages": [
            {"id": "good", "type": "order.created", "body": ORDER},
            {"id": "bad", "type": "order.created", "body": {"order_id": "o"}},
            {"id": "unknown", "type": "nope", "body": {}},
        ]},
    )  # fmt: skip
    assert answer.status_code == 200
    result = answer.json()
    assert [s["id"] for s in result["successful"]] == ["good"]
    failed = {f["id"]: f for f in result["failed"]}
    assert failed["bad"]["errors"] == [{"field": "body.amount", "message": "Field required"}]
    assert failed["bad"]["field"] == "body.amount"
    assert failed["unknown"]["status"] == 422
    assert "errors" not in failed["unknown"]  # only typed bodies list fields
    assert len(on_queue(fake)) == 1


async def test_the_openapi_document_shows_each_type_as_a_variant_discriminated_by_type(
    typed: httpx.AsyncClient,
) -> None:
    document = (await typed.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert {"OrderCreated", "OrderCancelled", "Line"} <= set(schemas)  # named after the models
    body = document["paths"]["/messages"]["post"]["requestBody"]["content"]["application/json"]
    mapping = body["schema"]["discriminator"]["mapping"]
    assert set(mapping) == {"order.created", "order.cancelled"}
    created = schemas[mapping["order.created"].rsplit("/", 1)[1]]
    assert created["properties"]["type"]["const"] == "order.created"
    assert created["properties"]["body"] == {"$ref": "#/components/schemas/OrderCreated"}
    assert "type" in created["required"]
    batch_items = schemas["BatchIn"]["properties"]["messages"]["items"]
    assert set(batch_items["discriminator"]["mapping"]) == {"order.created", "order.cancelled"}


async def test_every_example_in_the_openapi_document_is_accepted(typed: httpx.AsyncClient, fake: InMemorySqs) -> None:
    # what /docs offers to try must work as it is
    document = (await typed.get("/openapi.json")).json()
    examples = document["paths"]["/messages"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert set(examples) == {"order.created", "order.cancelled"}
    for example in examples.values():
        answer = await typed.post("/messages", json=example["value"])
        assert answer.status_code == 202, answer.text
    batch = document["paths"]["/messages/batch"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    for example in batch.values():
        assert (await typed.post("/messages/batch", json=example["value"])).json()["failed"] == []


async def test_the_writer_serves_the_asyncapi_document(typed: httpx.AsyncClient) -> None:
    document = (await typed.get("/asyncapi.json")).json()
    assert document["asyncapi"] == "3.0.0"
    assert set(document["components"]["messages"]) == {"order.created", "order.cancelled"}
    assert document["channels"]["queue"]["address"] == QUEUE


def _model_named(name: str, field: str) -> type[BaseModel]:
    return pydantic.create_model(name, __module__=f"shop.{field}", **{field: (str, ...)})  # type: ignore[call-overload, no-any-return]


async def test_models_of_one_name_or_of_the_apis_own_names_keep_apart(fake: InMemorySqs) -> None:
    app = conveyor.App()
    problem, first, second = _model_named("Problem", "code"), _model_named("Order", "a"), _model_named("Order", "b")
    app.handler("problem")(_typed(problem))
    app.handler("first")(_typed(first))
    app.handler("second")(_typed(second))
    async with running_writer(fake, WriterSettings(queue_name=QUEUE), contracts=app) as client:
        document = (await client.get("/openapi.json")).json()
        schemas = document["components"]["schemas"]
        assert set(schemas["Problem"]["properties"]) >= {"title", "status", "detail"}  # the API's own, kept
        body = document["paths"]["/messages"]["post"]["requestBody"]["content"]["application/json"]
        refs = {
            name: schemas[ref.rsplit("/", 1)[1]]["properties"]["body"]["$ref"].rsplit("/", 1)[1]
            for name, ref in body["schema"]["discriminator"]["mapping"].items()
        }
        assert len(set(refs.values())) == 3  # three payloads, three schemas
        assert set(schemas[refs["problem"]]["properties"]) == {"code"}
        assert {next(iter(schemas[refs[n]]["properties"])) for n in ("first", "second")} == {"a", "b"}
        for example in body["examples"].values():
            assert (await client.post("/messages", json=example["value"])).status_code == 202


def _typed(model: type[BaseModel]) -> Any:
    async def handler(value: Any) -> None: ...

    handler.__annotations__ = {"value": model, "return": None}
    return handler


class Coded(BaseModel):
    code: str = pydantic.Field(pattern=r"^[A-Z]{3}$", max_length=3)
    country: str = pydantic.Field(max_length=2)
    quantity: int = pydantic.Field(ge=10, le=20)
    price: float = pydantic.Field(gt=100)

    @pydantic.model_validator(mode="after")
    def known(self) -> Coded:
        return {"EUR": self}[self.code] if self.code != "XYZ" else self


def _coded_app() -> conveyor.App:
    app = conveyor.App()
    app.handler("coded")(_typed(Coded))
    app.handler("bounded")(_typed(pydantic.create_model("Bounded", n=(int, pydantic.Field(ge=10, le=20)))))
    return app


async def test_a_validator_that_crashes_is_a_422_for_its_message_alone(
    fake: InMemorySqs, writer_settings: WriterSettings
) -> None:
    good = {"code": "EUR", "country": "FR", "quantity": 12, "price": 120}
    async with running_writer(fake, writer_settings, contracts=_coded_app()) as client:
        single = await client.post("/messages", json={"type": "coded", "body": good | {"code": "GBP"}})
        batch = await client.post("/messages/batch", json={"messages": [
            {"id": "bad", "type": "coded", "body": good | {"code": "GBP"}},
            {"id": "good", "type": "coded", "body": good},
        ]})  # fmt: skip
    assert single.status_code == 422
    assert single.json()["errors"] == [{"field": "body", "message": "a validator of the model raised KeyError"}]
    assert [s["id"] for s in batch.json()["successful"]] == ["good"]
    assert [f["id"] for f in batch.json()["failed"]] == ["bad"]


async def test_examples_keep_to_the_schemas_bounds_or_are_left_out(fake: InMemorySqs) -> None:
    async with running_writer(fake, WriterSettings(queue_name=QUEUE), contracts=_coded_app()) as client:
        document = (await client.get("/openapi.json")).json()
        examples = document["paths"]["/messages"]["post"]["requestBody"]["content"]["application/json"]["examples"]
        assert set(examples) == {"bounded"}  # no body made from Coded's schema passes its pattern and validator
        assert examples["bounded"]["value"]["body"] == {"n": 11}
        for example in examples.values():
            assert (await client.post("/messages", json=example["value"])).status_code == 202


async def test_a_body_over_the_queues_limit_is_a_413_before_the_model_runs(fake: InMemorySqs) -> None:
    fake.queues[QUEUE].attributes["MaximumMessageSize"] = "1024"
    async with running_writer(fake, WriterSettings(queue_name=QUEUE), contracts=typed_app.app) as client:
        answer = await client.post("/messages", json={"type": "order.created", "body": {"lines": [{}] * 400}})
        many = await client.post("/messages", json={"type": "order.created", "body": {"lines": [{}] * 50}})
    assert answer.status_code == 413
    assert many.status_code == 422
    assert many.json()["detail"].endswith("(and 101 more)")  # every error counted, 20 listed
    assert len(many.json()["errors"]) == 20


class Money:
    """A user's own type, validated from text, that pydantic cannot describe as a JSON schema."""

    def __init__(self, text: str) -> None:
        self.text = text

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        return core_schema.no_info_plain_validator_function(cls)


class Priced(BaseModel):
    order_id: str
    price: Money


async def test_a_type_pydantic_cannot_describe_still_serves_its_documents(fake: InMemorySqs) -> None:
    app = conveyor.App()
    app.handler("priced")(_typed(Priced))
    app.handler("plain")(_typed(typed_app.OrderCancelled))
    async with running_writer(fake, WriterSettings(queue_name=QUEUE), contracts=app) as client:
        openapi = (await client.get("/openapi.json")).json()
        asyncapi = (await client.get("/asyncapi.json")).json()
        accepted = await client.post("/messages", json={"type": "priced", "body": {"order_id": "o", "price": "1 EUR"}})
    assert "pydantic cannot describe it" in openapi["components"]["schemas"]["Priced"]["description"]
    assert "OrderCancelled" in openapi["components"]["schemas"]  # the others described as ever
    assert set(asyncapi["components"]["messages"]) == {"priced", "plain"}
    assert accepted.status_code == 202  # validation is unchanged
