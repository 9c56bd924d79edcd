"""The package's structure: no import circle, and no module importing "upward".

Layers, from the bottom: the handler API (``message``, ``metadata``) and ``sqs/``; the idempotency
store; the settings; then the services (``writer/``, ``processor/``), which never import each other;
then the entry points (``cli``, ``dev``). Inside the writer and the processor, their parts are layered
too (:data:`WRITER_LAYERS`, :data:`PROCESSOR_LAYERS`, :data:`ENGINE_LAYERS`, :data:`FLOW_LAYERS`).
Every module of the package falls under at least one rule, so that none passes vacuously. Imports
made only for type checking count too: a circle there is still a circle for a reader.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src"
PACKAGE = SRC / "conveyor"

SERVICES = ("conveyor.writer", "conveyor.processor", "conveyor.cli", "conveyor.dev")  # and the entry points

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
    # the CLI's and the probe's side of the canary; the processor's side is the processor's own
    "conveyor.canary": ("conveyor.processor", "conveyor.writer", "conveyor.cli", "conveyor.dev", "conveyor.dlq"),
    "conveyor.dlq": ("conveyor.processor", "conveyor.writer", "conveyor.cli", "conveyor.dev", "conveyor.canary"),
    "conveyor.tracing": ("conveyor.processor", "conveyor.writer", "conveyor.cli", "conveyor.dev", "conveyor.canary",
                         "conveyor.dlq"),
    # payloads in S3: the wire format and the S3 calls, under both services (each has its own side)
    "conveyor.payloads": ("conveyor.settings", "conveyor.writer", "conveyor.processor", "conveyor.idempotency",
                          "conveyor.cli", "conveyor.dev", "conveyor.canary", "conveyor.dlq"),
    "conveyor.errors": ("conveyor.",),
    "conveyor.settings_mirror": ("conveyor.",),
    "conveyor.command_error": SERVICES,
    "conveyor.status": SERVICES,
    # the operators' web console: over the operator commands' parts (dlq, status), beside the services
    "conveyor.console": ("conveyor.writer", "conveyor.processor", "conveyor.cli", "conveyor.dev", "conveyor.testing"),
    "conveyor.metrics_dir": SERVICES,
    "conveyor.logs": SERVICES,
    "conveyor.serving": (*SERVICES, "conveyor.console"),
    "conveyor.handlers": SERVICES,
    "conveyor.localstack": SERVICES,
    "conveyor.localstack_install": SERVICES,  # run from src/ by the system Python: the standard library only
    # the user's message types, read by both services: under them, beside the handler API
    "conveyor.contracts": ("conveyor.settings", "conveyor.sqs", "conveyor.idempotency", *SERVICES,
                           "conveyor.testing", "conveyor.loading"),
    "conveyor.loading": (*SERVICES, "conveyor.testing"),
    "conveyor.schemas_of": (*SERVICES, "conveyor.testing", "conveyor.asyncapi"),
    "conveyor.asyncapi": (*SERVICES, "conveyor.testing"),
    "conveyor.settings_table": (*SERVICES, "conveyor.testing"),  # the docs' table, read by the site's build
    "conveyor.asyncapi_command": ("conveyor.writer", "conveyor.processor", "conveyor.dev", "conveyor.testing"),
    # the test kit runs both services in process: over them, under the entry points
    "conveyor.testing": ("conveyor.cli", "conveyor.dev"),
    # the entry points, on top: the cli starts the processor through its runner, never its parts
    "conveyor.cli": ("conveyor.processor.engine", "conveyor.processor.process"),
    "conveyor.dev": ("conveyor.writer", "conveyor.processor"),
}  # fmt: skip

# The writer's parts, bottom up: a part may import the parts of the rows before its own, none of its
# own row or of a later one. The API's contract (bodies, problems, request metadata), the metrics and the
# queue read at start-up; sending and replay, which know nothing of each other; the state the routes
# share; the batch route's work; the HTTP side and the lifespan, which know nothing of each other;
# the app that puts them together; the two entry points.
WRITER_LAYERS = (
    ("api", "metrics", "startup"),
    ("sending", "replay"),
    ("mirror",),  # copies of what the sending accepted
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


def layered(package: str, layers: tuple[tuple[str, ...], ...]) -> dict[str, tuple[str, ...]]:
    """Rules for ``package``'s parts, bottom up: a part may import the parts of the rows before its own,
    none of its own row or of a later one."""
    return {
        f"{package}.{part}": tuple(f"{package}.{other}" for later in layers[i:] for other in later if other != part)
        for i, row in enumerate(layers)
        for part in row
    }


# The console's parts, bottom up: its settings, the guard, the forms and the scrape of the metrics;
# the DLQ's one reader and the overview's; the actions (in turn with the reader); what the pages
# share; the pages; the app; the command.
FORBIDDEN |= layered(
    "conveyor.console",
    (("settings", "auth", "forms", "scrape"), ("desk", "overview"), ("actions",), ("render",), ("pages",), ("app",),
     ("command",)),
)  # fmt: skip

# The processor's parts, bottom up: what the engine and the process share (its configuration, its
# metrics, the user's handler); the engine (receive to settle, in one task group); an app routed as
# one handler; the process around it (signals, start-up checks, ops port, supervisor and children);
# the entry point.
PROCESSOR_LAYERS = (
    ("config", "metrics", "user_code"),
    ("engine",),
    ("routing",),  # an app as one handler, under the engine's own decisions: known to the entry point only
    ("process",),
    ("runner",),
)
# The engine's parts, bottom up: a received message, the counters and the receives' spacing; what is
# decided (outcome), kept in order (buffer) or keyed (claim keys); the SQS calls (acker, dead-letter
# copy), the handler's call, the claims, a batch; the one settlement of every message; the receive loop
# and the workers. The package's own module (the Engine, which puts them together) is on top.
ENGINE_LAYERS = (
    ("lease", "slots", "backoff", "health", "claim_memory", "pacing"),
    ("outcome", "buffer", "claim_keys", "canary_reply"),
    ("acker", "heartbeat", "invoke", "dead_letter", "batch", "dedupe", "flow"),
    ("settle",),
    ("poller", "dispatcher"),
)
FORBIDDEN |= layered("conveyor.processor", PROCESSOR_LAYERS)
FLOW_LAYERS = (("rate", "limit", "breaker"), ("gate",))  # the gate combines the three
FORBIDDEN |= layered("conveyor.processor.engine", ENGINE_LAYERS)
FORBIDDEN |= layered("conveyor.processor.engine.flow", FLOW_LAYERS)


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
    rules = [FORBIDDEN[prefix] for prefix in rules_of(module)] + [EXACT.get(module, ())]
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


# Rules for one module only (not its prefix's whole tree): the package's own module, the handler API.
EXACT = {"conveyor": ("conveyor.sqs", "conveyor.settings", "conveyor.idempotency", *SERVICES)}


def rules_of(module: str) -> list[str]:
    return [prefix for prefix in FORBIDDEN if module == prefix or module.startswith(prefix + ".")]


def test_every_module_falls_under_a_rule() -> None:
    # a module no rule names would pass test_no_module_imports_upward without being judged
    unjudged = {module for module in MODULES if not rules_of(module) and module not in EXACT}
    assert unjudged == set()


def test_every_processor_module_is_in_one_of_its_layers() -> None:
    parts = {module.split(".")[2] for module in MODULES if module.startswith("conveyor.processor.")}
    assert parts - {"__main__"} == {part for row in PROCESSOR_LAYERS for part in row}
    engine = {module.split(".")[3] for module in MODULES if module.startswith("conveyor.processor.engine.")}
    assert engine == {part for row in ENGINE_LAYERS for part in row}
    flow = {module.split(".")[4] for module in MODULES if module.startswith("conveyor.processor.engine.flow.")}
    assert flow == {part for row in FLOW_LAYERS for part in row}


def test_only_the_settlement_changes_a_lease_s_stage_its_slots_or_the_in_flight_set() -> None:
    # one owner of a message's life: the rules it keeps (slots used = messages held, a claim released
    # before its message is visible again) hold only if nobody else does its work
    owner = "conveyor.processor.engine.settle"
    doing_its_work = re.compile(
        r"\blease\.(start|settle|abandon)\(|slots\.(reserve|give_back)\(|inflight\.(add|discard)\("
    )
    others = {
        module: sorted({match.group(0) for match in doing_its_work.finditer(MODULES[module].read_text())})
        for module in MODULES
        if module.startswith("conveyor.") and module != owner
    }
    assert {module: found for module, found in others.items() if found} == {}
    assert doing_its_work.search(MODULES[owner].read_text())  # the pattern finds the owner's own work


def test_only_the_writers_entry_point_imports_its_app() -> None:
    # (and the test kit's in-process stack, which serves it to the user's tests)
    importers = {module for module, targets in GRAPH.items() if "conveyor.writer.app" in targets}
    assert importers <= {"conveyor.writer.asgi", "conveyor.cli", "conveyor.testing.stack"}


def test_the_graph_is_read() -> None:
    # the reader finds the imports it is about to judge (an empty graph would pass everything)
    assert "conveyor.writer.sending.sender" in GRAPH["conveyor.writer.app"] | GRAPH["conveyor.writer.state"]
    assert "conveyor.sqs.errors" in GRAPH["conveyor.processor.process.startup"]
    assert "conveyor.processor.engine.settle" in GRAPH["conveyor.processor.engine.dispatcher"]


def test_only_the_test_kit_imports_the_test_kit() -> None:
    # the services never depend on what tests use; the kit may use everything under it
    importers = {m for m, targets in GRAPH.items() if any(t.startswith("conveyor.testing") for t in targets)}
    assert importers <= {m for m in MODULES if m.startswith("conveyor.testing")}


def test_the_package_itself_imports_only_the_standard_library() -> None:
    # the LocalStack installer runs as `python -m conveyor.localstack_install` on a bare Python
    # (make install, before the venvs exist): importing the package must need nothing installed
    code = (
        "import sys, conveyor, conveyor.localstack_install; "
        "third = sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'structlog', 'botocore', 'fastapi'}); "
        "assert not third, third; conveyor.App; assert 'pydantic' in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
