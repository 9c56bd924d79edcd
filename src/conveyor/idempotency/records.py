"""Keys and values as both stores keep them: one namespace per side, small JSON values.

The processor's keys live under ``conveyor:h:`` (handler completions), the writer's under
``conveyor:w:`` (request replay), so one string used on both sides never collides.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Sequence
from typing import Any

from conveyor.idempotency.store import Abandon, RequestClaim, RequestState, StoredResponse

HANDLER_PREFIX = "conveyor:h:"
REQUEST_PREFIX = "conveyor:w:"

CLAIMED = "claimed"
COMPLETED = "completed"
IN_FLIGHT = "in_flight"


def handler_keys(keys: Sequence[str]) -> list[str]:
    return [HANDLER_PREFIX + key for key in keys]


def request_key(key: str) -> str:
    return REQUEST_PREFIX + key


def millis(seconds: float, what: str) -> int:
    """A positive duration in whole milliseconds (rounded up), as Redis's PX takes it."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{what} must be a positive number of seconds, not {seconds!r}")
    return max(1, math.ceil(seconds * 1000))


def dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def claim_record(owner: str) -> str:
    return dumps({"state": CLAIMED, "owner": owner})


def completed_record() -> str:
    return dumps({"state": COMPLETED})


def in_flight_record(fingerprint: str, token: str) -> str:
    """A writer's in-flight marker. ``token`` is the round's and the position's own: a script that
    runs again after its answer was lost (redis-py retries after a timeout) finds the very record it
    wrote, and answers NEW again (redis_store.FINISH_AND_BEGIN). Readers look at ``state`` only, so markers
    written before the token existed are read alike."""
    return dumps({"state": IN_FLIGHT, "fingerprint": fingerprint, "token": token})


def marker_tokens(round_id: str | None, count: int) -> list[str]:
    """The tokens of one round's markers: the round's id (random when None) and the position (a key
    given twice in one round is NEW, then IN_FLIGHT, even when the script runs twice)."""
    round_id = round_id or uuid.uuid4().hex
    return [f"{round_id}:{i}" for i in range(count)]


def in_flight_records(fingerprints: Sequence[str], tokens: Sequence[str]) -> list[str]:
    """The markers of one round's keys to begin, each with its own token."""
    return [in_flight_record(fingerprint, token) for fingerprint, token in zip(fingerprints, tokens, strict=True)]


def abandons(abandoned: Sequence[Abandon]) -> list[tuple[str, str | None]]:
    """``(key, token or None)`` for each abandon: a bare key drops any in-flight marker of the key."""
    return [(item, None) if isinstance(item, str) else item for item in abandoned]


def response_record(fingerprint: str, response: StoredResponse) -> str:
    return dumps(
        {
            "state": COMPLETED,
            "fingerprint": fingerprint,
            "status": response.status,
            "body": base64.b64encode(response.body).decode("ascii"),
            "content_type": response.content_type,
        }
    )


def replay(raw: str | bytes, fingerprint: str) -> RequestClaim:
    """REPLAY or MISMATCH from a completed request's record."""
    record = json.loads(raw)
    if record["fingerprint"] != fingerprint:
        return RequestClaim(RequestState.MISMATCH)
    response = StoredResponse(
        status=int(record["status"]),
        body=base64.b64decode(record["body"]),
        content_type=str(record["content_type"]),
    )
    return RequestClaim(RequestState.REPLAY, response=response)
