"""CONVEYOR_IDEMPOTENCY_STORE: the URLs that open a store, and one readable line for the others."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from conveyor.idempotency import StoreUrlError, open_store, parse_store_url
from conveyor.idempotency.redis_store import RedisStore
from conveyor.idempotency.sqlite_store import SqliteStore
from conveyor.idempotency.url import RedisLocation, SqliteLocation
from conveyor.settings import ProcessorSettings, WriterSettings, describe_errors


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///idempotency.sqlite3", Path("idempotency.sqlite3")),
        ("sqlite:///.conveyor/idempotency.sqlite3", Path(".conveyor/idempotency.sqlite3")),
        ("sqlite:////var/lib/conveyor/idempotency.sqlite3", Path("/var/lib/conveyor/idempotency.sqlite3")),
    ],
)
def test_sqlite_urls_name_a_file_relative_or_absolute(url: str, path: Path) -> None:
    assert parse_store_url(url) == SqliteLocation(path)


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "redis://cache.internal",
        "redis://:secret@cache.internal:6380/2",
        "redis://user:secret@cache.internal:6380/2?socket_timeout=1.5&max_connections=200",
        "rediss://user:secret@cache.internal:6380/0?ssl_cert_reqs=none",
    ],
)
def test_redis_urls_are_accepted(url: str) -> None:
    assert parse_store_url(url) == RedisLocation(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://cache:6379", "unsupported scheme 'http': use sqlite:///path/to/file or redis://host:port/db"),
        ("memcached://cache", "unsupported scheme 'memcached'"),
        ("/var/lib/conveyor/idempotency.sqlite3", "not a URL"),
        ("sqlite://", "a sqlite URL needs a file path"),
        ("sqlite:///", "a sqlite URL needs a file path"),
        ("sqlite:///state/", "a sqlite URL needs a file path"),
        ("sqlite://host/file.db", "a sqlite URL has no host"),
        ("sqlite:///file.db?mode=ro", "takes no options"),
        ("sqlite:///:memory:", "cannot be shared"),
        ("redis://cache:port/0", "bad redis URL: Port could not be cast"),
        ("redis://cache:6379/zero", "the path of a redis URL is the database number"),
        ("redis://cache:6379/0?socket_timeout=soon", "bad redis URL: Invalid value for 'socket_timeout'"),
        ("redis://cache:6379/0?colour=blue", "unknown redis URL option(s): colour"),
        ("redis://cache:6379/0?ssl_ca_certs=/ca.pem", "unknown redis URL option(s): ssl_ca_certs"),
    ],
)
def test_bad_urls_are_one_readable_line(url: str, message: str) -> None:
    with pytest.raises(StoreUrlError) as raised:
        parse_store_url(url)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_the_error_never_repeats_a_password() -> None:
    with pytest.raises(StoreUrlError) as raised:
        parse_store_url("redis://user:hunter2@cache:6379/0?colour=blue")
    assert "hunter2" not in str(raised.value)
    assert "hunter2" not in repr(RedisLocation("redis://user:hunter2@cache"))


async def test_open_store_picks_the_store_by_scheme_and_connects_nothing_yet(tmp_path: Path) -> None:
    async with open_store(f"sqlite:///{tmp_path}/s.sqlite3") as sqlite_store:
        assert isinstance(sqlite_store, SqliteStore)
    assert not (tmp_path / "s.sqlite3").exists()  # opened on first use only
    async with open_store("redis://127.0.0.1:1/0") as redis_store:  # nothing listens there: no error yet
        assert isinstance(redis_store, RedisStore)
    with pytest.raises(StoreUrlError, match="unsupported scheme"):
        open_store("mysql://db/conveyor")


@pytest.mark.parametrize("settings", [WriterSettings, ProcessorSettings])
def test_both_services_read_the_store_settings(
    settings: type[WriterSettings | ProcessorSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings().idempotency_store is None  # unset: the feature is off
    assert settings().idempotency_ttl_seconds == 86_400
    monkeypatch.setenv("CONVEYOR_IDEMPOTENCY_STORE", "redis://cache:6379/1")
    monkeypatch.setenv("CONVEYOR_IDEMPOTENCY_TTL_SECONDS", "3600")
    assert settings().idempotency_store == "redis://cache:6379/1"
    assert settings().idempotency_ttl_seconds == 3600


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        (
            "CONVEYOR_IDEMPOTENCY_STORE",
            "http://cache",
            "invalid setting CONVEYOR_IDEMPOTENCY_STORE: Value error, unsupported scheme 'http': "
            "use sqlite:///path/to/file or redis://host:port/db",
        ),
        ("CONVEYOR_IDEMPOTENCY_TTL_SECONDS", "0", "invalid setting CONVEYOR_IDEMPOTENCY_TTL_SECONDS: Input should be"),
        ("CONVEYOR_IDEMPOTENCY_TTL_SECONDS", "2592001", "invalid setting CONVEYOR_IDEMPOTENCY_TTL_SECONDS: Input"),
    ],
)
def test_bad_settings_fail_at_start_up_with_one_line(
    variable: str, value: str, line: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as raised:
        ProcessorSettings()
    [described] = describe_errors(raised.value)
    assert described.startswith(line)


def test_a_bad_store_url_stops_the_writer_with_one_line() -> None:
    env = {"CONVEYOR_IDEMPOTENCY_STORE": "ftp://cache", "PATH": ""}
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [bin_dir / "queue-writer"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "queue-writer: invalid setting CONVEYOR_IDEMPOTENCY_STORE: Value error, unsupported scheme 'ftp': "
        "use sqlite:///path/to/file or redis://host:port/db"
    ]
