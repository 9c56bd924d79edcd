"""CONVEYOR_IDEMPOTENCY_STORE: the URLs that open a store, and one readable line for the others."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st
from pydantic import ValidationError

from conveyor.idempotency import StoreUnavailableError, StoreUrlError, open_store, parse_store_url
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


# An attacker's view of CONVEYOR_IDEMPOTENCY_STORE: a user or password written as it is, with the
# characters that move URL boundaries ('#', '/', '?', '@'), a ':' and '%' of its own, characters
# that NFKC folds into those, controls and non-ASCII text; and the rest of the URL right or wrong.
SECRET_CHARS = [*"#:/@?%&=+;[]\\~!$'()*,. -_", "%2", "%41", "%zz", "é", "\uff03", "\u2100", "\n", "\t", *"QZkx79"]
SECRETS = st.lists(st.sampled_from(SECRET_CHARS), min_size=1, max_size=16).map("".join)
AFTER_THE_AT = [
    "redis.internal:6379/0",
    "redis.internal:port/0",
    "redis.internal:99999/0",
    "redis.internal:6379/zero",
    "redis.internal:6379/0?colour=blue",
    "redis.internal:6379/0?socket_timeout=soon",
    "redis.internal:6379/0#part",
    "ho\uff03st:6379/0",
    "[::1:6379/0",
]
# RFC 3986: userinfo = *( unreserved / pct-encoded / sub-delims / ":" )
ENCODED_USERINFO = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=:-]|%[0-9A-Fa-f]{2})*")


def outcome(url: str) -> str:
    try:
        parse_store_url(url)
    except StoreUrlError as error:
        return str(error)
    return "accepted"


@examples(max_examples=400)
@given(user=st.just("") | SECRETS, password=SECRETS, rest=st.sampled_from(AFTER_THE_AT))
def test_no_piece_of_the_user_or_password_reaches_the_error(user: str, password: str, rest: str) -> None:
    # What the error says must not depend on the secret's characters: it is the same as for a
    # plain secret that is just as well (or as badly) encoded. So no piece of it can be in the text.
    encoded = ENCODED_USERINFO.fullmatch(f"{user}:{password}") is not None
    said = outcome(f"redis://{user}:{password}@{rest}")
    assert said == outcome(f"redis://user:{'password' if encoded else 'pass#word'}@{rest}")
    if not encoded:
        assert "percent-encode" in said
        assert "quote(" in said


@given(
    user=st.text(st.characters(codec="utf-8"), max_size=12),
    password=st.text(st.characters(codec="utf-8"), min_size=1, max_size=24),
)
def test_a_percent_encoded_user_and_password_reach_redis_exactly(user: str, password: str) -> None:
    from redis.asyncio.connection import parse_url  # noqa: PLC0415 - what the client will read

    url = f"redis://{quote(user, safe='')}:{quote(password, safe='')}@redis.internal:6379/0"
    assert parse_store_url(url) == RedisLocation(url)
    read = parse_url(url)
    assert (read.get("username", ""), read["password"]) == (user, password)


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("redis://:S3cr#tPassw0rd@redis.internal:6379/0", "S3cr#tPassw0rd"),
        ("redis://:Pa:ss/w0rd@redis.internal:6379/0", "Pa:ss/w0rd"),
        ("redis://:1234#abcd@redis.internal:6379/0", "1234#abcd"),  # else read as port 1234 of localhost
        ("redis://:6379?colour=abcd@redis.internal:6379/0", "6379?colour=abcd"),
        ("redis://us@er:S3cretPw@redis.internal:6379/0", "us@er"),
        ("redis://:S3cretPw@redis.int\uff03ernal:6379/0", "S3cretPw"),  # Python's error repeats the netloc
        ("redis://:S3cretPw@redis.internal:S3cretPw/0", "S3cretPw"),  # no part of the URL is repeated
    ],
)
def test_the_reported_passwords_are_not_repeated(url: str, secret: str) -> None:
    said = outcome(url)
    assert said != "accepted"
    # Pieces of the secret the message holds whatever the secret is ("ass" of "password") do not count
    stand_in = outcome(url.replace(secret, "%7E" if ENCODED_USERINFO.fullmatch(secret) else "/"))
    pieces = {secret[i : i + 3] for i in range(len(secret) - 2)}
    assert {piece for piece in pieces if piece in said} <= {piece for piece in pieces if piece in stand_in}
    assert said == stand_in


def test_an_unencoded_password_is_refused_saying_how_to_encode_it() -> None:
    said = outcome("redis://:S3cr#tPassw0rd@redis.internal:6379/0")
    assert said == (
        "a redis URL's user and password must be percent-encoded (Python: urllib.parse.quote(password, "
        "safe='')), and '@' written once, before the host: %23 for #, %2F for /, %3F for ?, %40 for @, "
        "%25 for %, %3A for a ':' in the user"
    )


@pytest.mark.parametrize("option", ["ssl_password", "password", "username"])
def test_option_names_are_not_repeated_when_the_query_holds_a_secret(option: str) -> None:
    # An unencoded '&' splits the secret into an "option" of its own
    said = outcome(f"rediss://redis.internal:6379/0?{option}=S3cr&tPass=w0rd")
    assert "tPass" not in said
    assert said.startswith("unknown redis URL option(s)")
    assert outcome(f"rediss://redis.internal:6379/0?{option}=S3cr%26tPass%3Dw0rd") == "accepted"
    assert outcome("rediss://admin:S3cr@redis.internal:6379/0?colour=blue") == "unknown redis URL option(s): colour"


UNENCODED_URL = "redis://:S3cr#tPassw0rd@redis.internal:6379/0"


@pytest.mark.parametrize("settings_class", [WriterSettings, ProcessorSettings])
def test_settings_never_show_the_store_url(
    settings_class: type[WriterSettings | ProcessorSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # pydantic repeats the input of a field that fails in its error text, and every field in repr
    monkeypatch.setenv("CONVEYOR_IDEMPOTENCY_STORE", UNENCODED_URL)
    with pytest.raises(ValidationError) as raised:
        settings_class()
    shown = [str(raised.value), repr(raised.value), *describe_errors(raised.value)]
    assert not [text for text in shown if "Passw0rd" in text or "S3cr" in text]
    monkeypatch.setenv("CONVEYOR_IDEMPOTENCY_STORE", "redis://admin:S3cretPassw0rd@redis.internal:6379/0")
    valid = settings_class()
    assert "S3cret" not in repr(valid)
    assert "S3cret" not in str(valid)
    assert "admin" not in repr(valid)


def test_an_unencoded_password_stops_the_writer_with_one_line_that_does_not_repeat_it() -> None:
    env = {"CONVEYOR_IDEMPOTENCY_STORE": UNENCODED_URL, "PATH": ""}
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [bin_dir / "queue-writer"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("queue-writer: invalid setting CONVEYOR_IDEMPOTENCY_STORE: Value error, a redis URL's")
    assert "S3cr" not in result.stderr + result.stdout
    assert "Passw0rd" not in result.stderr + result.stdout


async def fake_redis(answer: bytes) -> asyncio.Server:
    """A server on a free port that answers every command the same way (an error, say)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            writer.write(answer)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


@pytest.mark.parametrize(
    "answer",
    [
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        b"-NOAUTH Authentication required.\r\n",
        b"-ERR unknown command\r\n",
        b"",  # closes the connection at once
    ],
)
async def test_the_redis_clients_own_errors_do_not_repeat_the_password(answer: bytes) -> None:
    server = await fake_redis(answer)
    port = server.sockets[0].getsockname()[1]
    url = f"redis://admin:{quote('S3cr#t/Pa:ss', safe='')}@127.0.0.1:{port}/0?client_name=canary"
    try:
        async with open_store(url) as store:
            with pytest.raises(StoreUnavailableError) as raised:
                await store.claim(["k"], "owner", 5)
    finally:
        server.close()
        await server.wait_closed()
    error: BaseException | None = raised.value
    while error is not None:  # the whole chain, as a traceback would show it
        for text in (str(error), repr(error)):
            assert not [piece for piece in ("S3cr", "Pa:ss", "Pa%3Ass", "S3cr%23", "admin") if piece in text]
        error = error.__cause__ or error.__context__
