"""The report's plots (matplotlib, SVG): Conveyor and the baselines side by side, and history.

Every function takes result rows and writes one SVG, stable from one rendering to the next (no
date, fixed ids, text kept as text) so that a regenerated report diffs only where figures changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # no display; must precede pyplot

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.profiles import CONVEYOR, NAIVE, NOOP
from bench.results import Row, find

mpl.rcParams.update({
    "svg.hashsalt": "conveyor-report", "svg.fonttype": "none", "font.size": 9, "axes.grid": True,
    "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
})  # fmt: skip
STYLE: dict[str, dict[str, Any]] = {
    CONVEYOR: {"color": "#1f6feb", "marker": "o", "label": "Conveyor"},
    NAIVE: {"color": "#d1242f", "marker": "s", "label": "naive boto3"},
    NOOP: {"color": "#6e7781", "marker": "^", "label": "no-op FastAPI (ceiling)", "linestyle": "--"},
}


def save(figure: Figure, path: Path, legend_below: float = 0.0) -> Path:
    figure.tight_layout(rect=(0, legend_below, 1, 1))
    figure.savefig(path, format="svg", metadata={"Date": None})
    plt.close(figure)
    return path


def series(run: Sequence[Row], bench: str, system: str, x: str, y: str) -> tuple[list[float], list[float]]:
    """(x, y) of ``system``'s rows of ``bench``, sorted by x, rows without y left out."""
    points = sorted(
        (row["params"][x], row["figures"][y])
        for row in run
        if row["bench"] == bench and row["system"] == system and row["figures"].get(y) is not None
    )
    return [p[0] for p in points], [p[1] for p in points]


def processor_throughput(run: Sequence[Row], path: Path) -> Path:
    figure, (rate, share) = plt.subplots(1, 2, figsize=(8, 3.2))
    for system in (CONVEYOR, NAIVE):
        xs, ys = series(run, "processor", system, "concurrency", "throughput_msg_s")
        rate.plot(xs, ys, **STYLE[system])
        xs, ys = series(run, "processor", system, "concurrency", "percent_of_ideal")
        share.plot(xs, ys, **STYLE[system])
    xs, ideal = series(run, "processor", CONVEYOR, "concurrency", "ideal_msg_s")
    rate.plot(xs, ideal, color="#6e7781", linestyle=":", label="ideal (concurrency / 0.1 s)")
    rate.set(title="Drained msg/s vs concurrency (0.1 s handler)", xlabel="concurrency", ylabel="messages/s")
    share.set(title="Share of the ideal", xlabel="concurrency", ylabel="% of ideal", ylim=(0, 105))
    rate.legend()
    return save(figure, path)


def writer_throughput(run: Sequence[Row], path: Path) -> Path:
    figure, (rate, tail) = plt.subplots(1, 2, figsize=(8, 3.2))
    for system in (CONVEYOR, NAIVE, NOOP):
        xs, ys = series(run, "writer", system, "clients", "accepted_per_s")
        rate.plot(xs, ys, **STYLE[system])
        xs, ys = series(run, "writer", system, "clients", "p99_ms")
        tail.plot(xs, ys, **STYLE[system])
    rate.set(title="Accepted/s vs clients, against the ceiling", xlabel="concurrent clients", ylabel="requests/s")
    tail.set(title="p99 latency of a POST", xlabel="concurrent clients", ylabel="ms", yscale="log")
    figure.legend(*rate.get_legend_handles_labels(), loc="lower center", ncols=3)
    return save(figure, path, legend_below=0.08)


def sqs_requests(run: Sequence[Row], path: Path, bounds: dict[str, float]) -> Path:
    """Grouped bars: SQS requests per message, each processor concurrency and writer client count."""
    groups: list[tuple[str, Row | None, Row | None]] = []
    for row in run:
        if row["bench"] == "processor" and row["system"] == CONVEYOR:
            c = row["params"]["concurrency"]
            groups.append((f"processor\nc={c}", row, find(run, "processor", NAIVE, concurrency=c)))
    for row in run:
        if row["bench"] == "writer" and row["system"] == CONVEYOR:
            n = row["params"]["clients"]
            groups.append((f"writer\n{n} client{'s' * (n != 1)}", row, find(run, "writer", NAIVE, clients=n)))
    figure, axes = plt.subplots(figsize=(8, 3.2))
    width = 0.38
    for offset, index, system in ((-width / 2, 1, CONVEYOR), (width / 2, 2, NAIVE)):
        values = [value(group[index], "sqs_requests_per_message") for group in groups]  # type: ignore[arg-type]
        bars = axes.bar([i + offset for i in range(len(groups))], values, width, color=STYLE[system]["color"],
                        label=STYLE[system]["label"])  # fmt: skip
        axes.bar_label(bars, fmt="%.2f", fontsize=7)
    for (name, bound), linestyle in zip(bounds.items(), (":", "--"), strict=False):
        axes.axhline(bound, color="#6e7781", linestyle=linestyle, linewidth=1, label=f"{name}: {bound}")
    axes.set_xticks(range(len(groups)), [group[0] for group in groups])
    axes.set(title="SQS requests per message (the cost: every request is billed)", ylabel="requests / message")
    figure.legend(*axes.get_legend_handles_labels(), loc="lower center", ncols=4)
    return save(figure, path, legend_below=0.08)


def value(row: Row | None, figure: str) -> float:
    return float(row["figures"].get(figure) or 0.0) if row else 0.0


def latency(run: Sequence[Row], path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(8, 3.2))
    for system in (CONVEYOR, NAIVE):
        row = find(run, "latency", system)
        if row is None:
            continue
        points = sorted((float(p), ms) for p, ms in row["figures"]["distribution_ms"].items() if ms is not None)
        points.append((100.0, row["figures"]["max_ms"]))
        axes.plot([ms for _, ms in points], [p for p, _ in points], **STYLE[system])
    rate = next((row["params"]["rate_per_s"] for row in run if row["bench"] == "latency"), "?")
    axes.set(title=f"POST -> handler start at a steady {rate:g} msg/s (share of messages started within)",
             xlabel="ms after the POST (log scale)", ylabel="% of messages", ylim=(0, 101), xscale="log")  # fmt: skip
    axes.legend(loc="lower right")
    return save(figure, path)


Headline = tuple[str, str, str, dict[str, Any], str]  # title, bench, figure, params, unit


HEADLINES: tuple[Headline, ...] = (
    ("processor drained msg/s, % of ideal (c=50)", "processor", "percent_of_ideal", {"concurrency": 50}, "%"),
    ("writer accepted/s (64 clients)", "writer", "accepted_per_s", {"clients": 64}, "req/s"),
    ("SQS requests / message, processor (c=50)", "processor", "sqs_requests_per_message", {"concurrency": 50}, ""),
    ("SQS requests / message, writer (64 clients)", "writer", "sqs_requests_per_message", {"clients": 64}, ""),
    ("POST -> handler start, p99", "latency", "p99_ms", {}, "ms"),
    ("processor CPU ms / message (c=50)", "processor", "cpu_ms_per_message", {"concurrency": 50}, "ms"),
)


LOG_SCALE = {"p99_ms"}  # tails spread over orders of magnitude


def history(grouped: dict[str, list[Row]], path: Path) -> Path:
    """Each headline figure over the runs (oldest left), one line per system; hollow = quick run."""
    runs = list(grouped.values())
    labels = [run_label(run) for run in runs]
    figure, grid = plt.subplots(2, 3, figsize=(10, 5.6))
    for axes, (title, bench, name, params, unit) in zip(grid.flat, HEADLINES, strict=True):
        for system in (CONVEYOR, NAIVE) if name == "sqs_requests_per_message" else (CONVEYOR, NAIVE, NOOP):
            points = [(i, find(run, bench, system, **params)) for i, run in enumerate(runs)]
            plot_history(
                axes, [(i, row) for i, row in points if row and row["figures"].get(name) is not None], name, system
            )
        axes.set_title(title, fontsize=8)
        axes.set_ylabel(unit)
        if name in LOG_SCALE:
            axes.set_yscale("log")
        axes.set_xticks(range(len(runs)), labels, rotation=60, fontsize=6)
    handles = [Line2D([], [], color=s["color"], marker=s["marker"], linestyle=s.get("linestyle", "-"), label=s["label"])
               for s in STYLE.values()]  # fmt: skip
    figure.legend(handles=handles, loc="lower center", ncols=3)
    return save(figure, path, legend_below=0.05)


def plot_history(axes: Axes, points: list[tuple[int, Row]], name: str, system: str) -> None:
    if not points:
        return
    style = STYLE[system]
    xs, ys = [i for i, _ in points], [row["figures"][name] for _, row in points]
    axes.plot(xs, ys, color=style["color"], linestyle=style.get("linestyle", "-"), linewidth=1, label=style["label"])
    filled: Callable[[Row], bool] = lambda row: row["profile"] == "full"  # noqa: E731 - one line of intent
    for fill in (True, False):
        chosen = [(i, row["figures"][name]) for i, row in points if filled(row) is fill]
        if chosen:
            axes.scatter([c[0] for c in chosen], [c[1] for c in chosen], marker=style["marker"], s=18, zorder=3,
                         color=style["color"] if fill else "white", edgecolors=style["color"])  # fmt: skip


def run_label(run: Sequence[Row]) -> str:
    first = run[0]
    return f"{first['commit'][:7]}{'+' if first['dirty'] else ''}\n{first['date'][5:10]}"


WINDOW_COLOURS = ("#0a3069", "#1f6feb", "#54aeff", "#b6e3ff")  # darker: a shorter window


def cost_curve(rows: Sequence[Row], path: Path) -> Path:
    """Requests per message (writer + processor) and POST -> handler start p99 against the steady
    rate, one line per CONVEYOR_BATCH_WINDOW_MS and one for the naive pair."""
    figure, (cost, late) = plt.subplots(1, 2, figsize=(9, 3.4))
    windows = sorted({row["params"]["window_ms"] for row in rows if row["system"] == CONVEYOR})
    lines: list[tuple[dict[str, Any], list[Row]]] = [
        ({"color": WINDOW_COLOURS[i % len(WINDOW_COLOURS)], "marker": "o", "label": f"Conveyor, window {w:g} ms"},
         [r for r in rows if r["system"] == CONVEYOR and r["params"]["window_ms"] == w])
        for i, w in enumerate(windows)
    ]  # fmt: skip
    lines.append((STYLE[NAIVE], [r for r in rows if r["system"] == NAIVE]))
    for style, unsorted in lines:
        points = sorted(unsorted, key=lambda r: r["params"]["rate_per_s"])
        rates = [r["params"]["rate_per_s"] for r in points]
        total = [value(r, "writer_sqs_requests_per_message") + value(r, "processor_sqs_requests_per_message")
                 for r in points]  # fmt: skip
        cost.plot(rates, total, **style)
        late.plot(rates, [value(r, "p99_ms") for r in points], **style)
    cost.set(title="SQS requests per message (writer + processor)", xlabel="steady msg/s (log)", xscale="log",
             ylabel="requests / message", ylim=(0, None))  # fmt: skip
    late.set(title="POST -> handler start, p99", xlabel="steady msg/s (log)", xscale="log", ylabel="ms",
             yscale="log")  # fmt: skip
    figure.legend(*cost.get_legend_handles_labels(), loc="lower center", ncols=3)
    return save(figure, path, legend_below=0.16)
