"""Every source file and function small enough to read at once: at most 300 lines a file and 45 a
function. A reader holds a message's path in mind by its parts; a part that grows past this has
usually taken on a second job."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "src" / "conveyor"
MAX_FILE_LINES = 300
MAX_FUNCTION_LINES = 45

# Functions that may be longer, each with its reason.
LONGER_FUNCTIONS = {
    # metric declarations: one statement per metric, nothing to follow
    "processor/metrics.py:ProcessorMetrics.__init__",
    "writer/metrics.py:WriterMetrics.__init__",
}


def functions(path: Path) -> dict[str, int]:
    """Each function's qualified name in ``path`` and its length in lines."""
    found: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    found[name] = (child.end_lineno or child.lineno) - child.lineno + 1
                visit(child, f"{name}.")

    visit(ast.parse(path.read_text()), "")
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_no_source_file_is_longer_than_the_limit() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES}
    assert long == {}


def test_no_function_is_longer_than_the_limit_but_those_allowed() -> None:
    long = {
        f"{path.relative_to(PACKAGE)}:{name}"
        for path in SOURCES
        for name, lines in functions(path).items()
        if lines > MAX_FUNCTION_LINES
    }
    assert long == LONGER_FUNCTIONS


def test_the_measure_sees_the_functions_it_judges() -> None:
    # an empty reading would pass everything
    lengths = functions(PACKAGE / "processor" / "metrics.py")
    assert lengths["ProcessorMetrics.__init__"] > MAX_FUNCTION_LINES
    assert len(SOURCES) > 50
