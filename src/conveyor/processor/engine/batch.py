"""One take of the buffer (a message, or up to ten for a batch handler), from its start to its
settling: what the claims decided before the handler, and on a FIFO queue the groups it stopped.

Two kinds, one interface, chosen once per engine: :class:`Batch` (standard queues: no order to keep,
a stop holds nothing back) and :class:`GroupBatch` (FIFO queues: a message that goes back to the
queue stops its group, and the later messages of that group wait for it).
"""

from __future__ import annotations

from conveyor.processor.engine.lease import Lease
from conveyor.processor.engine.outcome import Admission, RetryPolicy, admission


class Batch:
    """A standard queue's batch."""

    in_order = False  # the order of settling may differ from the batch's (see outcome.settle_order)

    def __init__(self, leases: list[Lease]) -> None:
        self.taken = leases  # as the worker took them: their slots and groups are freed together
        self.leases = leases  # those settled here (the canaries are answered apart)
        self.admission = Admission((), frozenset())

    def admit(self, leases: list[Lease], policy: RetryPolicy, visibility: float) -> list[Lease]:
        """Decide what the claims decide before the handler; ``leases`` (the batch without its
        canaries) are the messages settled from now on. Returns those the handler runs."""
        self.leases = leases
        claims = [(lease.group, lease.claim, lease.receive_count) for lease in leases]
        self.admission = admission(claims, policy, visibility, in_order=self.in_order)
        return [lease for position, lease in enumerate(leases) if self.admission.runs(position)]

    def stop(self, lease: Lease, seconds: int) -> None:
        """``lease`` goes back to the queue in ``seconds``: on a standard queue nothing waits for it."""

    def stopped(self, lease: Lease) -> bool:
        """A message of ``lease``'s group before it goes back to the queue."""
        return False

    def wait_of(self, lease: Lease) -> int:
        """Seconds until the message ``lease``'s group waits for is visible again (0: none)."""
        return 0

    def stop_all(self) -> None:
        """A stop has begun: nothing waits behind these messages any more."""

    @property
    def stopped_groups(self) -> set[str]:
        return set()

    @property
    def groups(self) -> set[str]:
        return {lease.group for lease in self.taken}


class GroupBatch(Batch):
    """A FIFO queue's batch: the groups it stopped, each with the seconds until the message it waits
    for is visible again (the longest wait of the group wins)."""

    in_order = True

    def __init__(self, leases: list[Lease]) -> None:
        super().__init__(leases)
        self._stopped: dict[str, int] = {}

    def stop(self, lease: Lease, seconds: int) -> None:
        group = lease.group
        self._stopped[group] = max(self._stopped.get(group, 0), seconds)

    def stopped(self, lease: Lease) -> bool:
        return lease.group in self._stopped

    def wait_of(self, lease: Lease) -> int:
        return self._stopped.get(lease.group, 0)

    def stop_all(self) -> None:
        for group in self.groups:
            self._stopped.setdefault(group, 0)

    @property
    def stopped_groups(self) -> set[str]:
        return set(self._stopped)
