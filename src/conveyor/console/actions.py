"""The console's actions on dead letters (redrive, delete), each run to its end in the console's
task group while its page shows its progress; one at a time, in turn with the reads of the DLQ
(:class:`conveyor.console.desk.Desk`). Each is logged when it starts and when it ends, with what
it changed and who asked (the session or the bearer token).

The work is the CLI's own: a redrive is `conveyor dlq redrive` with the page's filter (see
:mod:`conveyor.dlq.redrive`), a delete reads the DLQ through and deletes what was selected
(:mod:`conveyor.dlq.delete`). Nothing is lost on the way: a message is deleted from the DLQ only once
its queue has it, and an action cut short (the console stopped) leaves the rest where it was.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

import structlog

from conveyor.command_error import CommandError, sqs_trouble
from conveyor.console.desk import Desk
from conveyor.dlq.delete import delete_matching
from conveyor.dlq.record import Filter
from conveyor.dlq.redrive import redrive
from conveyor.dlq.report import Request
from conveyor.sqs.errors import SQS_ERRORS

log = structlog.get_logger("conveyor.console")

Kind = Literal["redrive", "delete"]
MAX_KEPT = 50  # actions kept for their pages
MAX_LINES = 500  # progress lines kept per action
COUNTED = ("moved", "deleted", "skipped", "failed")


@dataclass
class Action:
    id: str
    kind: Kind
    selection: str  # what was chosen, as the page and the log say it
    who: str
    started_at: float
    state: Literal["running", "done", "failed"] = "running"
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_LINES))
    notes: list[str] = field(default_factory=list)
    problem: str | None = None
    ended_at: float | None = None

    def emit(self, line: str) -> None:
        """One message's fate (``moved <id> ...``, ``deleted <id> ...``): shown, counted, and logged,
        so that the log says which messages each action changed."""
        self.lines.append(line)
        first = line.split(" ", 1)[0]
        if first in self.counts:
            self.counts[first] += 1
        log.warning("console_action_step", id=self.id, action=self.kind, step=line)

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id, "kind": self.kind, "selection": self.selection, "state": self.state,
            "counts": self.counts, "lines": list(self.lines)[-50:], "notes": self.notes, "problem": self.problem,
            "started_at": self.started_at, "ended_at": self.ended_at,
        }  # fmt: skip


class BusyError(Exception):
    """Another action is running (one at a time: they would hide messages from each other)."""


class Actions:
    def __init__(self, desk: Desk) -> None:
        self._desk = desk
        self._kept: dict[str, Action] = {}
        self._ids = itertools.count(1)
        self._group = asyncio.TaskGroup()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        await self._group.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for action in self._kept.values():
            if action.state == "running":
                action.notes.append(
                    "the console stopped during the action: a client-side move or a delete leaves what it had not "
                    "reached in the DLQ; SQS's move task, if it was the one moving, goes on in SQS"
                )
        for task in self._tasks:  # the stop cuts a running action short (nothing is lost)
            task.cancel()
        await self._group.__aexit__(et, e, tb)

    def get(self, action_id: str) -> Action | None:
        return self._kept.get(action_id)

    def recent(self) -> list[Action]:
        return sorted(self._kept.values(), key=lambda a: a.started_at, reverse=True)

    def start(self, kind: Kind, chosen: Filter, selection: str, who: str) -> Action:
        """Start an action (one at a time: BusyError while one runs); ``who`` says how the request
        was allowed and from where, for the log."""
        if any(a.state == "running" for a in self._kept.values()):
            raise BusyError("another action is running: try again when it ends (its page shows its progress)")
        action = Action(f"{int(time.time())}-{next(self._ids)}", kind, selection, who, time.time())
        self._kept[action.id] = action
        while len(self._kept) > MAX_KEPT:
            del self._kept[next(iter(self._kept))]
        log.warning("console_action_started", action=kind, id=action.id, selection=selection, who=who,
                    message_ids=sorted(chosen.message_ids) or None)  # fmt: skip
        task = self._group.create_task(self._run(action, chosen))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return action

    async def _run(self, action: Action, chosen: Filter) -> None:
        async with self._desk.turn:
            self._desk.acting = True
            try:
                await self._work(action, chosen)
                action.state = "done"
            except CommandError as exc:
                action.state, action.problem = "failed", str(exc)
            except SQS_ERRORS as exc:
                action.state, action.problem = "failed", str(sqs_trouble("dead-letter queue", exc))
            except Exception as exc:
                log.exception("console_action_error", id=action.id)
                action.state = "failed"
                action.problem = f"an error of the console's own ({type(exc).__name__}): see its log"
            finally:
                action.ended_at = time.time()
                self._desk.acting = False
                self._desk.forget()
                log.warning(
                    "console_action_ended", action=action.kind, id=action.id, state=action.state, who=action.who,
                    selection=action.selection, **action.counts, problem=action.problem,
                )  # fmt: skip

    async def _work(self, action: Action, chosen: Filter) -> None:
        located = await self._desk.located()
        if action.kind == "delete":
            deleted = await delete_matching(self._desk.client, located, chosen, action.emit)
            action.counts.update(deleted=deleted.deleted, skipped=deleted.skipped, failed=deleted.failed)
            _note_not_found(action, chosen, deleted.deleted + deleted.failed)
            return
        report = await redrive(self._desk.client, located, Request(chosen, None, dry_run=False), action.emit)
        action.counts.update(moved=report.moved, skipped=report.skipped, failed=report.failed)
        action.notes.extend(report.notes)
        _note_not_found(action, chosen, report.moved + report.failed)
        action.notes.append(f"{report.method}: from {located.dlq_name} to {located.name} (or each message's source)")


def _note_not_found(action: Action, chosen: Filter, reached: int) -> None:
    missing = len(chosen.message_ids) - reached
    if chosen.message_ids and missing > 0:
        action.notes.append(
            f"{missing} selected message(s) were not found in the DLQ (redriven or deleted since the list was read, "
            "or not handed out: SQS gives at most ten of a FIFO message group at a time)"
        )
