"""The results history: one JSON object per line and measurement, appended to bench/results.jsonl.

Every row says where it comes from (commit, whether the tree was dirty, date, cores, CPU, SQS
server, profile) and what it measured (bench, system, params, figures). Rows of one run share a
``run`` id, so a run's figures are compared with each other (ratios) and runs with each other
(history).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results.jsonl"
# What a benchmark or a report writes is not what it measures: a tree dirty only there is clean.
OUTPUTS = ("bench/results.jsonl", "docs/quality/")

Row = dict[str, Any]
Emit = Callable[[str, str, dict[str, Any], dict[str, Any]], None]
"""Records one measurement: (bench, system, params, figures)."""


def git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def dirty() -> bool:
    status = git("status", "--porcelain")
    return any(not line[3:].startswith(OUTPUTS) for line in status.splitlines())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@dataclass
class Run:
    """The context every row of one benchmark run carries."""

    sqs_server: str
    profile: str
    note: str = ""
    commit: str = field(default_factory=lambda: git("rev-parse", "HEAD") or "unknown")
    dirty: bool = field(default_factory=dirty)
    date: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    cores: int = field(default_factory=lambda: os.cpu_count() or 0)
    cpu: str = field(default_factory=cpu_model)

    @property
    def id(self) -> str:
        return f"{self.date}/{self.commit[:10]}"

    def row(self, bench: str, system: str, params: dict[str, Any], figures: dict[str, Any]) -> Row:
        row: Row = {
            "run": self.id, "commit": self.commit, "dirty": self.dirty, "date": self.date, "cores": self.cores,
            "cpu": self.cpu, "sqs_server": self.sqs_server, "profile": self.profile,
            "bench": bench, "system": system, "params": params, "figures": figures,
        }  # fmt: skip
        if self.note:
            row["note"] = self.note
        return row


def append(path: Path, rows: Iterable[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        for row in rows:
            out.write(json.dumps(row, sort_keys=True) + "\n")


def load(*paths: Path) -> list[Row]:
    """Every row of the files that exist, in file order (a missing file is an empty history)."""
    rows: list[Row] = []
    for path in paths:
        if path.exists():
            rows.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return rows


def runs(rows: Iterable[Row]) -> dict[str, list[Row]]:
    """Rows grouped by run id, runs in the order they first appear (oldest first)."""
    grouped: dict[str, list[Row]] = {}
    for row in rows:
        grouped.setdefault(row["run"], []).append(row)
    return grouped


def latest_run(rows: Iterable[Row]) -> list[Row]:
    grouped = runs(rows)
    return grouped[next(reversed(grouped))] if grouped else []


def find(rows: Iterable[Row], bench: str, system: str, **params: Any) -> Row | None:
    """The row of ``bench`` and ``system`` whose params include ``params`` (the last one if several)."""
    found = None
    for row in rows:
        if (
            row["bench"] == bench
            and row["system"] == system
            and all(row["params"].get(k) == v for k, v in params.items())
        ):
            found = row
    return found
