"""Registering message types: what a handler's signature means, and what cannot be registered."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import BaseModel

import conveyor
from conveyor.contracts import ContractError, InvalidMessageError, UnknownMessageTypeError
from conveyor.loading import import_app
from tests import typed_app


class Payment(BaseModel):
    payment_id: str
    amount: Decimal


def test_the_first_annotation_is_the_payload_and_a_second_parameter_gets_the_message() -> None:
    created = typed_app.app.resolve("order.created")
    cancelled = typed_app.app.resolve("order.cancelled")
    assert created.signature.payload is typed_app.OrderCreated
    assert created.signature.passes_message
    assert cancelled.signature.payload is typed_app.OrderCancelled
    assert not cancelled.signature.passes_message


def test_any_type_a_type_adapter_takes_is_a_payload() -> None:
    app = conveyor.App()

    @app.handler("numbers")
    async def numbers(values: list[int]) -> None: ...

    assert app.resolve("numbers").decode("[1, 2]") == [1, 2]
    with pytest.raises(InvalidMessageError) as caught:
        app.resolve("numbers").decode('[1, "x"]')
    assert caught.value.errors == [
        {"field": "body.1", "message": "Input should be a valid integer, unable to parse string as an integer"}
    ]


def test_a_message_annotation_or_none_is_an_untyped_handler() -> None:
    app = conveyor.App()

    @app.handler("raw")
    async def raw(message: conveyor.Message) -> None: ...

    @app.default
    def anything(message) -> None:  # type: ignore[no-untyped-def]  # no annotation at all
        ...

    assert not app.resolve("raw").typed
    assert not app.resolve(None).typed


def test_validation_errors_name_every_field_and_never_a_value() -> None:
    card_number = "4111-1111-1111-1111"
    with pytest.raises(InvalidMessageError) as caught:
        typed_app.app.resolve("order.created").decode(
            f'{{"order_id": 5, "amount": "{card_number}", "lines": [{{"sku": "a", "quantity": 0}}]}}'
        )
    error = caught.value
    assert [e["field"] for e in error.errors] == ["body.order_id", "body.amount", "body.lines.0.quantity"]
    assert card_number not in str(error)
    assert card_number not in repr(error.errors)
    assert str(error).startswith("body does not match 'order.created': body.order_id: ")
    assert str(error).endswith("(and 2 more)")


def test_a_body_that_is_not_json_is_invalid_too() -> None:
    with pytest.raises(InvalidMessageError) as caught:
        typed_app.app.resolve("order.created").decode("not json")
    assert caught.value.errors[0]["field"] == "body"


def test_the_errors_public_names_are_what_dead_letter_records_show() -> None:
    for error in (InvalidMessageError("t", []), UnknownMessageTypeError("t")):
        assert f"{type(error).__module__}.{type(error).__qualname__}" in {
            "conveyor.InvalidMessageError",
            "conveyor.UnknownMessageTypeError",
        }
        assert isinstance(error, conveyor.PermanentError)


def test_an_unknown_type_and_a_missing_one_without_default() -> None:
    with pytest.raises(UnknownMessageTypeError, match=r"no handler for message type 'order\.refunded'"):
        typed_app.app.resolve("order.refunded")
    with pytest.raises(UnknownMessageTypeError, match="no type and no default handler"):
        typed_app.app.resolve(None)


@pytest.mark.parametrize("name", ["", " order", "order created", "a" * 129, "é", ".hidden"])
def test_a_type_name_must_be_plain(name: str) -> None:
    with pytest.raises(ContractError, match="a message type's name is 1 to 128"):
        conveyor.App().handler(name)


def test_two_handlers_of_one_type_or_two_defaults_are_refused() -> None:
    app = conveyor.App()
    app.handler("a")(lambda payment: None)
    with pytest.raises(ContractError, match="'a' has two handlers"):
        app.handler("a")
    app.default(lambda message: None)
    with pytest.raises(ContractError, match="two default handlers"):
        app.default(lambda message: None)


def _load(app: conveyor.App) -> None:
    from conveyor.contracts import load_app  # noqa: PLC0415 - the function under test

    load_app(app, "tests.x:app")


def test_a_handler_with_the_wrong_parameters_fails_at_load() -> None:
    app = conveyor.App()

    @app.handler("three")
    async def three(a: Payment, b: conveyor.Message, c: int) -> None: ...

    with pytest.raises(ContractError, match="must take 1 or 2 parameters"):
        _load(app)


def test_an_annotation_that_does_not_resolve_fails_at_load() -> None:
    app = conveyor.App()

    @app.handler("ghost")
    async def ghost(payment: NoSuchModel) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(ContractError, match="cannot read the annotations of handler"):
        _load(app)


def test_an_annotation_pydantic_cannot_validate_fails_at_load() -> None:
    class Opaque:
        pass

    app = conveyor.App()

    @app.handler("opaque")
    async def opaque(value: Opaque) -> None: ...

    with pytest.raises(ContractError, match="pydantic cannot validate"):
        _load(app)


def test_a_batch_handler_takes_lists_whichever_decorator_comes_first() -> None:
    app = conveyor.App()

    @app.handler("outer")
    @conveyor.batch_handler
    async def outer(payments: list[Payment], messages: list[conveyor.Message]) -> None: ...

    @conveyor.batch_handler
    @app.handler("inner")
    async def inner(payments: list[Payment]) -> None: ...

    _load(app)
    assert app.resolve("outer").batch
    assert app.resolve("inner").batch
    assert app.resolve("inner").signature.payload is Payment


def test_a_batch_handler_of_one_model_is_refused() -> None:
    app = conveyor.App()

    @app.handler("wrong")
    @conveyor.batch_handler
    async def wrong(payment: Payment) -> None: ...

    with pytest.raises(ContractError, match="list\\[Model\\] or list\\[Message\\]"):
        _load(app)


def test_conveyor_app_names_an_app_with_handlers() -> None:
    assert import_app("tests.typed_app:app") is typed_app.app
    with pytest.raises(ContractError, match=r"is not a conveyor\.App but EnumType"):
        import_app("tests.typed_app:Currency")
    with pytest.raises(conveyor.errors.ConfigurationError, match=r"cannot import app module 'no\.such'"):
        import_app("no.such:app")
    with pytest.raises(conveyor.errors.ConfigurationError, match=r"must look like package\.module:app"):
        import_app("nocolon")
    with pytest.raises(conveyor.errors.ConfigurationError, match="has no 'missing'"):
        import_app("tests.typed_app:missing")


def test_an_app_without_handlers_is_refused() -> None:
    from conveyor.contracts import load_app  # noqa: PLC0415

    with pytest.raises(ContractError, match="has no handlers"):
        load_app(conveyor.App(), "x:app")
