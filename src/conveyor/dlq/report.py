"""What a redrive is asked to do (:class:`Request`) and what it reports (:class:`RedriveReport`),
shared by the move task, the client-side move and the command that prints the report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from conveyor.dlq.record import Filter

Emit = Callable[[str], None]  # one line of progress for the operator


@dataclass(frozen=True, slots=True)
class Request:
    """What the operator asked: which messages (a filter, at most ``limit``), and whether to move them."""

    filter: Filter
    limit: int | None
    dry_run: bool


@dataclass
class RedriveReport:
    """How the messages were moved, how many were moved, skipped and failed, and what else to know."""

    method: str
    moved: int = 0
    skipped: int = 0
    failed: int = 0
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)
