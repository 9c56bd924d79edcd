"""The canary wire format: only an exact, fresh body signed with the secret is a canary."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.canary.wire import (
    MAX_AGE_MS,
    MAX_AHEAD_MS,
    Canary,
    Reply,
    canary_body,
    parse_reply,
    recognise,
    reply_body,
    sign,
)

SECRET = b"0123456789abcdef-secret"
NOW = 1_800_000_000_000
CANARY = Canary("0" * 31 + "a", NOW - 1_000)


def body_of(value: Any) -> str:
    """As the writer serialises it: compact JSON."""
    return json.dumps(value, separators=(",", ":"))


def valid() -> dict[str, Any]:
    return canary_body(SECRET, CANARY)


def test_a_signed_fresh_canary_is_recognised() -> None:
    assert recognise(body_of(valid()), SECRET, NOW) == CANARY
    # whitespace does not matter: the body is parsed, not compared as text
    assert recognise(json.dumps(valid(), indent=2), SECRET, NOW) == CANARY


def test_the_signature_is_hmac_sha256_over_the_documented_text() -> None:
    import hashlib  # noqa: PLC0415 - only this test recomputes the MAC independently
    import hmac  # noqa: PLC0415

    expected = hmac.new(SECRET, f"conveyor-canary:v1:{CANARY.id}:{CANARY.at_ms}".encode(), hashlib.sha256)
    assert valid()["conveyor_canary"]["sig"] == expected.hexdigest()


def test_no_secret_means_no_canary() -> None:
    assert recognise(body_of(valid()), None, NOW) is None
    assert recognise(body_of(valid()), b"", NOW) is None


def test_another_secret_is_not_a_canary() -> None:
    assert recognise(body_of(valid()), b"another-secret-of-16", NOW) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "1" * 32),  # the signature covers the id
        ("at", NOW - 2_000),  # and the time
        ("sig", "0" * 64),
        ("sig", "A" * 64),
        ("v", 2),
        ("v", True),
        ("v", "1"),
        ("at", float(NOW)),
        ("at", True),
        ("at", -1),
        ("at", str(NOW)),
        ("id", "G" * 32),
        ("id", "a" * 31),
        ("id", 5),
        ("sig", None),
    ],
)
def test_tampered_or_mistyped_fields_are_not_a_canary(field: str, value: object) -> None:
    body = valid()
    body["conveyor_canary"][field] = value
    assert recognise(body_of(body), SECRET, NOW) is None


def test_uppercase_hex_of_the_right_signature_is_refused() -> None:
    body = valid()
    body["conveyor_canary"]["sig"] = body["conveyor_canary"]["sig"].upper()
    assert recognise(body_of(body), SECRET, NOW) is None


def test_the_freshness_window() -> None:
    def at(offset: int) -> str:
        canary = Canary(CANARY.id, NOW + offset)
        return body_of(canary_body(SECRET, canary))

    assert recognise(at(-MAX_AGE_MS), SECRET, NOW) is not None
    assert recognise(at(-MAX_AGE_MS - 1), SECRET, NOW) is None  # old: a replay, or waited too long
    assert recognise(at(MAX_AHEAD_MS), SECRET, NOW) is not None
    assert recognise(at(MAX_AHEAD_MS + 1), SECRET, NOW) is None


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not json",
        "[]",
        '"conveyor_canary"',
        '{"conveyor_canary": null}',
        '{"conveyor_canary": []}',
        '{"conveyor_canary": {}}',
        '{"conveyor_canary": ' + '"' + "x" * 2000 + '"}',
    ],
)
def test_malformed_bodies_are_not_a_canary(body: str) -> None:
    assert recognise(body, SECRET, NOW) is None


def test_extra_keys_anywhere_make_it_an_ordinary_message() -> None:
    inner_extra = valid()
    inner_extra["conveyor_canary"]["reply_to"] = "https://example.com/queue"
    outer_extra = valid() | {"order": 42}
    missing = valid()
    del missing["conveyor_canary"]["at"]
    for body in (inner_extra, outer_extra, missing):
        assert recognise(body_of(body), SECRET, NOW) is None


def test_a_reply_round_trips_and_is_checked() -> None:
    reply = Reply(CANARY.id, "host:1", "mid-1", NOW, NOW + 5)
    text = reply_body(SECRET, reply)
    assert parse_reply(text, SECRET) == reply
    assert parse_reply(text, b"another-secret-of-16") is None
    forged = json.loads(text)
    forged["conveyor_canary_reply"]["processor"] = "someone-else"
    assert parse_reply(body_of(forged), SECRET) is None
    assert parse_reply(body_of(valid()), SECRET) is None  # a canary is not a reply
    assert parse_reply("{}", SECRET) is None


def test_a_long_processor_id_is_cut_and_still_verifies() -> None:
    reply = Reply(CANARY.id, "p" * 500, "mid", NOW, NOW)
    parsed = parse_reply(reply_body(SECRET, reply), SECRET)
    assert parsed is not None
    assert parsed.processor == "p" * 128


def test_sign_depends_on_every_input() -> None:
    base = sign(SECRET, CANARY.id, CANARY.at_ms)
    assert sign(SECRET, CANARY.id, CANARY.at_ms + 1) != base
    assert sign(SECRET, "1" * 32, CANARY.at_ms) != base
    assert sign(SECRET + b"x", CANARY.id, CANARY.at_ms) != base


def resplit(reply: Reply) -> list[Reply]:
    """Every other reply whose fields, joined with ':', read the same as ``reply``'s."""
    joined = f"{reply.id}:{reply.processor}:{reply.message_id}"
    colons = [i for i, char in enumerate(joined) if char == ":"]
    others = []
    for first, second in itertools.combinations(colons, 2):
        parts = joined[:first], joined[first + 1 : second], joined[second + 1 :]
        if parts != (reply.id, reply.processor, reply.message_id):
            others.append(Reply(*parts, reply.received_at_ms, reply.handled_at_ms))
    return others


def signed_as(reply: Reply, signed: str) -> str:
    """The body of ``reply`` carrying the signature of the body ``signed``."""
    fields = json.loads(signed)["conveyor_canary_reply"]
    forged = {**fields, "id": reply.id, "processor": reply.processor, "message_id": reply.message_id}
    return body_of({"conveyor_canary_reply": forged})


def test_a_reply_cannot_be_re_split_between_its_fields() -> None:
    # processor "worker-1:4242" and message id "mid" must not verify as processor "worker-1" and
    # message id "4242:mid", nor the canary id take a piece of the processor
    reply = Reply(CANARY.id, "worker-1:4242", "mid", NOW, NOW + 5)
    signed = reply_body(SECRET, reply)
    for forged in (Reply(CANARY.id, "worker-1", "4242:mid", NOW, NOW + 5), *resplit(reply)):
        assert parse_reply(signed_as(forged, signed), SECRET) is None
    assert parse_reply(signed, SECRET) == reply


TEXTS = st.text(st.sampled_from([":", "1", "a", "\\", '"', ",", "]", "é", "\n"]), max_size=8)


@given(canary_id=TEXTS, processor=TEXTS, message_id=TEXTS)
def test_no_re_split_of_a_signed_reply_verifies(canary_id: str, processor: str, message_id: str) -> None:
    reply = Reply(canary_id, processor, message_id, NOW, NOW + 5)
    signed = reply_body(SECRET, reply)
    assert parse_reply(signed, SECRET) == reply
    for forged in resplit(reply):
        assert parse_reply(signed_as(forged, signed), SECRET) is None


def test_the_reply_signature_is_hmac_sha256_over_the_documented_json() -> None:
    import hashlib  # noqa: PLC0415 - only this test recomputes the MAC independently
    import hmac  # noqa: PLC0415

    reply = Reply(CANARY.id, "host:1é", "mid-1", NOW, NOW + 5)
    fields = json.loads(reply_body(SECRET, reply))["conveyor_canary_reply"]
    text = f'["conveyor-canary-reply",2,"{CANARY.id}","host:1\\u00e9","mid-1",{NOW},{NOW + 5}]'
    assert fields["v"] == 2
    assert fields["sig"] == hmac.new(SECRET, text.encode(), hashlib.sha256).hexdigest()


def reply_fields() -> dict[str, Any]:
    signed = reply_body(SECRET, Reply(CANARY.id, "host:1", "mid-1", NOW, NOW + 5))
    fields: dict[str, Any] = json.loads(signed)["conveyor_canary_reply"]
    return fields


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("v", 1),  # the colon-joined signature of before: refused, not re-read
        ("v", True),
        ("v", 2.0),
        ("received_at", True),
        ("received_at", float(NOW)),
        ("received_at", -1),
        ("handled_at", str(NOW + 5)),
        ("id", CANARY.id + "\n"),
        ("id", CANARY.id.upper()),
        ("processor", "HOST:1"),
        ("message_id", "mid-1 "),
        ("message_id", None),
        ("sig", "SIG"),
    ],
)
def test_a_tampered_or_mistyped_reply_is_not_believed(field: str, value: object) -> None:
    fields = reply_fields()
    assert parse_reply(body_of({"conveyor_canary_reply": fields}), SECRET) is not None
    fields[field] = value
    assert parse_reply(body_of({"conveyor_canary_reply": fields}), SECRET) is None


def test_a_reply_with_uppercase_signature_or_extra_keys_is_not_believed() -> None:
    fields = reply_fields()
    assert parse_reply(body_of({"conveyor_canary_reply": {**fields, "sig": fields["sig"].upper()}}), SECRET) is None
    assert parse_reply(body_of({"conveyor_canary_reply": {**fields, "extra": 1}}), SECRET) is None
    assert parse_reply(body_of({"conveyor_canary_reply": fields, "x": 1}), SECRET) is None


def test_a_reply_holding_a_lone_surrogate_is_not_a_reply_nor_a_crash() -> None:
    fields = reply_fields()
    body = body_of({"conveyor_canary_reply": fields}).replace('"host:1"', '"host\\ud800"')
    assert parse_reply(body, SECRET) is None
