"""The layer in front: a real nginx (Debian's package) with deploy/nginx/conveyor.conf.template, in
front of the real writer, in front of LocalStack. Each duty of the gateway, checked from outside."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from conveyor import metadata
from conveyor.localstack import LocalStack, free_port
from tests.e2e.services import writer
from tests.localstack_fixtures import REPO, Queues, count, drain, make_queues, wait_for

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

TEMPLATE = REPO / "deploy" / "nginx" / "conveyor.conf.template"
CHECK_KEYS = REPO / "deploy" / "nginx" / "check-api-keys.sh"
KEY = "test-key-1"
MIXED_CASE_KEY = "AbCdEf123-secret"
DOTTED_KEY = "dot.key+1"
PROBLEM = "application/problem+json"
CLIENTS = {KEY: "client-one", "other-key": "client-two", MIXED_CASE_KEY: "client-three", DOTTED_KEY: "client-four"}


@dataclass
class Gateway:
    url: str
    queues: Queues
    access_log: Path


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        pytest.fail("nginx is not installed: `make test` installs Debian's nginx (make nginx)")
    return found


def key_entry(key: str, client: str) -> str:
    """One line of the API-key file in the documented form (exact, case-sensitive match)."""
    escaped = key.replace(".", "\\.").replace("+", "\\+")
    return f'"~^key={escaped}$" {client};\n'


def render(state: Path, listen: int, writer_port: int, keys_text: str | None = None) -> Path:
    keys = state / "api-keys"
    keys.write_text(keys_text if keys_text is not None else "".join(key_entry(k, c) for k, c in CLIENTS.items()))
    values = {
        "LISTEN": f"127.0.0.1:{listen}", "WRITER": f"127.0.0.1:{writer_port}", "STATE_DIR": str(state),
        "API_KEYS": str(keys), "RATE": "20r/s", "BURST": "20",
    }  # fmt: skip
    # Only ${UPPER_CASE} placeholders are ours; nginx's own $variables stay as they are.
    text = re.sub(r"\$\{([A-Z_]+)\}", lambda m: values[m.group(1)], TEMPLATE.read_text())
    config = state / "nginx.conf"
    config.write_text(text)
    return config


@contextmanager
def running_nginx(state: Path, writer_port: int, queues: Queues, keys_text: str | None = None) -> Iterator[Gateway]:
    """nginx from the rendered template (`nginx -t` must pass), stopped on exit."""
    nginx = nginx_binary()
    listen = free_port()
    config = render(state, listen, writer_port, keys_text)
    checked = subprocess.run([nginx, "-t", "-c", str(config)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr  # `nginx -t` passes on the rendered config
    process = subprocess.Popen([nginx, "-c", str(config), "-g", "daemon off;"], stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{listen}/healthz"), 15, "nginx up")
        yield Gateway(f"http://127.0.0.1:{listen}", queues, state / "access.log")
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def gateway(localstack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    state = Path(tmp_path_factory.mktemp("nginx"))
    queues = make_queues(localstack.endpoint)
    with writer(queues, state) as api, running_nginx(state, api.port, queues) as gateway:
        yield gateway


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def post(gateway: Gateway, path: str = "/messages", **kwargs: object) -> httpx.Response:
    headers = {"X-Api-Key": KEY, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    return httpx.post(gateway.url + path, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


def test_the_request_id_reaches_the_message_on_the_queue(gateway: Gateway, sqs: SQSClient) -> None:
    given = post(gateway, json={"body": {"n": 1}}, headers={"X-Request-ID": "gw-given-1"})
    invalid = post(gateway, json={"body": {"n": 2}}, headers={"X-Request-ID": "no spaces allowed"})
    assert given.status_code == invalid.status_code == 202
    assert given.headers["x-request-id"] == "gw-given-1"
    generated = invalid.headers["x-request-id"]
    assert generated != "no spaces allowed"
    assert len(generated) == 32  # nginx's $request_id
    messages = {json.loads(m["Body"])["n"]: m for m in drain(sqs, gateway.queues.url, 2)}
    assert messages[1]["MessageAttributes"][metadata.REQUEST_ID]["StringValue"] == "gw-given-1"
    assert messages[2]["MessageAttributes"][metadata.REQUEST_ID]["StringValue"] == generated
    assert given.json()["request_id"] == "gw-given-1"
    # the access log is JSON and carries the request id
    wait_for(lambda: "gw-given-1" in gateway.access_log.read_text(), 5, "access log written")
    lines = [json.loads(line) for line in gateway.access_log.read_text().splitlines()]
    entry = next(line for line in lines if line["request_id"] == "gw-given-1")
    assert (entry["status"], entry["client"], entry["uri"]) == (202, "client-one", "/messages")


def test_an_oversized_body_is_413_from_the_proxy(gateway: Gateway, sqs: SQSClient) -> None:
    response = post(gateway, content=b'{"body": "' + b"x" * (3 * 1024 * 1024) + b'"}',
                    headers={"Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["title"] == "Request too large"
    assert count(sqs, gateway.queues.url) == (0, 0)


def test_a_burst_is_limited_with_429(gateway: Gateway) -> None:
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.url, headers={"X-Api-Key": "other-key"}) as client:
            return list(await asyncio.gather(*(client.get("/healthz") for _ in range(80))))

    time.sleep(1.5)  # a fresh second of budget for this client (the limit is 20/s, burst 20)
    statuses = [r.status_code for r in asyncio.run(burst())]
    assert statuses.count(429) > 0
    assert statuses.count(200) >= 20
    limited = next(r for r in asyncio.run(burst()) if r.status_code == 429)
    assert limited.headers["content-type"] == PROBLEM
    assert limited.headers["retry-after"] == "1"


@pytest.mark.parametrize("path", ["/metrics", "/readyz", "/docs", "/openapi.json", "/anything"])
def test_internal_routes_are_404_from_outside(gateway: Gateway, path: str) -> None:
    response = httpx.get(gateway.url + path, headers={"X-Api-Key": KEY})
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


def test_a_key_is_required_and_must_be_known(gateway: Gateway, sqs: SQSClient) -> None:
    missing = httpx.post(gateway.url + "/messages", json={"body": 1})
    unknown = httpx.post(gateway.url + "/messages", json={"body": 1}, headers={"X-Api-Key": "nope"})
    assert (missing.status_code, unknown.status_code) == (401, 403)
    assert missing.headers["content-type"] == unknown.headers["content-type"] == PROBLEM
    assert missing.json()["request_id"] == missing.headers["x-request-id"]
    assert httpx.get(gateway.url + "/messages", headers={"X-Api-Key": KEY}).status_code == 405
    assert count(sqs, gateway.queues.url) == (0, 0)


def test_writer_errors_pass_through_unchanged(gateway: Gateway) -> None:
    response = post(gateway, json={"body": 1, "unknown": 2})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["field"] == "unknown"


@pytest.mark.parametrize(
    "variant",
    [
        "abcdef123-SECRET", "ABCDEF123-SECRET", "abcdef123-secret", "aBcDeF123-SECRET",  # case variants
        "TEST-KEY-1", "Test-Key-1",
        "AbCdEf123-secretx", "xAbCdEf123-secret", "test-key-1-", "test-key-10",  # an extra character
        "AbCdEf123-secre", "test-key-", "AbCdEf123", "key=test-key-1",  # a prefix; the map's own prefix
        "dotXkey+1", "dot.keyy1", "dot.key1",  # "." and "+" are literal, not regex operators
    ],
)  # fmt: skip
def test_api_keys_match_exactly(gateway: Gateway, sqs: SQSClient, variant: str) -> None:
    # GIVEN keys in mixed case, with "." and "+" WHEN a near miss of one is sent THEN 403, nothing queued
    response = httpx.post(gateway.url + "/messages", json={"body": 1}, headers={"X-Api-Key": variant})
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM
    assert count(sqs, gateway.queues.url) == (0, 0)


@pytest.mark.parametrize("key", [MIXED_CASE_KEY, DOTTED_KEY])
def test_the_exact_key_is_let_in(gateway: Gateway, sqs: SQSClient, key: str) -> None:
    response = httpx.post(gateway.url + "/messages", json={"body": key}, headers={"X-Api-Key": key})
    assert response.status_code == 202
    [message] = drain(sqs, gateway.queues.url, 1)
    assert json.loads(message["Body"]) == key
    wait_for(lambda: response.headers["x-request-id"] in gateway.access_log.read_text(), 5, "access log written")
    entry = next(
        json.loads(line) for line in gateway.access_log.read_text().splitlines()
        if json.loads(line)["request_id"] == response.headers["x-request-id"]
    )  # fmt: skip
    assert entry["client"] == CLIENTS[key]


def check_keys(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(CHECK_KEYS), str(path)], capture_output=True, text=True, check=False)


def test_the_documented_key_files_pass_the_check(tmp_path: Path) -> None:
    ours = tmp_path / "api-keys"
    ours.write_text("".join(key_entry(k, c) for k, c in CLIENTS.items()))
    for path in (ours, REPO / "deploy" / "nginx" / "api-keys.example"):
        checked = check_keys(path)
        assert (checked.returncode, checked.stderr) == (0, "")


@pytest.mark.parametrize(
    "line",
    [
        '"test-key-1" client-one;',  # the old form: compared case-insensitively by nginx
        '"~*^key=test-key-1$" client-one;',  # a case-insensitive regex
        '"~^key=dot.key$" client-one;',  # "." unescaped: any character would do
        '"~^key=test-key-1" client-one;',  # no end anchor: any suffix would do
        '"~key=test-key-1$" client-one;',  # no start anchor
        '"~^key=$" client-one;',  # an empty key
    ],
)
def test_the_check_refuses_entries_that_are_not_exact(tmp_path: Path, line: str) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text(f"# keys\n{key_entry(KEY, 'client-one')}{line}\n")
    checked = check_keys(keys)
    assert checked.returncode == 1
    assert f"3:{line}" in checked.stderr  # names the line


def test_a_key_file_in_the_old_form_lets_nobody_in(localstack: LocalStack, tmp_path: Path, sqs: SQSClient) -> None:
    # GIVEN the template with a key file written in the old form (plain, case-insensitive entries)
    queues = make_queues(localstack.endpoint)
    old_form = f'"{KEY}" client-one;\n"{MIXED_CASE_KEY}" client-three;\n'
    with writer(queues, tmp_path) as api, running_nginx(tmp_path, api.port, queues, old_form) as gateway:
        # WHEN the exact keys and case variants are sent THEN every one is refused: it fails closed
        for key in (KEY, KEY.upper(), MIXED_CASE_KEY, MIXED_CASE_KEY.lower()):
            response = httpx.post(gateway.url + "/messages", json={"body": 1}, headers={"X-Api-Key": key})
            assert response.status_code == 403, key
    assert count(sqs, queues.url) == (0, 0)


def test_the_gateway_names_the_client_so_idempotency_keys_never_collide(gateway: Gateway, sqs: SQSClient) -> None:
    # GIVEN two clients using the same Idempotency-Key, and one claiming to be the other
    body = {"body": {"n": "scoped"}}
    one = post(gateway, json=body, headers={"Idempotency-Key": "order-7"})
    two = post(gateway, json=body, headers={"X-Api-Key": "other-key", "Idempotency-Key": "order-7"})
    forged = post(gateway, json=body, headers={"Idempotency-Key": "order-8", "X-Conveyor-Client": "client-two"})
    assert one.status_code == two.status_code == forged.status_code == 202
    # THEN each key travels scoped by the client its API key names (a header the caller sends is overwritten)
    keys = sorted(
        m["MessageAttributes"][metadata.IDEMPOTENCY_KEY]["StringValue"] for m in drain(sqs, gateway.queues.url, 3)
    )
    assert keys == ["client-one/order-7", "client-one/order-8", "client-two/order-7"]
