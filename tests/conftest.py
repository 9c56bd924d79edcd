"""Shared test set-up. Markers by folder: tests/integration -> integration, tests/e2e -> e2e (both
need LocalStack)."""

from __future__ import annotations

import os

import pytest

# Local endpoints only: dummy credentials in the environment stop botocore's credential chain at its
# first step (no shared files, no instance metadata), for the tests and the processes they start.
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}.items():
    os.environ.setdefault(_name, _value)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        elif "e2e" in parts:
            item.add_marker(pytest.mark.e2e)
