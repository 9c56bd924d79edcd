"""The benchmark gate, report and comparison on synthetic results: each failure the gate exists for
makes it fail, a good run passes, and the report renders with and without a test run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bench import compare, gate, report
from bench.profiles import CONVEYOR, NAIVE, NOOP, QUICK
from bench.results import Row, Run, append, latest_run, load


def good_run(commit: str = "a" * 40, date: str = "2026-11-29T00:00:00Z") -> list[Row]:
    """A quick run as bench.run writes it, with figures that pass every check."""
    run = Run(sqs_server="localstack-core test (twisted)", profile="quick", commit=commit, dirty=False, date=date,
              cores=2, cpu="test")  # fmt: skip
    rows = []
    figures: dict[str, Any]
    for c in QUICK.processor_concurrency:
        for system, rate, cost in ((CONVEYOR, 9.8 * c, 0.2), (NAIVE, 7.0 * c, 1.1)):
            figures = {"throughput_msg_s": rate, "ideal_msg_s": 10.0 * c, "percent_of_ideal": rate / c * 10,
                       "sqs_requests_per_message": cost, "cpu_ms_per_message": 0.5, "peak_rss_mb": 80.0,
                       "processed": 25 * c, "lost": 0, "left_on_queue": 0, "sqs_errors": 0}  # fmt: skip
            rows.append(run.row("processor", system, {"concurrency": c, "messages": 25 * c, "handler_s": 0.1}, figures))
    for n in QUICK.writer_clients:
        for system, rate, cost in ((CONVEYOR, 2000.0 if n > 1 else 350.0, 0.11 if n > 1 else 1.0),
                                   (NAIVE, 500.0 if n > 1 else 300.0, 1.0), (NOOP, 4000.0, 0.0)):  # fmt: skip
            figures = {"accepted_per_s": rate, "accepted": int(rate * 2.5), "error_answers": 0, "p50_ms": 5.0,
                       "p99_ms": 20.0, "sqs_requests_per_message": cost, "cpu_ms_per_message": 0.3}  # fmt: skip
            if system != NOOP:
                figures["lost"] = 0
            rows.append(run.row("writer", system, {"clients": n, "seconds": 2.5}, figures))
    for system in (CONVEYOR, NAIVE):
        figures = {
            "posted": 1000, "posted_per_s": 200.0, "accepted": 1000, "error_answers": 0, "lost": 0, "started_twice": 0,
            "p50_ms": 12.0, "p90_ms": 18.0, "p99_ms": 27.0, "max_ms": 35.0, "post_p50_ms": 11.0,
            "distribution_ms": {"1": 6.0, "50": 12.0, "99": 27.0},
        }  # fmt: skip
        rows.append(run.row("latency", system, {"rate_per_s": 200.0, "seconds": 5.0, "concurrency": 50}, figures))
    return rows


def set_figure(rows: list[Row], bench: str, system: str, figure: str, value: Any, **params: Any) -> list[Row]:
    for row in rows:
        if row["bench"] == bench and row["system"] == system and all(row["params"][k] == v for k, v in params.items()):
            row["figures"][figure] = value
    return rows


def failures(rows: list[Row]) -> list[str]:
    return [f"{c.what}: {c.detail}" for c in gate.check(rows) if c.status == "FAIL"]


def test_a_good_run_passes() -> None:
    checks = gate.check(good_run())

    assert [c for c in checks if c.status == "FAIL"] == []
    assert [c for c in checks if c.status == "WARN"] == []
    assert sum(c.status == "PASS" for c in checks) >= 20


def test_a_single_client_writer_slower_than_the_naive_one_fails() -> None:
    # a lone message waits for no batching, so the one-client ratio is gated too
    rows = set_figure(good_run(), "writer", CONVEYOR, "accepted_per_s", 100.0, clients=1)
    assert failures(rows) == [
        "writer clients=1: accepted/s: conveyor 100.0 vs naive-boto3 300.0: ratio 0.33 (at least 1.00)"
    ]


Mutation = tuple[str, str, str, Any, dict[str, Any]]  # bench, system, figure, new value, params


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (("processor", CONVEYOR, "lost", 3, {"concurrency": 50}), "processor c=50: messages lost: 3"),
        (("processor", CONVEYOR, "left_on_queue", 1, {"concurrency": 10}), "c=10: messages left on the queue: 1"),
        (("processor", CONVEYOR, "sqs_requests_per_message", 0.23, {"concurrency": 100}), "per message: 0.23"),
        (("processor", CONVEYOR, "throughput_msg_s", 340.0, {"concurrency": 50}), "ratio 0.97"),
        (("processor", NAIVE, "throughput_msg_s", 1000.0, {"concurrency": 100}), "processor c=100: drained msg/s"),
        (("writer", CONVEYOR, "error_answers", 2, {"clients": 16}), "writer clients=16: error answers: 2"),
        (("writer", CONVEYOR, "lost", 1, {"clients": 1}), "clients=1: accepted messages not on the queue: 1"),
        (("writer", CONVEYOR, "sqs_requests_per_message", 0.13, {"clients": 64}), "per message: 0.13"),
        (("writer", CONVEYOR, "sqs_requests_per_message", None, {"clients": 64}), "per message: None"),
        (("writer", CONVEYOR, "accepted_per_s", 450.0, {"clients": 64}), "writer clients=64: accepted/s"),
        (("latency", CONVEYOR, "lost", 1, {}), "latency: accepted messages never started: 1"),
        (("latency", CONVEYOR, "error_answers", 4, {}), "latency: error answers: 4"),
    ],
)
def test_each_failure_fails_the_gate(mutation: Mutation, expected: str) -> None:
    bench, system, figure, value, params = mutation

    found = failures(set_figure(good_run(), bench, system, figure, value, **params))

    assert len(found) == 1, found
    assert expected in found[0]


def test_the_writer_bound_applies_at_64_clients_only() -> None:
    rows = set_figure(good_run(), "writer", CONVEYOR, "sqs_requests_per_message", 0.5, clients=16)

    assert failures(rows) == []


def test_the_processor_cost_bound_is_a_warning_where_ten_messages_outlast_the_delete_linger() -> None:
    """The bound rests on the ten handlers of a receive ending within the delete linger of each other:
    on a machine where ten messages cost more CPU than the linger, it is printed, not gated."""
    rows = set_figure(good_run(), "processor", CONVEYOR, "sqs_requests_per_message", 0.3, concurrency=10)
    assert failures(rows) == ["processor c=10: SQS requests per message: 0.3 (at most 0.22)"]
    slow = set_figure(rows, "processor", CONVEYOR, "cpu_ms_per_message", 2.5, concurrency=10)
    assert failures(slow) == []
    (warning,) = [c for c in gate.check(slow) if c.status == "WARN"]
    assert warning.what == "processor c=10: SQS requests per message"
    assert "not gated: ten messages cost 2.5 x 10 ms of CPU here, more than the 20 ms linger" in warning.detail


def test_a_missing_measurement_fails() -> None:
    rows = [
        r
        for r in good_run()
        if not (r["bench"] == "processor" and r["system"] == NAIVE and r["params"]["concurrency"] == 10)
    ]

    assert failures(rows) == ["processor c=10: no measurement in this run"]
    assert failures([]) == ["run: no measurement in this run"]


def test_a_full_run_also_checks_the_peak_rss_with_1000_in_flight() -> None:
    rows = good_run()
    for row in rows:
        row["profile"] = "full"
    assert failures(rows) == ["processor, 1,000 in flight: peak RSS MB: None (at most 150.0)"]
    run = Run(
        sqs_server="s", profile="full", commit="a" * 40, dirty=False, date="2026-11-29T00:00:00Z", cores=2, cpu="t"
    )
    rows.append(run.row("processor-rss", CONVEYOR, {"concurrency": 1000}, {"peak_rss_mb": 151.0}))
    assert failures(rows) == ["processor, 1,000 in flight: peak RSS MB: 151.0 (at most 150.0)"]
    rows[-1]["figures"]["peak_rss_mb"] = 83.0
    assert failures(rows) == []


def test_main_checks_the_last_run_and_exits_by_the_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results.jsonl"
    assert gate.main(["--results", str(results)]) == 2
    append(results, set_figure(good_run(date="2026-11-28T00:00:00Z"), "processor", CONVEYOR, "lost", 1, concurrency=10))
    assert gate.main(["--results", str(results)]) == 1
    append(results, good_run(date="2026-11-29T00:00:00Z"))

    assert gate.main(["--results", str(results)]) == 0
    assert gate.main(["--results", str(results), "--run", "2026-11-28T00:00:00Z/aaaaaaaaaa"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  processor c=10: messages lost: 1 (must be 0)" in out
    assert "gate: 24 passed, 0 failed" in out
    assert [row["date"] for row in latest_run(load(results))][:1] == ["2026-11-29T00:00:00Z"]


def test_report_renders_plots_and_says_when_no_test_run_is_recorded(tmp_path: Path) -> None:
    page, counts = report.render(good_run(), [tmp_path / "missing.xml"], tmp_path / "missing.jsonl", tmp_path / "out")

    assert "No test run recorded" in page
    assert "No end-to-end run recorded" in page
    assert counts == ""
    for plot in ("processor_throughput", "writer_throughput", "sqs_requests", "latency", "history"):
        svg = (tmp_path / "out" / f"{plot}.svg").read_text()
        assert svg.startswith("<?xml")
        assert "Conveyor" in svg
        assert f"({plot}.svg)" in page
    assert "Gate (`python -m bench.gate`): 24 passed, 0 failed." in page


def test_report_reads_the_junit_counts_and_the_reliability_figures(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest" tests="3" failures="1" errors="0" skipped="1" time="4.5" '
        'timestamp="2026-11-29T01:02:03.000"><testcase classname="tests.unit.test_x" name="test_a" time="3.2"/>'
        '<testcase classname="tests.unit.test_x" name="test_b" time="1.0"><failure message="boom"/></testcase>'
        '<testcase classname="tests.unit.test_x" name="test_c" time="0.1"><skipped/></testcase>'
        "</testsuite></testsuites>"
    )
    reliability = tmp_path / "reliability.jsonl"
    reliability.write_text(json.dumps({"test": "kill_9", "at": "t", "duplicates": 9}) + "\n")

    page, counts = report.render([], [junit], reliability, tmp_path / "out")

    assert counts == "tests: 1 passed, 1 failed, 1 skipped"
    assert "| 3.2 | tests.unit.test_x::test_a | passed |" in page
    assert "| tests.unit.test_x::test_b | failure |" in page
    assert "| kill_9 | t | duplicates 9 |" in page
    assert "No benchmark run recorded" in page


def test_compare_prints_both_runs_and_the_ratios(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results.jsonl"
    append(results, good_run(commit="1" * 40, date="2026-11-28T00:00:00Z"))
    append(
        results, set_figure(good_run(commit="2" * 40), "processor", CONVEYOR, "throughput_msg_s", 245.0, concurrency=50)
    )

    assert compare.main(["1111111", "2222222", "--results", str(results)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split() == ["processor", "c=50", "throughput_msg_s", "490", "245", "0.50"] for line in lines), lines
    assert any(line.split() == ["processor", "c=50", "conveyor/naive", "1.4", "0.7", "0.50"] for line in lines), lines
    assert compare.main(["3333333", "2222222", "--results", str(results)]) == 2
    assert "no benchmark run recorded for 3333333" in capsys.readouterr().err


def with_mirror(rows: list[Row]) -> list[Row]:
    """A run with the mirror's rows (full runs only) that pass every check."""
    run = Run(sqs_server="s", profile="quick", commit="a" * 40, dirty=False, date="2026-11-29T00:00:00Z", cores=2,
              cpu="t")  # fmt: skip
    params = {"clients": 64, "rounds": 3, "seconds": 5.0, "ratio": 1.0}
    common = {"accepted_per_s": 800.0, "error_answers": 0, "lost": 0, "p99_ms": 200.0}
    copies = {"copies_sent": 900, "copies_dropped": 90, "copies_failed": 10, "copies_unaccounted": 0}
    on = {**common, **copies, "accepted_per_s": 560.0, "mirror_queue_messages": 900, "throughput_ratio": 0.7}
    fault = {"error_answers": 0, "lost": 0, "copies_failed_at_delete": 0, "copies_failed": 40}
    return [
        *rows,
        run.row("mirror", CONVEYOR, {"mirror": "off", **params}, common),
        run.row("mirror", CONVEYOR, {"mirror": "on", **params}, on),
        run.row("mirror-fault", CONVEYOR, {"clients": 64, "seconds": 10.0, "ratio": 1.0}, fault),
    ]


@pytest.mark.parametrize(
    ("mirror", "figure", "value", "expected"),
    [
        ("on", "error_answers", 1, "mirror on: error answers: 1"),
        ("off", "lost", 2, "mirror off: accepted messages not on the queue: 2"),
        ("on", "copies_unaccounted", 3, "with no copy outcome (sent, dropped, failed): 3"),
        ("on", "mirror_queue_messages", 899, "copies sent but not on the mirror queue: 1"),
    ],
)
def test_each_mirror_failure_fails_the_gate(mirror: str, figure: str, value: Any, expected: str) -> None:
    rows = with_mirror(good_run())
    assert failures(rows) == []
    assert [c.what for c in gate.check(rows) if c.status == "INFO" and "mirror" in c.what] == [
        "mirror: throughput on/off"
    ]  # a slower mirror is this machine's figure: printed, not gated

    found = failures(set_figure(rows, "mirror", CONVEYOR, figure, value, mirror=mirror))

    assert len(found) == 1, found
    assert expected in found[0]


def test_the_mirror_queue_deleted_must_change_nothing_for_the_clients_and_fail_the_copies() -> None:
    rows = with_mirror(good_run())
    assert failures(set_figure(rows, "mirror-fault", CONVEYOR, "error_answers", 5)) == [
        "mirror queue deleted: error answers: 5 (must be 0)"
    ]
    rows = with_mirror(good_run())
    assert failures(set_figure(rows, "mirror-fault", CONVEYOR, "copies_failed", 0)) == [
        "mirror queue deleted: copies failed after it: 0 (must be > 0)"
    ]
    rows = [r for r in with_mirror(good_run()) if r["bench"] != "mirror-fault"]
    assert failures(rows) == ["mirror-fault: no measurement in this run"]
