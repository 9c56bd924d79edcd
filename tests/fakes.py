"""The in-memory SQS the tests use is the shipped one (conveyor.testing.sqs)."""

from conveyor.testing.sqs import InMemorySqs as FakeSqs
from conveyor.testing.sqs import StoredMessage as FakeMessage
from conveyor.testing.sqs import as_client, client_error

__all__ = ["FakeMessage", "FakeSqs", "as_client", "client_error"]
