"""SQS rules enforced locally (the emulators do not enforce them like AWS)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from conveyor.settings import WriterSettings
from conveyor.sqs import limits

ALLOWED = st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\ufffe\uffff").filter(
    lambda c: c in "\t\n\r" or ord(c) >= 0x20
)


@pytest.mark.parametrize("char", ["\x00", "\x08", "\x1f", "\ufffe", "\uffff", "\ud800"])
def test_refused_characters_are_found(char: str) -> None:
    assert limits.first_refused_char("ok" + char) == 2


@given(st.text(alphabet=ALLOWED))
def test_allowed_characters_pass(text: str) -> None:
    assert limits.first_refused_char(text) is None


@pytest.mark.parametrize(
    ("name", "ok"),
    [("tenant", True), ("a.b-c_d", True), (".x", False), ("x.", False), ("a..b", False),
     ("AWS.trace", False), ("amazon.x", False), ("sp ace", False), ("x" * 256, True), ("x" * 257, False)],
)  # fmt: skip
def test_attribute_names(name: str, ok: bool) -> None:
    assert (limits.attribute_name_problem(name) is None) is ok


@given(
    st.text(alphabet=ALLOWED),
    st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), st.text(min_size=1)),
)
def test_message_bytes_counts_body_names_types_and_values(body: str, values: dict[str, str]) -> None:
    attributes = {k: {"DataType": "String", "StringValue": v} for k, v in values.items()}
    expected = len(body.encode()) + sum(len(k.encode()) + 6 + len(v.encode()) for k, v in values.items())
    assert limits.message_bytes(body, attributes) == expected


def test_binary_attributes_count_their_bytes() -> None:
    attributes = {"b": {"DataType": "Binary", "BinaryValue": b"\x00\x01\x02"}}
    assert limits.message_bytes("", attributes) == 1 + 6 + 3


@pytest.mark.parametrize("name", ["tenant\n", "a.b\n"])
def test_a_trailing_newline_is_not_part_of_a_valid_name(name: str) -> None:
    assert limits.attribute_name_problem(name) is not None
    assert not limits.is_valid_dedup_id(name)


def test_a_queue_name_with_a_trailing_newline_is_refused() -> None:
    # pydantic's `pattern=` is a Rust regex: "$" is the end of the text, as the OpenAPI document says
    with pytest.raises(ValidationError):
        WriterSettings(queue_name="conveyor-messages\n")
    assert WriterSettings(queue_name="conveyor-messages").queue_name == "conveyor-messages"
