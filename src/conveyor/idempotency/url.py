"""Where the store is, from ``CONVEYOR_IDEMPOTENCY_STORE``; checked at start-up, one readable line.

- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``: everything after ``sqlite:///``
  is the file's path (SQLAlchemy's convention), so ``f"sqlite:///{path}"`` is right for both kinds.
- ``redis://[[user]:password@]host[:port][/db][?option=value]`` and ``rediss://`` (TLS), parsed by
  redis-py; the options are redis-py's URL options (``socket_timeout=2``, ``max_connections=100``...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from conveyor.idempotency.errors import StoreUrlError

USAGE = "use sqlite:///path/to/file or redis://host:port/db"
SSL_OPTIONS = frozenset({"ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_password"})
STRING_OPTIONS = frozenset({"client_name"})
STRUCTURAL = frozenset({"host", "port", "db", "username", "password", "connection_class"})


@dataclass(frozen=True, slots=True)
class SqliteLocation:
    path: Path


@dataclass(frozen=True, slots=True)
class RedisLocation:
    url: str = field(repr=False)  # may carry a password


def parse_store_url(url: str) -> SqliteLocation | RedisLocation:
    """The store a URL names, or :class:`StoreUrlError` saying what is wrong (never echoing the URL)."""
    scheme, _, rest = url.partition("://")
    if not rest and not url.endswith("://"):
        raise StoreUrlError(f"not a URL: {USAGE}")
    if scheme == "sqlite":
        return _sqlite(rest)
    if scheme in ("redis", "rediss"):
        _check_redis(url, tls=scheme == "rediss")
        return RedisLocation(url)
    shown = scheme if scheme.isascii() and scheme.replace("+", "").isalnum() else "?"
    raise StoreUrlError(f"unsupported scheme {shown!r}: {USAGE}")


def _sqlite(rest: str) -> SqliteLocation:
    if rest and not rest.startswith("/"):
        raise StoreUrlError("a sqlite URL has no host: sqlite:///relative/path or sqlite:////absolute/path")
    path = rest.removeprefix("/")
    if "?" in path or "#" in path:
        raise StoreUrlError("a sqlite URL takes no options (no '?' or '#')")
    if not path or path.endswith("/"):
        raise StoreUrlError("a sqlite URL needs a file path: sqlite:///path/to/file")
    if path == ":memory:":
        raise StoreUrlError("an in-memory SQLite store cannot be shared by the writer and the processor: use a file")
    return SqliteLocation(Path(path))


def _check_redis(url: str, *, tls: bool) -> None:
    from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS, parse_url  # noqa: PLC0415 - only for redis URLs

    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number in range
        options = parse_url(url)
    except ValueError as error:
        raise StoreUrlError(f"bad redis URL: {_without_url(error, url)}") from None
    if parts.path not in ("", "/") and not parts.path.lstrip("/").isdigit():
        raise StoreUrlError("the path of a redis URL is the database number: redis://host:port/0")
    known = STRUCTURAL | URL_QUERY_ARGUMENT_PARSERS.keys() | STRING_OPTIONS | (SSL_OPTIONS if tls else frozenset())
    unknown = sorted(options.keys() - known)
    if unknown:
        raise StoreUrlError(f"unknown redis URL option(s): {', '.join(unknown)}")


def _without_url(error: ValueError, url: str) -> str:
    text = str(error)
    return text.replace(url, "<url>") if url else text
