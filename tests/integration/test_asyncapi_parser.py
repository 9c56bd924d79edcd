"""The AsyncAPI document (`conveyor asyncapi`, the writer's /asyncapi.json) as the AsyncAPI project's
own parser reads it: @asyncapi/parser, run by node through deploy/asyncapi/validate.mjs (installed by
`make asyncapi`). Valid by its rules, and what a consumer of the document sees through it (every
$ref followed) is each type's payload and its conveyor.type."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness.localstack import BIN, REPO

from conveyor.settings import WriterSettings
from conveyor.testing.sqs import InMemorySqs, as_client
from conveyor.writer.app import create_app

VALIDATE = REPO / "deploy/asyncapi/validate.mjs"
PARSER = REPO / "deploy/asyncapi/node_modules/@asyncapi/parser"
QUEUE = "orders"
# The one diagnostic allowed: the contract's document is AsyncAPI 3.0.0, and the parser recommends
# the newest version (an "info", not a warning).
ALLOWED = {("info", "asyncapi-latest-version")}

USER_APP = '''
    """A user's app: two typed types (one nested model, a Decimal, an enum, a list) and a default."""

    from __future__ import annotations

    from decimal import Decimal
    from enum import StrEnum

    from pydantic import BaseModel, Field

    import conveyor

    app = conveyor.App()


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


    class Refund(BaseModel):
        order_id: str
        amount: Decimal
        reason: str = Field(default="", description="Why, in the customer's words.")


    @app.handler("order.created")
    async def on_order(order: OrderCreated, message: conveyor.Message) -> None: ...


    @app.handler("billing/refund:v2")
    def on_refund(refund: Refund) -> None: ...


    @app.default
    def on_untyped(message: conveyor.Message) -> None: ...
'''


@pytest.fixture(scope="module")
def node() -> str:
    """node, with the parser installed; missing, the test fails (the contract says a test validates)."""
    found = shutil.which("node")
    if found is None or not PARSER.is_dir():
        pytest.fail("the AsyncAPI parser is not installed: run `make asyncapi` (node, npm ci in deploy/asyncapi)")
    return found


def parsed(node: str, text: str) -> dict[str, Any]:
    """What the parser says about the document ``text``: its diagnostics and its resolved messages."""
    result = subprocess.run(
        [node, str(VALIDATE), "--json"], input=text, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode in (0, 1), result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    assert result.returncode == (0 if answer["valid"] else 1)
    return answer


def assert_clean(answer: dict[str, Any]) -> None:
    """No error, no warning: every diagnostic but the allowed ones shown, to fix in asyncapi.py."""
    unexpected = [d for d in answer["diagnostics"] if (d["severity"], d["code"]) not in ALLOWED]
    assert not unexpected, "\n".join(f"{d['severity']} {d['code']} at {d['path']}: {d['message']}" for d in unexpected)
    assert answer["valid"]


def cli_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("CONVEYOR_")}
    return env | extra


def conveyor_asyncapi(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "conveyor"), "asyncapi", *args],
        cwd=folder, env=cli_env(**env), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    found: Any = document
    for part in ref.removeprefix("#/").split("/"):
        found = found[part.replace("~1", "/").replace("~0", "~")]
    return found


def type_const(headers: dict[str, Any]) -> str | None:
    """The conveyor.type constant a message's (resolved) headers schema requires, if any."""
    for schema in [headers, *headers.get("allOf", [])]:
        prop = schema.get("properties", {}).get("conveyor.type", {})
        if "const" in prop and "conveyor.type" in schema.get("required", []):
            return str(prop["const"])
    return None


def test_a_user_apps_document_is_valid_and_shows_each_type(node: str, tmp_path: Path) -> None:
    # GIVEN a user's app in a module of its own folder
    (tmp_path / "shop.py").write_text(textwrap.dedent(USER_APP))
    # WHEN `conveyor asyncapi` prints its document, run from that folder
    result = conveyor_asyncapi(tmp_path, "--app", "shop:app", CONVEYOR_QUEUE_NAME=QUEUE)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    # THEN the AsyncAPI parser finds nothing wrong with it
    answer = parsed(node, result.stdout)
    assert_clean(answer)
    assert document["asyncapi"] == "3.0.0"
    assert document["channels"]["queue"]["address"] == QUEUE

    # ... and it holds one message per type, as the parser resolved them (every $ref followed)
    messages = {message["name"]: message for message in answer["messages"]}
    assert set(messages) == {"order.created", "billing/refund:v2", "default"}
    order = messages["order.created"]["payload"]
    assert order["type"] == "object"
    assert set(order["required"]) == {"order_id", "amount"}
    assert {"type": "number"} in order["properties"]["amount"]["anyOf"]  # a Decimal: a number or a string
    assert {"type": "string"} in order["properties"]["amount"]["anyOf"]
    currency = order["properties"]["currency"]
    assert currency.get("default") == "EUR"  # the field's default kept beside its enum's $ref
    assert "EUR" in json.dumps(currency)
    assert "USD" in json.dumps(currency)
    lines = order["properties"]["lines"]
    assert lines["type"] == "array"
    line = lines["items"]
    assert line["properties"]["quantity"] == {"minimum": 1, "title": "Quantity", "type": "integer"}
    assert set(line["required"]) == {"sku", "quantity"}
    refund = messages["billing/refund:v2"]["payload"]
    assert refund["properties"]["reason"]["description"] == "Why, in the customer's words."
    assert messages["default"]["payload"] in ({}, None)  # an untyped handler: any JSON

    # ... each typed message requires its own conveyor.type, the default none
    assert type_const(messages["order.created"]["headers"]) == "order.created"
    assert type_const(messages["billing/refund:v2"]["headers"]) == "billing/refund:v2"
    assert type_const(messages["default"]["headers"]) is None
    assert "conveyor.request_id" in json.dumps(messages["default"]["headers"])

    # ... and in the document itself, each message's payload is reachable from the channel, both
    # operations name every message, and each example matches its payload's required fields
    channel = document["channels"]["queue"]["messages"]
    assert len(channel) == 3
    for operation in ("send", "receive"):
        refs = [ref["$ref"] for ref in document["operations"][operation]["messages"]]
        assert sorted(refs) == sorted(f"#/channels/queue/messages/{key}" for key in channel)
    for key, ref in channel.items():
        message = resolve(document, ref["$ref"])
        assert message["name"] in messages, key
        payload = message["payload"]
        schema = resolve(document, payload["$ref"]) if "$ref" in payload else payload
        for example in message.get("examples", []):
            assert set(schema.get("required", [])) <= set(example["payload"]), key


async def test_the_writers_document_without_an_app_is_valid(node: str) -> None:
    # GIVEN a writer with no app, over an in-memory SQS WHEN its /asyncapi.json is fetched
    sqs = InMemorySqs()
    sqs.create(QUEUE)
    app = create_app(WriterSettings(queue_name=QUEUE, batch_linger_ms=5), client=as_client(sqs))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://writer") as client:
            response = await client.get("/asyncapi.json")
    assert response.status_code == 200
    # THEN the parser finds it valid: one untyped message on the queue
    answer = parsed(node, response.text)
    assert_clean(answer)
    assert [message["payload"] for message in answer["messages"]] in ([{}], [None])
    assert response.json()["channels"]["queue"]["address"] == QUEUE


WIDE_APP = {
    "zoo/__init__.py": "",
    "zoo/north.py": "from pydantic import BaseModel\n\n\nclass Keeper(BaseModel):\n    badge: int\n",
    "zoo/south.py": "from pydantic import BaseModel\n\n\nclass Keeper(BaseModel):\n    name: str\n",
    "zoo/app.py": """
        from __future__ import annotations

        from typing import Annotated, Literal

        from pydantic import BaseModel, Field

        import conveyor
        from zoo import north, south

        app = conveyor.App()


        class Cat(BaseModel):
            kind: Literal["cat"]
            lives: int = 9


        class Dog(BaseModel):
            kind: Literal["dog"]


        class Tree(BaseModel):
            value: int
            children: list[Tree] = []


        class Page[T](BaseModel):
            items: list[T]


        class Visit(BaseModel):
            pet: Annotated[Cat | Dog, Field(discriminator="kind")]
            slot: tuple[int, str]


        @app.handler("visit")
        def visit(v: Visit) -> None: ...


        @app.handler("tree")
        def tree(t: Tree) -> None: ...


        @app.handler("page")
        def page(p: Page[Cat]) -> None: ...


        @app.handler("keeper/north")
        def keeper_north(k: north.Keeper) -> None: ...


        @app.handler("keeper:north")
        def keeper_south(k: south.Keeper) -> None: ...


        @app.handler("default")
        def dogs(d: list[Dog]) -> None: ...


        @app.handler("numbers")
        def numbers(n: list[int]) -> None: ...


        @app.default
        def other(o: dict[str, int]) -> None: ...
    """,
}
TYPES = ["visit", "tree", "page", "keeper/north", "keeper:north", "default", "numbers", None]
KEY = re.compile(r"[A-Za-z0-9._-]+")  # what AsyncAPI 3.0 allows in a component's key


def test_what_pydantic_writes_beyond_draft_07_and_names_alike_stay_valid_and_apart(node: str, tmp_path: Path) -> None:
    # GIVEN an app whose schemas use what JSON Schema draft 07 reads otherwise (a discriminated union,
    # a tuple), a recursive and a generic model, two models of one name, type names alike once made
    # keys (keeper/north, keeper:north), a type named "default" beside the default handler, and two
    # payloads that are lists
    for name, text in WIDE_APP.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    result = conveyor_asyncapi(tmp_path, "--app", "zoo.app:app")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    # THEN the parser finds nothing wrong
    answer = parsed(node, result.stdout)
    assert_clean(answer)
    # ... every type is a message of its own (none overwrote another), with its own conveyor.type
    components = document["components"]
    assert all(KEY.fullmatch(key) for section in components.values() for key in section), components.keys()
    assert len(answer["messages"]) == len(TYPES)
    by_key = {message["id"]: message for message in answer["messages"]}
    types = {key: components["messages"][key] for key in document["channels"]["queue"]["messages"]}
    consts = [type_const(by_key[key]["headers"]) for key in types]
    assert consts == TYPES
    payloads = {const: by_key[key]["payload"] for key, const in zip(types, consts, strict=True)}
    # ... the two Keepers are both there, each its own
    assert set(payloads["keeper/north"]["properties"]) == {"badge"}
    assert set(payloads["keeper:north"]["properties"]) == {"name"}
    # ... the list payloads too, and the default handler's
    assert payloads["default"]["items"]["properties"]["kind"]["const"] == "dog"
    assert payloads["numbers"]["items"] == {"type": "integer"}
    assert payloads[None]["additionalProperties"] == {"type": "integer"}
    # ... the union as a oneOf of its tagged branches, the tuple's positions as draft 07's items
    visit = payloads["visit"]["properties"]
    assert sorted(branch["properties"]["kind"]["const"] for branch in visit["pet"]["oneOf"]) == ["cat", "dog"]
    assert visit["slot"]["items"] == [{"type": "integer"}, {"type": "string"}]
    assert "circular" in json.dumps(payloads["tree"])  # the parser followed the recursive $ref
    assert payloads["page"]["properties"]["items"]["items"]["properties"]["kind"]["const"] == "cat"


def test_without_an_app_the_command_says_so_in_one_line(tmp_path: Path) -> None:
    result = conveyor_asyncapi(tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "CONVEYOR_APP" in result.stderr


def test_the_validator_fails_on_an_invalid_document(node: str) -> None:
    # The check above is only worth something if the validator does fail: a message without its channel.
    broken = {"asyncapi": "3.0.0", "info": {"title": "t", "version": "1"}, "operations": {"send": {"action": "send"}}}
    answer = parsed(node, json.dumps(broken))
    assert not answer["valid"]
    assert any(d["severity"] == "error" for d in answer["diagnostics"])
