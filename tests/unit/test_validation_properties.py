"""Property-based tests of the writer's validation: exact byte limit, refused characters, attribute
counts and types, delay bounds, batch sizes."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from conveyor import metadata
from conveyor.sqs import limits
from conveyor.sqs.queues import QueueConfig
from conveyor.writer.api.problems import EntryProblem
from conveyor.writer.api.request_meta import RequestMeta
from conveyor.writer.api.schemas import BatchIn, MessageIn
from conveyor.writer.sending.outgoing import build_outgoing

META = RequestMeta(request_id="r1")
META_BYTES = (len(metadata.REQUEST_ID) + 6 + 2) + (len(metadata.CONTENT_TYPE) + 6 + len("application/json"))
REFUSED = st.sampled_from(["\x00", "\x01", "\x08", "\x0b", "\x1f", "\ufffe", "\uffff"])
TEXT = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]), max_size=50)
NAMES = st.from_regex(r"[a-z][a-z0-9_-]{0,15}", fullmatch=True)


def queue(max_bytes: int = 1_048_576, fifo: bool = False) -> QueueConfig:
    return QueueConfig("url", "arn", max_bytes, 30, fifo, False, None, None)


@given(body=TEXT, attributes=st.dictionaries(NAMES, TEXT.filter(bool), max_size=8), limit=st.integers(40, 400))
def test_size_is_exact_and_the_limit_is_inclusive(body: str, attributes: dict[str, str], limit: int) -> None:
    message = MessageIn(body=body, attributes=attributes)
    expected = len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()) + META_BYTES
    expected += sum(len(k.encode()) + 6 + len(v.encode()) for k, v in attributes.items())
    if expected > limit:
        with pytest.raises(EntryProblem) as raised:
            build_outgoing(message, META, queue(limit))
        assert raised.value.status == 413
    else:
        assert build_outgoing(message, META, queue(limit)).size == expected


@given(prefix=TEXT, bad=REFUSED, suffix=TEXT, where=st.sampled_from(["body", "attribute"]))
def test_characters_sqs_refuses_are_422_naming_the_field(prefix: str, bad: str, suffix: str, where: str) -> None:
    text = prefix + bad + suffix
    message = MessageIn(body={"nested": [text]}) if where == "body" else MessageIn(body=1, attributes={"a": text})
    if where == "body" and bad < "\x20":
        # JSON escapes control characters: SQS gets the escape (\u0000, \b), which it allows, never
        # the character itself, and the consumer parses the text back exactly.
        sent = build_outgoing(message, META, queue()).body
        assert bad not in sent
        assert json.dumps(bad)[1:-1] in sent
        assert limits.first_refused_char(sent) is None
        assert json.loads(sent) == {"nested": [text]}
        return
    with pytest.raises(EntryProblem) as raised:
        build_outgoing(message, META, queue())
    assert raised.value.status == 422
    assert raised.value.field == ("body" if where == "body" else "attributes.a")


@given(count=st.integers(0, 12), traced=st.booleans())
def test_attribute_count_shares_the_limit_of_ten_with_metadata(count: int, traced: bool) -> None:
    meta = RequestMeta(request_id="r", traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01" if traced else None)
    message = MessageIn(body=1, attributes={f"a{i}": i for i in range(count)})
    room = 10 - (3 if traced else 2)
    if count <= room:
        assert len(build_outgoing(message, meta, queue()).attributes) == count + 10 - room
    else:
        with pytest.raises(EntryProblem, match="at most"):
            build_outgoing(message, meta, queue())


def _from_python(document: dict[str, object]) -> MessageIn:
    return MessageIn.model_validate(document)  # the FastAPI route: the parsed JSON, validated


def _from_json(document: dict[str, object]) -> MessageIn:
    return MessageIn.model_validate_json(json.dumps(document))  # the fast path (writer/http/fast_path.py)


PARSERS = pytest.mark.parametrize("parse", [_from_python, _from_json], ids=["route", "fast-path"])


@PARSERS
@given(value=st.one_of(st.booleans(), st.none(), st.lists(st.integers(), max_size=2), st.dictionaries(NAMES, NAMES)))
def test_attribute_values_are_strings_or_numbers_only(
    parse: Callable[[dict[str, object]], MessageIn], value: object
) -> None:
    with pytest.raises(ValidationError):
        parse({"body": 1, "attributes": {"a": value}})


@PARSERS
@given(delay=st.one_of(st.integers(-100, 2000), st.floats(0, 900), st.text(max_size=3)))
def test_delay_bounds(parse: Callable[[dict[str, object]], MessageIn], delay: object) -> None:
    if isinstance(delay, int) and 0 <= delay <= 900:
        assert parse({"body": 1, "delay_seconds": delay}).delay_seconds == delay
    else:  # out of range, or not an integer at all (a float, even 5.0; a string, even "5")
        with pytest.raises(ValidationError):
            parse({"body": 1, "delay_seconds": delay})


@given(size=st.integers(0, 130))
def test_batch_sizes(size: int) -> None:
    payload = {"messages": [{"id": f"e{i}", "body": i} for i in range(size)]}
    if 1 <= size <= 100:
        assert len(BatchIn.model_validate(payload).messages) == size
    else:
        with pytest.raises(ValidationError):
            BatchIn.model_validate(payload)
