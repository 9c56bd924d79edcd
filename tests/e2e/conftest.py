from collections.abc import Iterator

import pytest

from tests.e2e.services import STARTED, reap
from tests.localstack_fixtures import localstack, queues, sqs

__all__ = ["localstack", "queues", "sqs"]


@pytest.fixture(autouse=True)
def _reap_processes() -> Iterator[None]:
    """A failed test must not leave a service running into the next one (services of wider-scoped
    fixtures, started before this, are left to their fixtures)."""
    keep = len(STARTED)
    yield
    reap(keep)
