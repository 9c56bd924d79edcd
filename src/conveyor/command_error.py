"""The one error type of the operator commands (`conveyor canary`, `dlq`, `status`)."""

from __future__ import annotations

from conveyor.errors import ConveyorError
from conveyor.sqs.errors import classify


class CommandError(ConveyorError):
    """An operator command failed; the message is the one line the user sees (exit 1)."""


def sqs_trouble(what: str, exc: BaseException) -> CommandError:
    """``queue orders: AWS.SimpleQueueService.NonExistentQueue (The specified queue does not exist.)``"""
    failure = classify(exc)
    return CommandError(f"{what}: {failure.code} ({failure.message})")
