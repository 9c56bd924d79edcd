"""The package's import structure: no import circle, and no module importing "upward" (the writer and
the processor never import each other; the shared layers import neither). Read from the source, so
that imports under TYPE_CHECKING and inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each conveyor module -> the conveyor modules it imports (a package's __init__ counts as the
    package; ``from package import module`` as the module)."""
    modules = {module_name(path): path for path in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "conveyor":
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    imported.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names if a.name.split(".")[0] == "conveyor")
        graph[name] = imported - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def imports_between(graph: dict[str, set[str]], lower: str, upper: str) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module.startswith(lower)
        for target in targets
        if target.startswith(upper)
    )


def test_the_import_graph_is_read() -> None:
    # GIVEN the source tree: the reader finds the imports it is about to judge
    graph = import_graph()
    assert "conveyor.writer.sender" in graph["conveyor.writer.app"] | graph["conveyor.writer.state"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_circle() -> None:
    assert find_cycle(import_graph()) is None


def test_no_module_imports_upward() -> None:
    graph = import_graph()
    upward = [
        *imports_between(graph, "conveyor.writer", "conveyor.processor"),
        *imports_between(graph, "conveyor.processor", "conveyor.writer"),
        *imports_between(graph, "conveyor.sqs", "conveyor.writer"),
        *imports_between(graph, "conveyor.sqs", "conveyor.processor"),
        *imports_between(graph, "conveyor.idempotency", "conveyor.writer"),
        *imports_between(graph, "conveyor.idempotency", "conveyor.processor"),
        *imports_between(graph, "conveyor.idempotency", "conveyor.sqs"),
        # Inside the writer: only the entry points import the app.
        *(i for i in imports_between(graph, "conveyor.writer", "conveyor.writer.app") if "writer.asgi " not in i),
    ]
    assert upward == []
