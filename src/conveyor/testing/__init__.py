"""Test your handlers without a network: :func:`make_message` builds a message as the writer would
send it, :func:`run` runs a handler (or an app) on it with the processor's own routing, decoding and
outcome decision, and :class:`InMemoryStack` runs the writer and the processor in process over the
in-memory SQS (:class:`~conveyor.testing.sqs.InMemorySqs`).

::

    from conveyor.testing import make_message, run

    async def test_a_bad_order_is_dead_lettered() -> None:
        outcome = await run(app, make_message({"order_id": "o-1"}, type="order.created"))
        assert outcome.action == "dead_letter"
"""

from conveyor.testing.messages import make_message
from conveyor.testing.outcomes import Outcome, run
from conveyor.testing.sqs import InMemorySqs
from conveyor.testing.stack import DeadLettered, InMemoryStack, Queued

__all__ = ["DeadLettered", "InMemorySqs", "InMemoryStack", "Outcome", "Queued", "make_message", "run"]
