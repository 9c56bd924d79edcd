"""prometheus-client's multiprocess mode, for a service that runs several processes behind one port.

Each process writes its samples to files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client reads the
variable when a process creates its first metric, so it must be in the process's environment from
the start); whoever serves ``/metrics`` reads them all with a :class:`MultiProcessCollector`:
counters and histograms are summed over the processes, dead ones included (what they counted
happened), and 'livesum' gauges over the live ones.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def active() -> Path | None:
    """The directory this process writes its samples to, when multiprocess mode is on."""
    path = os.environ.get(ENV)
    return Path(path) if path else None


@contextmanager
def owned_dir(prefix: str) -> Iterator[Path]:
    """A fresh directory for one run of the service's processes, removed at the end."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        remove(path)


def aggregate_registry(path: Path) -> CollectorRegistry:
    """A registry whose collection reads every process's files in ``path`` (at each scrape)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]  # untyped library
    return registry


def forget(pid: int, path: Path) -> None:
    """A process ended: its 'live' gauges no longer count (its counters still do)."""
    mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]  # untyped library


def forget_dead(path: Path) -> None:
    """Forget the live gauges of processes that no longer exist (for a supervisor that does not
    say when a worker dies, such as uvicorn's)."""
    for entry in path.iterdir():
        match = _LIVE_GAUGE_FILE.match(entry.name)
        if match is not None and not _alive(int(match.group(1))):
            forget(int(match.group(1)), path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the pid now belongs to another user's process: ours is gone
        return False
    return True


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
