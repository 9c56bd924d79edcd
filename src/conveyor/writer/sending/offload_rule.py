"""Which messages the writer stores in S3, and the checks their pointer message must pass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor import metadata
from conveyor.payloads.pointer import SIZE_ATTRIBUTE, Pointer, size_attribute
from conveyor.sqs import limits
from conveyor.writer.api.problems import EntryProblem, invalid_message

UUID_CHARS = 36


@dataclass(frozen=True, slots=True)
class OffloadRule:
    """Which messages go through S3 (those over ``above`` bytes as SQS counts them) and where."""

    bucket: str
    prefix: str
    above: int | None  # CONVEYOR_PAYLOAD_OFFLOAD_BYTES; None: the queue's MaximumMessageSize

    def threshold(self, queue_limit: int) -> int:
        return min(self.above, queue_limit) if self.above is not None else queue_limit

    def check_pointer_fits(self, attributes: Mapping[str, Any], queue_limit: int) -> None:
        """The pointer message must fit SQS's rules: one attribute slot for the size, and the
        pointer and the attributes within the queue's limit (raise :class:`EntryProblem`)."""
        if len(attributes) + 1 > limits.MAX_ATTRIBUTES:
            room = limits.MAX_ATTRIBUTES - 1 - (len(attributes) - _user_count(attributes))
            raise invalid_message(
                "attributes", f"at most {room} attributes on a message stored in S3 (its pointer takes one of SQS's 10)"
            )
        sample = Pointer(self.bucket, self.prefix + "0" * UUID_CHARS)
        with_size = {**attributes, SIZE_ATTRIBUTE: size_attribute(10**18)}  # the longest size text
        pointer_bytes = limits.message_bytes(sample.body(), with_size)
        if pointer_bytes > queue_limit:
            raise EntryProblem(
                413, "Message too large",
                f"the attributes and the S3 pointer are {pointer_bytes} bytes; this queue takes at most {queue_limit}",
                field="attributes",
            )  # fmt: skip


def _user_count(attributes: Mapping[str, Any]) -> int:
    return sum(1 for name in attributes if not metadata.is_reserved(name))
