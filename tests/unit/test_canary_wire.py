"""The canary wire format: only an exact, fresh body signed with the secret is a canary."""

from __future__ import annotations

import json
from typing import Any

import pytest

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
