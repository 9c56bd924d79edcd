"""Where the store is, from ``CONVEYOR_IDEMPOTENCY_STORE``; checked at start-up, one readable line.

- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``: everything after ``sqlite:///``
  is the file's path (SQLAlchemy's convention), so ``f"sqlite:///{path}"`` is right for both kinds.
- ``redis://[[user]:password@]host[:port][/db][?option=value]`` and ``rediss://`` (TLS), parsed by
  redis-py; the options are redis-py's URL options (``socket_timeout=2``, ``max_connections=100``...).
  The user and password are percent-encoded (``urllib.parse.quote(password, safe='')``).

No error repeats any part of a redis URL but option names (and not those when its query holds a
``password``, ``username`` or ``ssl_password``): the user and the password are secrets, and when
they are not encoded, their characters move the URL's boundaries (``redis://:S3cr#t@host`` reads as
host "", port "S3cr"), so any piece of the URL may be a piece of them. Neither Python's nor
redis-py's messages are passed on: they repeat the port or the whole ``user:password@host``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from conveyor.idempotency.errors import StoreUrlError

USAGE = "use sqlite:///path/to/file or redis://host:port/db"
SSL_OPTIONS = frozenset({"ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_password"})
STRING_OPTIONS = frozenset({"client_name"})
STRUCTURAL = frozenset({"host", "port", "db", "username", "password", "connection_class"})
SECRET_OPTIONS = frozenset({"password", "username", "ssl_password"})  # redis-py takes them from the query too

# RFC 3986: userinfo = *( unreserved / pct-encoded / sub-delims / ":" ). Anything else ('/', '?',
# '#', '@', '%' not starting an escape, spaces, controls, non-ASCII, which NFKC may fold into '/' or
# '@') means the user or password was written as it is: where it ends is then a guess.
ENCODED_USERINFO = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=:-]|%[0-9A-Fa-f]{2})*")
ENCODE_USERINFO = (
    "a redis URL's user and password must be percent-encoded (Python: urllib.parse.quote(password, "
    "safe='')), and '@' written once, before the host: %23 for #, %2F for /, %3F for ?, %40 for @, "
    "%25 for %, %3A for a ':' in the user"
)
# What Python's and redis-py's ValueErrors are about, said without the part of the URL they repeat
REWORDED = (
    ("Port could not be cast", "Port could not be cast to integer value (the port is a number)"),
    ("Port out of range", "Port out of range 0-65535"),
    ("Invalid IPv6 URL", "Invalid IPv6 URL (a ']' is missing)"),
    ("netloc ", "the host holds characters that NFKC normalization turns into '/', '?', '#', '@' or ':'"),
)


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

    userinfo, at, _ = url.partition("://")[2].rpartition("@")
    if at and not ENCODED_USERINFO.fullmatch(userinfo):
        raise StoreUrlError(ENCODE_USERINFO)
    # Checked first, the userinfo ends at the one '@', the authority holds it whole, and everything
    # urllib reads as port, path, query or fragment comes after it.
    if "#" in url:
        raise StoreUrlError("a redis URL has no '#' part: percent-encode a '#' in an option's value as %23")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number in range
        options = parse_url(url)
    except ValueError as error:
        raise StoreUrlError(f"bad redis URL: {_reworded(error)}") from None
    if parts.path not in ("", "/") and not parts.path.lstrip("/").isdigit():
        raise StoreUrlError("the path of a redis URL is the database number: redis://host:port/0")
    known = STRUCTURAL | URL_QUERY_ARGUMENT_PARSERS.keys() | STRING_OPTIONS | (SSL_OPTIONS if tls else frozenset())
    unknown = sorted(options.keys() - known)
    if unknown and parse_qs(parts.query).keys() & SECRET_OPTIONS:  # an unencoded '&' cuts one into "options"
        raise StoreUrlError("unknown redis URL option(s), not named as the URL holds a password: percent-encode it")
    if unknown:
        raise StoreUrlError(f"unknown redis URL option(s): {', '.join(unknown)}")


def _reworded(error: ValueError) -> str:
    text = str(error)
    if text.startswith("Invalid value for '"):  # redis-py, naming an option it knows: a fixed name
        return text.partition(" in connection URL")[0]
    return next((said for start, said in REWORDED if text.startswith(start)), "not a URL redis-py can read")
