"""``POST /messages/batch`` on a FIFO queue: each group's entries reach the queue in request order.

SQS keeps the order of one group's messages within a SendMessageBatch, but it does not promise what
happens to the later entries of a group when an earlier one fails in the same call: they may be on
the queue already, and resending the failed one puts it behind them. Sending a group's entries one
by one is the safe way, so:

- a call carries at most one entry per group; the entries of different groups share calls (up to
  ten, the batcher's limits), so a batch of many small groups costs few calls;
- a group's next entry is sent only once SQS has its previous one (rounds: each round sends the next
  entry of every group still going, and waits for all of them);
- an entry that fails, here or before sending (validation, an idempotency key reused or in flight, a
  store that cannot answer), stops its group: its later entries are not sent, and are reported
  ``424`` "Earlier entry failed" (retryable: resend them after the one that failed). Other groups go on.

Cheaper designs were considered and are not as safe: several entries of a group in one call keep
their order only while none fails; resending a failed entry with the later ones of its group
(deduplication drops the copies of those already on the queue) still leaves the failed one behind
them. The cost is one round per entry of the longest group: a batch of one group of 100 takes 100
calls one after another, while 100 groups of one take 10 calls at once.
"""

from __future__ import annotations

from collections import deque

from conveyor.writer.api.problems import EntryProblem
from conveyor.writer.batch.entry import Entry
from conveyor.writer.sending.sender import Sender

FAILED_DEPENDENCY = 424


def is_group_stop(problem: EntryProblem) -> bool:
    """Whether ``problem`` only says that an earlier entry of the group failed."""
    return problem.status == FAILED_DEPENDENCY


def _stopped(failed: Entry) -> EntryProblem:
    return EntryProblem(
        FAILED_DEPENDENCY, "Earlier entry failed",
        f"not sent: entry '{failed.id}' of group '{failed.group_id}' before it failed; "
        "send this one again after that one, to keep the group's order",
        field="group_id", retryable=True,
    )  # fmt: skip


def _stop(group: deque[Entry], failed: Entry) -> None:
    """The entries of the group after ``failed`` are not sent (those settled already keep their result)."""
    for entry in group:
        if entry.pending:
            entry.result = _stopped(failed)
    group.clear()


def _next(group: deque[Entry]) -> Entry | None:
    """The group's next entry to send, past those settled already (replays); None when the group is
    done or stopped by a failed entry."""
    while group:
        entry = group.popleft()
        if isinstance(entry.result, EntryProblem):
            _stop(group, entry)
            return None
        if entry.pending:
            return entry
    return None


async def send_in_group_order(entries: list[Entry], sender: Sender) -> None:
    """Send the pending entries, each group's in request order, one entry per group at a time."""
    groups: dict[str, deque[Entry]] = {}
    for entry in entries:
        if entry.group_id is not None:  # on a FIFO queue every valid entry has one
            groups.setdefault(entry.group_id, deque()).append(entry)
    while True:
        heads = [head for group in groups.values() if (head := _next(group)) is not None]
        if not heads:
            return
        results = await sender.send_now([head.outgoing for head in heads if head.outgoing is not None])
        for head, result in zip(heads, results, strict=True):
            head.settle(result)
            if isinstance(result, EntryProblem):
                _stop(groups[str(head.group_id)], head)
