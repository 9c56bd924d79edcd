"""The package's structure: no import circle, and no module importing "upward".

Layers, from the bottom: the handler API (``message``, ``metadata``) and ``sqs/``; the idempotency
store; the settings; then the services (``writer/``, ``processor/``), which never import each other;
then the entry points (``cli``, ``dev``). Inside the writer, its parts are layered too
(:data:`WRITER_LAYERS`). Imports made only for type checking count too: a circle there is still a
circle for a reader.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src"
PACKAGE = SRC / "conveyor"

# module prefix -> prefixes it must not import
FORBIDDEN = {
    "conveyor.sqs": ("conveyor.settings", "conveyor.writer", "conveyor.processor", "conveyor.idempotency",
                     "conveyor.cli", "conveyor.dev", "conveyor.canary", "conveyor.dlq"),
    "conveyor.message": ("conveyor.settings", "conveyor.sqs", "conveyor.writer", "conveyor.processor"),
    "conveyor.metadata": ("conveyor.",),
    "conveyor.idempotency": ("conveyor.settings", "conveyor.writer", "conveyor.processor", "conveyor.cli",
                             "conveyor.sqs"),
    "conveyor.settings": ("conveyor.writer", "conveyor.processor", "conveyor.cli", "conveyor.dev"),
    "conveyor.writer": ("conveyor.processor", "conveyor.cli", "conveyor.dev", "conveyor.dlq"),
    "conveyor.processor": ("conveyor.writer", "conveyor.cli", "conveyor.dev", "conveyor.dlq"),
}  # fmt: skip

# The writer's parts, bottom up: a part may import the parts of the rows before its own, none of its
# own row or of a later one. The API's contract (bodies, problems, request metadata), the metrics and the
# queue read at start-up; sending and replay, which know nothing of each other; the state the routes
# share; the batch route's work; the HTTP side and the lifespan, which know nothing of each other;
# the app that puts them together; the two entry points.
WRITER_LAYERS = (
    ("api", "metrics", "startup"),
    ("sending", "replay"),
    ("state",),
    ("batch",),
    ("http", "lifespan"),
    ("app",),
    ("asgi", "server"),
)
WRITER_PARTS = {part for row in WRITER_LAYERS for part in row}
FORBIDDEN |= {
    f"conveyor.writer.{part}": tuple(
        f"conveyor.writer.{other}" for later in WRITER_LAYERS[i:] for other in later if other != part
    )
    for i, row in enumerate(WRITER_LAYERS)
    for part in row
}
# The edge is plain ASGI in front of the app: it knows nothing of the app's routes and handlers.
FORBIDDEN |= {
    f"conveyor.writer.http.{edge}": tuple(
        f"conveyor.writer.http.{app_side}" for app_side in ("routes", "error_handlers", "parse_errors", "docs")
    )
    for edge in ("edge", "edge_request", "fast_path")
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[str]:
    """The conveyor modules ``path`` imports (absolute imports; this package uses no relative ones)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("conveyor"):
            for alias in node.names:  # `from package import submodule` imports the submodule
                submodule = f"{node.module}.{alias.name}"
                yield (
                    submodule
                    if (PACKAGE.parent / submodule.replace(".", "/")).with_suffix(".py").exists()
                    else node.module
                )
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("conveyor"))


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}
GRAPH = {name: {target for target in imports(path) if target in MODULES} for name, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_upward(module: str) -> None:
    if module.endswith(".__main__"):
        return  # `python -m ...`: an entry point, on top like the cli
    rules = [banned for prefix, banned in FORBIDDEN.items() if module == prefix or module.startswith(prefix + ".")]
    wrong = {target for target in imports(MODULES[module]) for banned in rules for b in banned if target.startswith(b)}
    assert wrong == set()


def test_there_is_no_import_circle() -> None:
    circles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_every_writer_module_is_in_one_of_its_layers() -> None:
    # a module outside WRITER_LAYERS would pass the rules above without being judged by them
    parts = {module.split(".")[2] for module in MODULES if module.startswith("conveyor.writer.")}
    assert parts == WRITER_PARTS


def test_only_the_writers_entry_point_imports_its_app() -> None:
    importers = {module for module, targets in GRAPH.items() if "conveyor.writer.app" in targets}
    assert importers <= {"conveyor.writer.asgi", "conveyor.cli"}


def test_the_graph_is_read() -> None:
    # the reader finds the imports it is about to judge (an empty graph would pass everything)
    assert "conveyor.writer.sending.sender" in GRAPH["conveyor.writer.app"] | GRAPH["conveyor.writer.state"]
    assert "conveyor.sqs.errors" in GRAPH["conveyor.processor.process.startup"]
