"""The benchmarks stand on their own: nothing under bench/ or harness/ imports the tests, and every
scenario under bench/scenarios/ can be run from ``python -m bench.run --only NAME``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from bench import run

ROOT = Path(__file__).parents[2]
SCENARIOS = sorted(p.stem for p in (ROOT / "bench" / "scenarios").glob("*.py") if p.stem != "__init__")


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize(
    "path", sorted([*ROOT.joinpath("bench").rglob("*.py"), *ROOT.joinpath("harness").rglob("*.py")])
)
def test_no_benchmark_or_harness_module_imports_the_tests(path: Path) -> None:
    assert not {name for name in imported(path) if name == "tests" or name.startswith("tests.")}


def test_every_scenario_is_reachable_from_bench_run() -> None:
    assert SCENARIOS  # the folder is found
    assert sorted([*run.BENCHES, *run.STANDALONE]) == SCENARIOS
