"""One entry of ``POST /messages/batch`` on its way: validated, maybe keyed, then sent or not."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.writer.api.problems import EntryProblem
from conveyor.writer.replay.replay import Keyed
from conveyor.writer.sending.outgoing import Outgoing


@dataclass(slots=True)
class Entry:
    id: str
    group_id: str | None
    outgoing: Outgoing | None = None  # None: it failed validation
    keyed: Keyed | None = None  # with an idempotency store and a key
    begun: bool = False  # its key's in-flight marker is ours: finish or abandon it
    token: str | None = None  # that marker's token (an abandon drops only that marker)
    result: str | EntryProblem | None = None  # the SQS MessageId, or why not; None: not settled yet
    replayed: bool = False

    @property
    def pending(self) -> bool:
        return self.result is None

    def settle(self, result: str | BaseException) -> None:
        """Take a send's result: a MessageId or an :class:`EntryProblem` (anything else is a bug: raised)."""
        if isinstance(result, BaseException) and not isinstance(result, EntryProblem):
            raise result
        self.result = result
