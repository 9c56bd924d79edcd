"""The S3 pointer's wire format, checked against the AWS Python extended client's own constants and
output (the PyPI package ``amazon-sqs-extended-client``): Conveyor reads what it writes and back."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from conveyor.payloads.pointer import (
    BUCKET_MARKER,
    KEY_MARKER,
    LEGACY_POINTER_CLASS,
    LEGACY_SIZE_ATTRIBUTE,
    POINTER_CLASS,
    SIZE_ATTRIBUTE,
    Pointer,
    PointerError,
    pointer_of,
    size_attribute,
    sqs_receipt_handle,
)
from conveyor.processor.config import EngineConfig
from conveyor.settings import ProcessorSettings, WriterSettings
from conveyor.sqs.queues import QueueConfig
from conveyor.writer.replay.replay import in_flight_lease_seconds


def _aws_constants() -> SimpleNamespace:
    """The AWS client's module-level string constants, read from its source: importing the package
    would replace ``boto3.Session`` in this whole process (its ``__init__`` does)."""
    spec = importlib.util.find_spec("sqs_extended_client")  # finds the package without running it
    assert spec is not None
    assert spec.submodule_search_locations
    source = Path(next(iter(spec.submodule_search_locations)), "client.py").read_text()
    found = {
        target.id: node.value.value
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    return SimpleNamespace(**found)


aws = _aws_constants()


def test_the_names_are_the_aws_clients_own() -> None:
    assert (POINTER_CLASS, LEGACY_POINTER_CLASS) == (aws.MESSAGE_POINTER_CLASS, aws.LEGACY_MESSAGE_POINTER_CLASS)
    assert (SIZE_ATTRIBUTE, LEGACY_SIZE_ATTRIBUTE) == (aws.RESERVED_ATTRIBUTE_NAME, aws.LEGACY_RESERVED_ATTRIBUTE_NAME)
    assert (BUCKET_MARKER, KEY_MARKER) == (aws.S3_BUCKET_NAME_MARKER, aws.S3_KEY_MARKER)


def test_the_body_is_what_the_aws_client_writes() -> None:
    # its _store_message_in_s3: dumps([pointer class, {"s3BucketName": ..., "s3Key": ...}]), default spacing
    expected = json.dumps([aws.MESSAGE_POINTER_CLASS, {"s3BucketName": "b", "s3Key": "k"}])
    assert Pointer("b", "k").body() == expected
    assert size_attribute(12) == {"DataType": "Number", "StringValue": "12"}


@pytest.mark.parametrize(
    ("cls", "attribute"), [(POINTER_CLASS, SIZE_ATTRIBUTE), (LEGACY_POINTER_CLASS, LEGACY_SIZE_ATTRIBUTE)]
)
def test_both_forms_are_read(cls: str, attribute: str) -> None:
    body = json.dumps([cls, {"s3BucketName": "bucket-1", "s3Key": "a/b"}], separators=(",", ":"))  # Java's spacing
    pointer = pointer_of(body, {attribute: {"DataType": "Number", "StringValue": "2048"}})
    assert pointer == Pointer("bucket-1", "a/b", 2048)
    assert pointer.location == "s3://bucket-1/a/b"


def test_a_body_without_the_attribute_is_no_pointer() -> None:
    assert pointer_of(Pointer("b", "k").body(), {"other": {"DataType": "String", "StringValue": "x"}}) is None


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        '{"s3BucketName": "b", "s3Key": "k"}',
        '["some.other.Class", {"s3BucketName": "b", "s3Key": "k"}]',
        f'["{POINTER_CLASS}", {{"s3BucketName": "b"}}]',
        f'["{POINTER_CLASS}", {{"s3BucketName": "", "s3Key": "k"}}]',
        f'["{POINTER_CLASS}", {{"s3BucketName": 1, "s3Key": "k"}}]',
        f'["{POINTER_CLASS}", {{"s3BucketName": "b", "s3Key": "k"}}, 3]',
    ],
)
def test_a_marked_body_that_is_no_pointer_is_refused(body: str) -> None:
    with pytest.raises(PointerError, match="ExtendedPayloadSize but its body is not an S3 pointer"):
        pointer_of(body, {SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": "1"}})


def test_a_size_that_is_not_a_number_leaves_the_size_unknown() -> None:
    pointer = pointer_of(Pointer("b", "k").body(), {SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": "x"}})
    assert pointer == Pointer("b", "k", None)


def test_a_receipt_handle_an_extended_client_made_gives_sqs_its_own() -> None:
    original = "AQEB-with-dashes-and/slashes=="
    embedded = f"{BUCKET_MARKER}bucket{BUCKET_MARKER}{KEY_MARKER}some-key{KEY_MARKER}{original}"
    assert sqs_receipt_handle(embedded) == original
    assert sqs_receipt_handle(original) == original  # SQS's own handles are left alone
    assert sqs_receipt_handle(f"{BUCKET_MARKER}broken") == f"{BUCKET_MARKER}broken"


def test_a_negative_size_is_unknown() -> None:
    pointer = pointer_of(Pointer("b", "k").body(), {SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": "-1"}})
    assert pointer == Pointer("b", "k", None)


@pytest.mark.parametrize(
    ("sqs", "s3", "expected"),
    [
        ("http://127.0.0.1:4566", None, "http://127.0.0.1:4566"),  # LocalStack serves both
        ("http://localstack:4566", None, "http://localstack:4566"),
        ("https://sqs-fips.us-east-1.amazonaws.com", None, None),  # an AWS endpoint of SQS is SQS's alone
        ("https://vpce-1.sqs.eu-west-1.vpce.amazonaws.com", None, None),
        ("http://127.0.0.1:4566", "http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        (None, None, None),
    ],
)
def test_s3s_endpoint_falls_back_to_a_local_sqs_only(sqs: str | None, s3: str | None, expected: str | None) -> None:
    settings = WriterSettings(sqs_endpoint_url=sqs, s3_endpoint_url=s3)
    assert settings.s3_endpoint == expected


def test_the_processor_reads_its_bucket_and_the_listed_ones() -> None:
    settings = ProcessorSettings(payload_bucket="mine", payload_read_buckets="theirs,legacy-one")
    assert settings.readable_buckets == {"mine", "theirs", "legacy-one"}
    assert ProcessorSettings().readable_buckets == frozenset()
    with pytest.raises(ValidationError, match="payload_read_buckets"):
        ProcessorSettings(payload_read_buckets="Not_A_Bucket")


def test_an_idempotency_keys_in_flight_marker_outlasts_the_s3_put_too() -> None:
    without = in_flight_lease_seconds(WriterSettings())
    assert without == 83
    assert in_flight_lease_seconds(WriterSettings(payload_bucket="bucket")) == without + 3 * (3 + 60)


def test_a_settings_copy_with_the_endpoint_as_text_gives_s3_the_same() -> None:
    # `conveyor dev` copies its settings with the LocalStack endpoint it started, as a string
    copy = WriterSettings().model_copy(update={"sqs_endpoint_url": "http://127.0.0.1:4566"})
    assert copy.s3_endpoint == "http://127.0.0.1:4566"


def test_a_processor_deletes_only_under_its_own_bucket_and_prefix() -> None:
    queue = QueueConfig("http://sqs/q", "arn:aws:sqs:us-east-1:1:q", 1_048_576, 30, False, False, None, None)
    own = EngineConfig.build(ProcessorSettings(payload_bucket="mine", payload_prefix="in/"), queue, None)
    assert (own.payload_delete, own.payload_own, own.payload_buckets) == (True, ("mine", "in/"), frozenset({"mine"}))
    theirs = EngineConfig.build(ProcessorSettings(payload_read_buckets="theirs"), queue, None)
    assert (theirs.payload_delete, theirs.payload_own, theirs.payload_buckets) == (False, None, frozenset({"theirs"}))
