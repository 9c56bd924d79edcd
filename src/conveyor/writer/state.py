"""What the writer's routes share: the SQS client, the queue (once known), the sender, the metrics,
the idempotency store's replay (when one is configured)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from conveyor.contracts import App
from conveyor.settings import WriterSettings
from conveyor.sqs.errors import UNREACHABLE, Kind, SqsFailure
from conveyor.sqs.queues import QueueConfig
from conveyor.tracing import NO_TRACING, NoTracing, Tracing
from conveyor.writer.api.problems import EntryProblem, from_sqs, problem_response
from conveyor.writer.metrics import WriterMetrics
from conveyor.writer.mirror import Mirror
from conveyor.writer.replay.replay import Replay
from conveyor.writer.sending.offload import Offloader
from conveyor.writer.sending.offload_rule import OffloadRule
from conveyor.writer.sending.sender import Sender

if TYPE_CHECKING:
    from starlette.responses import Response
    from types_aiobotocore_sqs import SQSClient

STARTING = SqsFailure("Starting", "the queue has not been read yet", Kind.RETRYABLE, UNREACHABLE.summary)


@dataclass
class WriterState:
    settings: WriterSettings
    client: SQSClient
    metrics: WriterMetrics
    tracing: NoTracing | Tracing = NO_TRACING
    direct_batches: bool = False  # SendMessageBatch through sqs/send_batch.py (a real aiobotocore client)
    queue: QueueConfig | None = None  # None until start-up could read it
    failure: SqsFailure = STARTING  # why the queue is not known (yet, or for good)
    ready_until: float = field(default=0.0)
    replay: Replay | None = None  # with an idempotency store: Idempotency-Key replay
    contracts: App | None = None  # the user's message types (CONVEYOR_APP): bodies validated before sending
    offloader: Offloader | None = None  # with CONVEYOR_PAYLOAD_BUCKET: messages over the threshold go through S3
    mirror: Mirror | None = None  # with CONVEYOR_MIRROR_QUEUE_URL: a share of accepted messages copied there
    sender: Sender = field(init=False)  # entered by the app's lifespan

    def __post_init__(self) -> None:
        self.sender = Sender(
            self.client, self.settings, self.metrics, self.tracing, direct=self.direct_batches,
            offloader=self.offloader, on_accepted=self.mirror.offer if self.mirror is not None else None,
        )  # fmt: skip

    @property
    def offload_rule(self) -> OffloadRule | None:
        return self.offloader.rule if self.offloader is not None else None

    def attach(self, queue: QueueConfig) -> None:
        """The queue is known: messages can be validated against it and sent."""
        self.sender.attach(queue)
        self.queue = queue

    def set_failure(self, failure: SqsFailure) -> None:
        self.failure = failure

    def problem_response(self, problem: EntryProblem, request_id: str | None) -> Response:
        """The answer to a request refused for ``problem`` (counted; ``Retry-After`` when retrying helps)."""
        self.metrics.messages.labels(str(problem.status)).inc()
        retry_after = problem.retry_after or self.settings.retry_after_seconds
        headers = {"Retry-After": str(retry_after)} if problem.retryable else None
        return problem_response(problem.to_problem(request_id), headers)

    def require_queue(self) -> QueueConfig:
        """The queue's configuration; until it is known, the start-up failure as the answer."""
        if self.queue is not None:
            return self.queue
        raise from_sqs(self.failure)
