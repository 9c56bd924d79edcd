"""Every problem ``type`` the writer can answer with is listed in docs/errors.md.

The titles are collected from the source: every ``Problem(title=...)`` and ``EntryProblem(status,
title, ...)`` with a literal title. A title that is not a literal fails this test, except the router's
own (404, 405), which are asked of the app."""

from __future__ import annotations

import ast
from pathlib import Path

import httpx

from conveyor.writer.api.schemas import Problem

REPO = Path(__file__).parents[2]
WRITER = REPO / "src" / "conveyor" / "writer"
DOCS = (REPO / "docs" / "errors.md").read_text()
DYNAMIC = {
    ("http/error_handlers.py", "http_error"),  # str(exc.detail): Starlette's 404 and 405, checked below
    ("api/problems.py", "to_problem"),  # an EntryProblem's own title, collected where it is raised
}


def _title_of(call: ast.Call) -> ast.expr | None:
    name = call.func.id if isinstance(call.func, ast.Name) else None
    if name == "Problem":
        return next((k.value for k in call.keywords if k.arg == "title"), None)
    if name == "EntryProblem":
        return call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "title"), None)
    return None


def _own_calls(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.Call]:
    """The calls in ``function``'s body, not in the functions defined inside it."""
    calls: list[ast.Call] = []
    todo: list[ast.AST] = list(function.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Call):
            calls.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return calls


def collected_titles() -> tuple[set[str], set[tuple[str, str]]]:
    """(literal titles, (file, function) of every non-literal title)."""
    titles: set[str] = set()
    dynamic: set[tuple[str, str]] = set()
    for path in sorted(WRITER.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
            for call in _own_calls(function):
                title = _title_of(call)
                if isinstance(title, ast.Constant) and isinstance(title.value, str):
                    titles.add(title.value)
                elif title is not None:
                    dynamic.add((path.relative_to(WRITER).as_posix(), function.name))
    return titles, dynamic


def documented(problem_type: str) -> bool:
    return f"`{problem_type}`" in DOCS


def test_every_problem_type_in_the_source_is_documented() -> None:
    titles, dynamic = collected_titles()
    assert {"Invalid message", "SQS unavailable", "Queue unusable", "Malformed JSON"} <= titles  # the collector works
    assert dynamic == DYNAMIC, "a problem title that is not a literal: list its types in docs/errors.md and here"
    types = {Problem(title=t, status=400, detail="").type for t in titles}
    assert sorted(t for t in types if not documented(t)) == []


async def test_the_routers_own_problems_are_documented(api: httpx.AsyncClient) -> None:
    for response in (await api.get("/nope"), await api.delete("/messages")):
        assert response.status_code in {404, 405}
        assert documented(response.json()["type"]), response.json()["type"]
