"""`conveyor console` on the in-memory SQS: what its pages and API show of a seeded queue, what its
actions move or delete (exactly what was chosen), and every way a request may be refused."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from prometheus_client import generate_latest
from pydantic import SecretStr, ValidationError
from structlog.testing import capture_logs

from conveyor import metadata
from conveyor.console.app import create_console_app
from conveyor.console.auth import SESSION_SECONDS, Guard
from conveyor.console.scrape import figures_of, scrape
from conveyor.console.settings import ConsoleSettings
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.testing.sqs import InMemorySqs, as_client

TOKEN = "console-token-for-tests"  # noqa: S105 - a test token
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "Origin": "http://console"}
HTML = {"Accept": "text/html"}
BEARER = {"Authorization": f"Bearer {TOKEN}"}


class ConsoleSqs(InMemorySqs):
    """The fake plus ListDeadLetterSourceQueues (the redrive checks where a message may go)."""

    async def list_dead_letter_source_queues(self, QueueUrl: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        dlq = self.queue(QueueUrl)
        return {"queueUrls": [q.url for q in self.queues.values() if dlq.arn in q.attributes.get("RedrivePolicy", "")]}

    async def get_queue_attributes(self, QueueUrl: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        answer = await super().get_queue_attributes(QueueUrl, **kwargs)
        now, messages = self._now(), self.queue(QueueUrl).messages.values()
        hidden = sum(1 for m in messages if m.visible_at > now)
        answer["Attributes"] |= {"ApproximateNumberOfMessages": str(len(messages) - hidden),
                                 "ApproximateNumberOfMessagesNotVisible": str(hidden)}  # fmt: skip
        return answer


def seeded() -> ConsoleSqs:
    """``orders`` with two messages waiting; its DLQ with two ValueErrors and one KeyError."""
    fake = ConsoleSqs()
    queue = fake.create("orders", max_receive_count=3)
    fake.put("orders", '{"n": 1}')
    fake.put("orders", '{"n": 2}')
    for n, kind in enumerate(("builtins.ValueError", "builtins.ValueError", "builtins.KeyError")):
        record = {"error_type": kind, "error_message": f"bad {n}", "source_queue": queue.url, "receive_count": 3,
                  "dead_lettered_at": int(time.time() * 1000) - 60_000}  # fmt: skip
        attributes = {metadata.DEAD_LETTER: {"DataType": "String", "StringValue": json.dumps(record)}}
        fake.put("orders-dlq", json.dumps({"dead": n, "kind": kind}), attributes)
    return fake


@asynccontextmanager
async def console(fake: InMemorySqs, token: str | None = TOKEN) -> AsyncIterator[httpx.AsyncClient]:
    settings = ConsoleSettings(
        queue_name="orders", console_token=SecretStr(token) if token else None, console_allowed_hosts="console"
    )
    app = create_console_app(settings, as_client(fake))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://console") as http:
            yield http


def bodies(fake: InMemorySqs, name: str) -> list[dict[str, Any]]:
    return sorted((json.loads(m.body) for m in fake.queues[name].messages.values()), key=json.dumps)


async def finished(http: httpx.AsyncClient, action_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        action: dict[str, Any] = (await http.get(f"/api/actions/{action_id}")).json()
        if action["state"] != "running":
            return action
        await asyncio.sleep(0.01)  # the action runs in the app's task group, on this loop
    raise AssertionError(f"action {action_id} still running")


async def signed_in(http: httpx.AsyncClient) -> str:
    """Sign in through the form; returns the CSRF token a page of the session carries."""
    answer = await http.post("/sign-in", data={"token": TOKEN, "next": "/dead-letters"}, headers=SAME_ORIGIN)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dead-letters"
    page = await http.get("/dead-letters", headers=HTML)
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found is not None
    return found.group(1)


async def test_the_overview_shows_the_queues_counts() -> None:
    async with console(seeded()) as http:
        data = (await http.get("/api/overview")).json()
        page = await http.get("/", headers=HTML)
    roles = {q["role"]: q for q in data["queues"]}
    assert (roles["queue"]["name"], roles["queue"]["visible"]) == ("orders", 2)
    assert (roles["dlq"]["name"], roles["dlq"]["visible"]) == ("orders-dlq", 3)
    assert data["processors"] is None  # no metrics URL configured
    assert page.status_code == 200
    assert re.search(
        r'data-role="queue">\s*<td>queue</td><td>orders</td>\s*<td data-figure="visible">2</td>', page.text
    )
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


async def test_the_dead_letter_list_filters_by_error_type() -> None:
    async with console(seeded()) as http:
        every = await http.get("/dead-letters", headers=HTML)
        values = await http.get("/dead-letters", params={"error_type": "ValueError"}, headers=HTML)
        bad = await http.get("/dead-letters", params={"older_than_minutes": "-3"})
    assert every.text.count('data-error-type="builtins.') == 3
    assert values.text.count('data-error-type="builtins.ValueError"') == 2
    assert 'data-error-type="builtins.KeyError"' not in values.text
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"
    assert "older_than_minutes" in bad.json()["detail"]


async def test_one_message_shows_its_record_and_body() -> None:
    fake = seeded()
    async with console(fake) as http:
        listing = await http.get("/dead-letters", headers=HTML)
        first = re.search(r'data-message-id="([^"]+)" data-error-type="builtins.KeyError"', listing.text)
        assert first is not None
        page = await http.get(f"/dead-letters/{first.group(1)}", headers=HTML)
        missing = await http.get("/dead-letters/nope")
    assert page.status_code == 200
    assert "bad 2" in page.text
    assert "&#34;kind&#34;: &#34;builtins.KeyError&#34;" in page.text or '"kind": "builtins.KeyError"' in page.text
    assert missing.status_code == 404


async def test_a_filtered_redrive_with_the_bearer_token_moves_exactly_the_matching_messages() -> None:
    fake = seeded()
    async with console(fake) as http:
        form = {"action": "redrive", "scope": "matching", "error_type": "ValueError", "confirm": "yes"}
        answer = await http.post("/dead-letters/actions", data=form, headers=BEARER)
        assert answer.status_code == 202
        action = await finished(http, answer.json()["id"])
    assert action["state"] == "done"
    assert (action["counts"]["moved"], action["counts"]["failed"]) == (2, 0)
    assert [b for b in bodies(fake, "orders") if "dead" in b] == [
        {"dead": 0, "kind": "builtins.ValueError"}, {"dead": 1, "kind": "builtins.ValueError"}
    ]  # fmt: skip
    assert bodies(fake, "orders-dlq") == [{"dead": 2, "kind": "builtins.KeyError"}]


async def test_a_signed_in_delete_of_selected_messages_deletes_them_and_nothing_else() -> None:
    fake = seeded()
    doomed = next(m.message_id for m in fake.queues["orders-dlq"].messages.values() if "KeyError" in m.body)
    async with console(fake) as http:
        csrf = await signed_in(http)
        form = {"do": "delete-selected", "id": doomed, "csrf": csrf}
        confirm = await http.post("/dead-letters/actions", data=form, headers=HTML | SAME_ORIGIN)
        assert confirm.status_code == 200
        assert 'data-count="matching">1<' in confirm.text
        assert bodies(fake, "orders-dlq")[2]["kind"] == "builtins.KeyError"  # asking changed nothing
        done = await http.post("/dead-letters/actions", data=form | {"confirm": "yes"}, headers=HTML | SAME_ORIGIN)
        assert done.status_code == 303
        action = await finished(http, done.headers["location"].rsplit("/", 1)[-1])
    assert (action["state"], action["counts"]["deleted"]) == ("done", 1)
    assert [b["kind"] for b in bodies(fake, "orders-dlq")] == ["builtins.ValueError", "builtins.ValueError"]


async def refused(http: httpx.AsyncClient, fake: InMemorySqs, headers: dict[str, str], **form: str) -> httpx.Response:
    before = bodies(fake, "orders-dlq")
    every = {"action": "redrive", "scope": "matching", "confirm": "yes", **form}
    answer = await http.post("/dead-letters/actions", data=every, headers=headers)
    assert bodies(fake, "orders-dlq") == before  # nothing changed
    assert http.cookies is not None
    return answer


async def test_without_a_token_configured_the_console_is_read_only() -> None:
    fake = seeded()
    async with console(fake, token=None) as http:
        answer = await refused(http, fake, BEARER)
        page = await http.get("/dead-letters", headers=HTML)
        sign_in = await http.post("/sign-in", data={"token": TOKEN}, headers=SAME_ORIGIN)
    assert (answer.status_code, answer.json()["title"]) == (403, "console-read-only")
    assert "read-only" in page.text
    assert re.search(r'value="redrive-selected" disabled', page.text)
    assert sign_in.status_code == 403


async def test_requests_without_the_token_or_from_another_site_are_refused() -> None:
    fake = seeded()
    async with console(fake) as http:
        anonymous = await refused(http, fake, {})
        wrong = await refused(http, fake, {"Authorization": "Bearer not-the-token-at-all"})
        csrf = await signed_in(http)
        no_csrf = await refused(http, fake, SAME_ORIGIN)
        forged = await refused(http, fake, SAME_ORIGIN, csrf="0" * 64)
        cross = await refused(http, fake, {"Sec-Fetch-Site": "cross-site"}, csrf=csrf)
        other_origin = await refused(http, fake, {"Origin": "https://evil.example"}, csrf=csrf)
        unconfirmed = await http.post("/dead-letters/actions", data={"action": "redrive", "scope": "matching"},
                                      headers=BEARER)  # fmt: skip
    assert (anonymous.status_code, anonymous.json()["title"]) == (401, "sign-in-required")
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert (wrong.status_code, wrong.json()["title"]) == (401, "wrong-token")
    assert (no_csrf.status_code, no_csrf.json()["title"]) == (403, "csrf-token-mismatch")
    assert forged.json()["title"] == "csrf-token-mismatch"
    assert (cross.status_code, cross.json()["title"]) == (403, "cross-site-request")
    assert other_origin.json()["title"] == "cross-site-request"
    assert unconfirmed.status_code == 400
    assert "confirm=yes" in unconfirmed.json()["detail"]


async def test_the_sign_in_cookie_is_http_only_and_same_site_strict() -> None:
    async with console(seeded()) as http:
        wrong = await http.post("/sign-in", data={"token": "guess-guess-guess"}, headers=SAME_ORIGIN | HTML)
        answer = await http.post("/sign-in", data={"token": TOKEN, "next": "//evil.example/x"}, headers=SAME_ORIGIN)
        cross = await http.post("/sign-in", data={"token": TOKEN}, headers={"Sec-Fetch-Site": "cross-site"})
    assert wrong.status_code == 401
    assert "wrong-token" in wrong.text
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"  # never to another site
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert cross.status_code == 403


async def test_bad_forms_are_one_readable_line() -> None:
    async with console(seeded()) as http:
        nothing = await http.post("/dead-letters/actions", data={"do": "redrive-selected"}, headers=BEARER)
        unknown = await http.post("/dead-letters/actions", data={"action": "explode"}, headers=BEARER)
        purge = await http.post("/dead-letters/actions", data={"do": "delete-matching"}, headers=BEARER)
        html = await http.post("/dead-letters/actions", data={"action": "explode"}, headers=BEARER | HTML)
    assert nothing.json()["detail"] == "no message selected: tick the messages first"
    assert unknown.json()["detail"] == "action: redrive or delete"
    assert "conveyor dlq purge" in purge.json()["detail"]
    assert html.status_code == 400
    assert "action: redrive or delete" in html.text


async def test_a_second_action_while_one_runs_is_refused() -> None:
    fake = seeded()
    async with console(fake) as http:
        form = {"action": "redrive", "scope": "matching", "error_type": "KeyError", "confirm": "yes"}
        first = await http.post("/dead-letters/actions", data=form, headers=BEARER)
        second = await http.post("/dead-letters/actions", data=form, headers=BEARER)
        await finished(http, first.json()["id"])
    assert first.status_code == 202
    assert (second.status_code, second.json()["title"]) == (409, "action-running")
    assert bodies(fake, "orders-dlq") == [{"dead": 0, "kind": "builtins.ValueError"},
                                          {"dead": 1, "kind": "builtins.ValueError"}]  # fmt: skip


def test_the_figures_are_read_from_a_real_processor_exposition() -> None:
    metrics = ProcessorMetrics()
    metrics.succeeded.inc(7)
    metrics.count_retry(ValueError("x"))
    metrics.count_dead_letter("rejected", KeyError("y"))
    metrics.in_flight.set(3)
    metrics.concurrency_limit.set(16)
    figures = figures_of(generate_latest(metrics.registry).decode())
    assert figures["handled"] == 7
    assert figures["failed"] == 2  # summed over the error types
    assert figures["dead_lettered"] == 1
    assert (figures["in_flight"], figures["concurrency"]) == (3, 16)


async def test_endpoints_are_added_up_and_one_that_fails_is_named() -> None:
    served = "conveyor_processor_succeeded_total 5\nconveyor_processor_in_flight 2\n"

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=served if request.path == "/metrics" else "not { an exposition")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/broken", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            urls = (f"{base}/metrics", f"{base}/metrics", f"{base}/broken", f"{base}/missing")
            seen = await scrape(session, urls)
    finally:
        await runner.cleanup()
    assert seen.figures == {"handled": 10, "in_flight": 4}
    problems = [e.problem for e in seen.endpoints]
    assert problems[:2] == [None, None]
    assert problems[2] is not None
    assert problems[2].startswith("not a Prometheus exposition")
    assert problems[3] == "HTTP 404"


def test_bad_console_settings_are_refused_naming_the_variable() -> None:
    with pytest.raises(ValidationError, match="console_metrics_urls"):
        ConsoleSettings(console_metrics_urls="ftp://x/metrics")
    with pytest.raises(ValidationError, match="at least 16 characters"):
        ConsoleSettings(console_token=SecretStr("short"))
    assert ConsoleSettings(console_metrics_urls=" http://a:1/metrics, ,http://b:2/metrics").metrics_urls == (
        "http://a:1/metrics", "http://b:2/metrics"
    )  # fmt: skip


def test_a_session_expires_and_a_tampered_one_is_refused() -> None:
    now = [1_000_000.0]
    guard = Guard(SecretStr(TOKEN), clock=lambda: now[0])
    cookie = guard.new_session()
    assert guard.session_ok(cookie)
    issued, nonce, mac = cookie.split(".")
    assert not guard.session_ok(f"{int(issued) + 1}.{nonce}.{mac}")
    assert not guard.session_ok(cookie + "0")
    assert not Guard(SecretStr(TOKEN + "-rotated"), clock=lambda: now[0]).session_ok(cookie)  # a new token ends it
    now[0] += SESSION_SECONDS
    assert not guard.session_ok(cookie)


async def test_a_dead_letter_with_a_binary_attribute_shows_it_in_base64() -> None:
    fake = seeded()
    message_id = fake.put("orders-dlq", "{}", {"blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff"}})
    async with console(fake) as http:
        page = await http.get(f"/dead-letters/{message_id}", headers=HTML)
    assert page.status_code == 200
    assert "AP8=" in page.text  # b"\x00\xff", as `conveyor dlq export` writes it


async def test_an_error_of_ours_in_an_action_fails_that_action_and_not_the_console(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("conveyor.console.actions.delete_matching", broken)
    fake = seeded()
    doomed = next(iter(fake.queues["orders-dlq"].messages.values())).message_id
    async with console(fake) as http:
        form = {"do": "delete-selected", "id": doomed, "confirm": "yes"}
        with capture_logs() as logs:
            first = await finished(
                http, (await http.post("/dead-letters/actions", data=form, headers=BEARER)).json()["id"]
            )
        again = await http.post("/dead-letters/actions", data=form, headers=BEARER)
        overview = await http.get("/api/overview")
    assert (first["state"], first["problem"]) == ("failed", "an error of the console's own (RuntimeError): see its log")
    assert any(entry["event"] == "console_action_error" for entry in logs)
    assert again.status_code == 202  # the next action may start
    assert overview.status_code == 200
    assert len(fake.queues["orders-dlq"].messages) == 3


async def test_every_action_is_logged_with_the_messages_it_changed_and_who_asked() -> None:
    fake = seeded()
    chosen = sorted(m.message_id for m in fake.queues["orders-dlq"].messages.values() if "KeyError" in m.body)
    async with console(fake) as http:
        with capture_logs() as logs:
            form = {"do": "redrive-selected", "id": chosen[0], "confirm": "yes"}
            await finished(http, (await http.post("/dead-letters/actions", data=form, headers=BEARER)).json()["id"])
    [started] = [e for e in logs if e["event"] == "console_action_started"]
    assert (started["message_ids"], started["who"]) == (chosen, "bearer token from 127.0.0.1")
    steps = [e["step"] for e in logs if e["event"] == "console_action_step"]
    [moved] = [step for step in steps if step.startswith("moved")]
    assert moved.startswith(f"moved    {chosen[0]}  builtins.KeyError -> orders")
    assert sum(step.startswith("skipped") for step in steps) == 2  # the others, left where they were
    [ended] = [e for e in logs if e["event"] == "console_action_ended"]
    assert (ended["state"], ended["moved"]) == ("done", 1)
    assert [b["kind"] for b in bodies(fake, "orders") if "dead" in b] == ["builtins.KeyError"]


async def test_a_selected_message_no_longer_there_is_said_not_hidden() -> None:
    fake = seeded()
    real = next(iter(fake.queues["orders-dlq"].messages.values())).message_id
    async with console(fake) as http:
        form = {"action": "delete", "scope": "selected", "id": [real, "gone-already"], "confirm": "yes"}
        action = await finished(
            http, (await http.post("/dead-letters/actions", data=form, headers=BEARER)).json()["id"]
        )
    assert (action["counts"]["deleted"], action["counts"]["skipped"]) == (1, 2)
    assert any(note.startswith("1 selected message(s) were not found in the DLQ") for note in action["notes"])


async def test_readers_at_once_share_one_read_of_the_dlq() -> None:
    fake = seeded()
    async with console(fake) as http:
        pages = await asyncio.gather(*(http.get("/dead-letters", headers=HTML) for _ in range(3)))
    for page in pages:
        assert page.text.count('data-error-type="builtins.') == 3
        assert "an action is running" not in page.text
    assert fake.count("ReceiveMessage") <= 2  # one read (ten at a time, then an empty receive)


async def test_another_host_or_a_request_another_site_makes_is_refused() -> None:
    fake = seeded()
    async with console(fake) as http:
        rebound = await http.get("/api/overview", headers={"Host": "attacker.example:8002"})
        image = await http.get("/dead-letters", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"})
        link = await http.get("/", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"} | HTML)
    assert rebound.status_code == 400
    assert (image.status_code, image.json()["title"]) == (403, "cross-site-request")
    assert fake.count("ReceiveMessage") == 0  # another site's image made the console read nothing
    assert link.status_code == 200  # following a link to the console (from an alert, say) works


async def test_an_oversized_form_is_refused_before_it_is_read() -> None:
    async with console(seeded()) as http:
        declared = await http.post("/dead-letters/actions", content=b"x" * 300_000, headers=BEARER)

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: read until past the limit
            for _ in range(6):
                yield b"x" * 65_536

        streamed = await http.post("/sign-in", content=chunks(), headers=SAME_ORIGIN)
    assert (declared.status_code, declared.json()["title"]) == (413, "form-too-large")
    assert streamed.status_code == 413


async def test_unknown_routes_and_methods_are_problems_or_pages() -> None:
    async with console(seeded()) as http:
        missing = await http.get("/nope")
        page = await http.get("/nope", headers=HTML)
        method = await http.put("/sign-in")
    assert (missing.status_code, missing.headers["content-type"]) == (404, "application/problem+json")
    assert page.status_code == 404
    assert "<h1>404" in page.text
    assert (method.status_code, method.json()["title"]) == (405, "method-not-allowed")


async def test_the_filter_offers_only_recorded_error_types_and_the_confirmation_says_when_the_list_is_cut() -> None:
    fake = seeded()
    fake.put("orders-dlq", '{"by": "sqs"}')  # moved by SQS's redrive policy: no record
    for n in range(12):
        fake.put("orders-dlq", json.dumps({"more": n}))
    settings = ConsoleSettings(queue_name="orders", console_token=SecretStr(TOKEN), console_allowed_hosts="console",
                               console_list_limit=10)  # fmt: skip
    app = create_console_app(settings, as_client(fake))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://console") as http,
    ):
        listing = await http.get("/dead-letters", headers=HTML)
        csrf = await signed_in(http)
        confirm = await http.post("/dead-letters/actions", data={"do": "redrive-matching", "csrf": csrf},
                                  headers=HTML | SAME_ORIGIN)  # fmt: skip
    assert '<option value="(no record)"' not in listing.text
    assert "The list stopped at its limit" in confirm.text
    assert "about 16 in the DLQ" in confirm.text


async def test_signing_out_ends_the_session_and_another_site_cannot_do_it() -> None:
    async with console(seeded()) as http:
        await signed_in(http)
        forced = await http.post("/sign-out", headers={"Sec-Fetch-Site": "cross-site"})
        still = await http.get("/dead-letters", headers=HTML)
        out = await http.post("/sign-out", headers=SAME_ORIGIN)
        http.cookies.clear()  # as the browser does with the expired cookie
        after = await http.get("/dead-letters", headers=HTML)
    assert forced.status_code == 403
    assert "Sign out" in still.text
    assert out.status_code == 303
    assert "session=" in out.headers["set-cookie"]
    assert "Max-Age=0" in out.headers["set-cookie"] or "expires=" in out.headers["set-cookie"].lower()
    assert "Sign in" in after.text
