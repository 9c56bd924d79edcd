"""What the console's pages send: the dead-letter filter (a query or a form) and an action's form,
checked here into one readable line per problem (answered 400)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs

from conveyor.dlq.record import Filter

MAX_FORM_BYTES = 256 * 1024
MAX_SELECTED = 1000
MAX_ERROR_TYPE_CHARS = 300


class FormError(ValueError):
    """One readable line: what in the request is wrong."""


class FormTooLargeError(FormError):
    """The body is over :data:`MAX_FORM_BYTES` (answered 413, before it is all read)."""


type Fields = Mapping[str, Sequence[str]]


def parse_form(body: bytes) -> dict[str, list[str]]:
    if len(body) > MAX_FORM_BYTES:
        raise FormTooLargeError(f"the form is over {MAX_FORM_BYTES // 1024} KiB")
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=2000)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError(f"the form cannot be read: {exc}") from exc


def one(fields: Fields, name: str) -> str:
    values = fields.get(name) or [""]
    return values[-1].strip()


@dataclass(frozen=True, slots=True)
class Wanted:
    """The list's filter as the operator set it: an error type (``ValueError`` or its qualified
    name) and an age in minutes; both optional."""

    error_type: str = ""
    older_than_minutes: float | None = None

    @classmethod
    def of(cls, fields: Fields) -> Wanted:
        kind = one(fields, "error_type")
        if len(kind) > MAX_ERROR_TYPE_CHARS:
            raise FormError(f"error_type: at most {MAX_ERROR_TYPE_CHARS} characters")
        age = one(fields, "older_than_minutes")
        if not age:
            return cls(kind)
        try:
            minutes = float(age)
        except ValueError:
            minutes = -1.0
        if not math.isfinite(minutes) or minutes < 0 or minutes > 60 * 24 * 14:
            raise FormError(f"older_than_minutes: a number of minutes from 0 to 20160 (14 days), not {age!r}")
        return cls(kind, minutes)

    def filter(self, message_ids: frozenset[str] = frozenset()) -> Filter:
        seconds = None if self.older_than_minutes is None else self.older_than_minutes * 60
        return Filter((self.error_type,) if self.error_type else (), seconds, message_ids)

    def describe(self) -> str:
        parts = []
        if self.error_type:
            parts.append(f"error type {self.error_type}")
        if self.older_than_minutes is not None:
            parts.append(f"dead-lettered at least {self.older_than_minutes:g} min ago")
        return " and ".join(parts) or "every message"

    def query(self) -> dict[str, str]:
        out = {"error_type": self.error_type} if self.error_type else {}
        if self.older_than_minutes is not None:
            out["older_than_minutes"] = f"{self.older_than_minutes:g}"
        return out


@dataclass(frozen=True, slots=True)
class Asked:
    """An action's form: redrive or delete, the selected messages or all matching the filter."""

    kind: str  # redrive, delete
    scope: str  # selected, matching
    ids: frozenset[str]
    wanted: Wanted
    confirmed: bool

    @classmethod
    def of(cls, fields: Fields) -> Asked:
        kind, scope = one(fields, "action"), one(fields, "scope") or "selected"
        if one(fields, "do"):  # the pages' buttons: one value says both (redrive-selected, redrive-matching, ...)
            kind, _, scope = one(fields, "do").partition("-")
        if kind not in {"redrive", "delete"}:
            raise FormError("action: redrive or delete")
        if scope not in {"selected", "matching"}:
            raise FormError("scope: selected or matching")
        if kind == "delete" and scope == "matching":
            raise FormError("delete takes selected messages only (to empty the DLQ: conveyor dlq purge --yes)")
        ids = frozenset(i.strip() for i in fields.get("id", []) if i.strip())
        if len(ids) > MAX_SELECTED or any(len(i) > 100 for i in ids):
            raise FormError(f"id: at most {MAX_SELECTED} message ids of at most 100 characters")
        if scope == "selected" and not ids:
            raise FormError("no message selected: tick the messages first")
        return cls(
            kind, scope, ids if scope == "selected" else frozenset(), Wanted.of(fields), one(fields, "confirm") == "yes"
        )

    @property
    def chosen(self) -> Filter:
        return Filter(message_ids=self.ids) if self.scope == "selected" else self.wanted.filter()

    def describe(self) -> str:
        if self.scope == "selected":
            return f"{len(self.ids)} selected message(s)"
        return f"all matching: {self.wanted.describe()}"
