"""One contract, two stores: every test runs against SQLite (a file, a movable clock) and against a
real redis-server (the session's child process; those cases are integration tests)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from conveyor.idempotency import Claim, IdempotencyStore, RequestClaim, RequestState, StoredResponse
from tests.idempotency_support import Backend, eventually, redis_backend, sqlite_backend
from tests.redis_fixtures import redis_server, redis_url

__all__ = ["redis_server", "redis_url"]

RESPONSE = StoredResponse(202, b'{"message_id":"m-1","request_id":"r-1"}', "application/json")
LONG = 60.0  # a lease or TTL that does not end during a test


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.integration)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with AsyncExitStack() as exits:
        if request.param == "sqlite":
            yield await sqlite_backend(tmp_path / "idempotency.sqlite3", exits)
        else:
            yield await redis_backend(request.getfixturevalue("redis_url"), exits)


@pytest.fixture
async def store(backend: Backend) -> IdempotencyStore:
    return await backend.store()


async def test_a_new_key_is_claimed_and_then_in_progress_for_another_owner(store: IdempotencyStore) -> None:
    assert await store.claim(["k"], "a", LONG) == [Claim.CLAIMED]
    assert await store.claim(["k"], "b", LONG) == [Claim.IN_PROGRESS]


async def test_the_same_owner_claims_its_key_again(store: IdempotencyStore) -> None:
    """A redelivery to the process that holds the claim runs the handler."""
    await store.claim(["k"], "a", LONG)
    assert await store.claim(["k"], "a", LONG) == [Claim.CLAIMED]


async def test_a_completed_key_is_completed_for_everyone(store: IdempotencyStore) -> None:
    await store.claim(["k"], "a", LONG)
    await store.complete(["k"], "a", LONG)
    assert await store.claim(["k"], "a", LONG) == [Claim.COMPLETED]
    assert await store.claim(["k"], "b", LONG) == [Claim.COMPLETED]


async def test_an_expired_claim_is_taken_over(backend: Backend, store: IdempotencyStore) -> None:
    await store.claim(["k"], "a", 0.3)
    assert await store.claim(["k"], "b", LONG) == [Claim.IN_PROGRESS]
    backend.passes(0.3)
    await eventually(lambda: store.claim(["k"], "b", LONG), [Claim.CLAIMED])
    assert await store.claim(["k"], "a", LONG) == [Claim.IN_PROGRESS]  # b's now


async def test_a_batch_answers_in_key_order_in_one_round_trip(backend: Backend, store: IdempotencyStore) -> None:
    other = await backend.store()
    await other.claim(["busy-1", "busy-2"], "b", LONG)
    await other.claim(["done-1", "done-2"], "b", LONG)
    await other.complete(["done-1", "done-2"], "b", LONG)
    await store.claim(["mine"], "a", LONG)  # scripts loaded, connections open
    keys = ["new-1", "done-1", "busy-1", "mine", "new-2", "done-2", "busy-2", "new-3", "new-4", "new-5"]
    before = backend.round_trips()

    claims = await store.claim(keys, "a", LONG)

    assert backend.round_trips() - before == 1
    assert claims == [
        Claim.CLAIMED, Claim.COMPLETED, Claim.IN_PROGRESS, Claim.CLAIMED, Claim.CLAIMED,
        Claim.COMPLETED, Claim.IN_PROGRESS, Claim.CLAIMED, Claim.CLAIMED, Claim.CLAIMED,
    ]  # fmt: skip
    before = backend.round_trips()
    await store.complete([k for k, c in zip(keys, claims, strict=True) if c is Claim.CLAIMED], "a", LONG)
    assert backend.round_trips() - before == 1
    done, busy = Claim.COMPLETED, Claim.IN_PROGRESS
    assert await other.claim(keys, "c", LONG) == [done, done, busy, done, done, done, busy, done, done, done]


async def test_a_key_twice_in_one_batch_is_claimed_by_the_same_owner(store: IdempotencyStore) -> None:
    assert await store.claim(["k", "k"], "a", LONG) == [Claim.CLAIMED, Claim.CLAIMED]
    assert await store.claim([], "a", LONG) == []


async def test_extend_renews_only_the_owners_claims(backend: Backend, store: IdempotencyStore) -> None:
    await store.claim(["mine"], "a", 5)
    await store.claim(["theirs"], "b", 5)

    await store.extend(["mine", "theirs", "absent"], "a", 100)

    mine, theirs, absent = [await backend.remaining(f"conveyor:h:{k}") for k in ("mine", "theirs", "absent")]
    assert mine is not None
    assert mine > 90
    assert theirs is not None
    assert theirs <= 5
    assert absent is None  # extend never creates a claim


async def test_extend_does_not_revive_a_completed_key(backend: Backend, store: IdempotencyStore) -> None:
    await store.claim(["k"], "a", LONG)
    await store.complete(["k"], "a", 5)
    await store.extend(["k"], "a", 100)
    left = await backend.remaining("conveyor:h:k")
    assert left is not None
    assert left <= 5
    assert await store.claim(["k"], "b", LONG) == [Claim.COMPLETED]


async def test_extend_answers_which_claims_the_owner_still_held(backend: Backend, store: IdempotencyStore) -> None:
    """A claim that ended (absent, taken by another, completed) is not renewed, and the owner is told."""
    await store.claim(["mine", "lapsed"], "a", 0.3)
    await store.claim(["theirs"], "b", LONG)
    await store.claim(["done"], "a", LONG)
    await store.complete(["done"], "a", LONG)
    backend.passes(0.3)
    await eventually(lambda: backend.remaining("conveyor:h:lapsed"), None)
    await store.claim(["mine"], "a", LONG)  # renewed by its claim: still a's

    assert await store.extend(["mine", "lapsed", "theirs", "done", "absent"], "a", LONG) == [
        True, False, False, False, False,
    ]  # fmt: skip
    assert await store.extend([], "a", LONG) == []
    assert await backend.remaining("conveyor:h:lapsed") is None  # never created


async def test_complete_leaves_another_owners_live_claim_alone(store: IdempotencyStore) -> None:
    """The owner's claim ended and another owner claimed the key: that owner's run decides."""
    await store.claim(["mine"], "a", LONG)
    await store.claim(["theirs"], "b", LONG)
    await store.claim(["done"], "b", LONG)
    await store.complete(["done"], "b", LONG)

    assert await store.complete(["mine", "theirs", "done", "absent"], "a", LONG) == [True, False, True, True]
    assert await store.complete([], "a", LONG) == []

    assert await store.claim(["theirs"], "b", LONG) == [Claim.CLAIMED]  # still b's
    assert await store.claim(["mine", "done", "absent"], "c", LONG) == [Claim.COMPLETED] * 3
    await store.release(["theirs"], "b")
    assert await store.complete(["theirs"], "a", LONG) == [True]  # released: free to mark


async def test_complete_counts_even_after_the_claim_expired(backend: Backend, store: IdempotencyStore) -> None:
    await store.claim(["k"], "a", 0.2)
    backend.passes(0.2)
    await eventually(lambda: backend.remaining("conveyor:h:k"), None)
    await store.complete(["k"], "a", LONG)
    assert await store.claim(["k"], "b", LONG) == [Claim.COMPLETED]


async def test_release_drops_only_the_owners_claims(store: IdempotencyStore) -> None:
    await store.claim(["mine"], "a", LONG)
    await store.claim(["theirs"], "b", LONG)
    await store.claim(["done"], "a", LONG)
    await store.complete(["done"], "a", LONG)

    await store.release(["mine", "theirs", "done"], "a")

    assert await store.claim(["mine", "theirs", "done"], "c", LONG) == [
        Claim.CLAIMED, Claim.IN_PROGRESS, Claim.COMPLETED,
    ]  # fmt: skip


async def test_a_completion_is_forgotten_after_its_ttl(backend: Backend, store: IdempotencyStore) -> None:
    await store.claim(["k"], "a", LONG)
    await store.complete(["k"], "a", 0.3)
    assert await store.claim(["k"], "b", LONG) == [Claim.COMPLETED]
    backend.passes(0.3)
    await eventually(lambda: store.claim(["k"], "b", LONG), [Claim.CLAIMED])


async def test_completion_ttl_is_the_one_given(backend: Backend, store: IdempotencyStore) -> None:
    await store.complete(["k"], "a", 86_400)
    left = await backend.remaining("conveyor:h:k")
    assert left is not None
    assert 86_300 < left <= 86_400


async def test_a_new_request_is_in_flight_for_a_repeat(store: IdempotencyStore) -> None:
    assert await store.begin_request("key", "fp", 30) == RequestClaim(RequestState.NEW)
    repeat = await store.begin_request("key", "fp", 30)
    assert repeat.state is RequestState.IN_FLIGHT
    assert repeat.retry_after is not None
    assert 25 < repeat.retry_after <= 30
    assert repeat.response is None


async def test_a_different_request_in_flight_is_still_in_flight(store: IdempotencyStore) -> None:
    await store.begin_request("key", "fp", 30)
    assert (await store.begin_request("key", "other", 30)).state is RequestState.IN_FLIGHT


async def test_a_finished_request_replays_its_response(store: IdempotencyStore) -> None:
    await store.begin_request("key", "fp", 30)
    await store.finish_request("key", "fp", RESPONSE, LONG)
    assert await store.begin_request("key", "fp", 30) == RequestClaim(RequestState.REPLAY, response=RESPONSE)


async def test_a_different_request_after_the_finish_is_a_mismatch(store: IdempotencyStore) -> None:
    await store.begin_request("key", "fp", 30)
    await store.finish_request("key", "fp", RESPONSE, LONG)
    assert await store.begin_request("key", "other", 30) == RequestClaim(RequestState.MISMATCH)


async def test_binary_bodies_are_replayed_exactly(store: IdempotencyStore) -> None:
    response = StoredResponse(200, bytes(range(256)), "application/octet-stream; x=\u00e9")
    await store.finish_request("key", "fp", response, LONG)
    assert (await store.begin_request("key", "fp", 30)).response == response


async def test_an_abandoned_request_is_new_again(store: IdempotencyStore) -> None:
    await store.begin_request("key", "fp", 30)
    await store.abandon_request("key")
    assert (await store.begin_request("key", "other", 30)).state is RequestState.NEW


async def test_an_abandon_with_a_token_drops_only_that_marker(backend: Backend, store: IdempotencyStore) -> None:
    """A request whose lease ended abandons late: the marker another request wrote since stays."""
    ours = await store.begin_request("key", "fp", 0.3)
    backend.passes(0.3)
    await eventually(lambda: _state(store.begin_request("key", "fp", LONG)), RequestState.NEW)
    await store.abandon_request("key")  # (any marker: the probe's)
    theirs = await store.begin_request("key", "fp", LONG)
    assert ours.token is not None
    assert theirs.token not in (None, ours.token)
    await store.abandon_request("key", ours.token)  # ours expired: theirs is left alone
    assert (await store.begin_request("key", "fp", LONG)).state is RequestState.IN_FLIGHT
    await store.finish_requests([], LONG, abandoned=[("key", theirs.token)])
    assert (await store.begin_request("key", "fp", LONG)).state is RequestState.NEW


async def test_a_round_id_names_the_tokens_of_its_markers(store: IdempotencyStore) -> None:
    """A writer that got no answer knows what the round may have written, and abandons exactly that."""
    claims = await store.finish_and_begin_requests(
        [], [], [("a", "fp"), ("b", "fp")], ttl_seconds=LONG, lease_seconds=LONG, round_id="r1"
    )
    assert [c.token for c in claims] == ["r1:0", "r1:1"]
    await store.finish_and_begin_requests([], [("a", "r1:0"), ("b", "r2:1")], [], ttl_seconds=LONG, lease_seconds=LONG)
    after = await store.begin_requests([("a", "fp"), ("b", "fp")], LONG)
    assert [c.state for c in after] == [RequestState.NEW, RequestState.IN_FLIGHT]


async def test_abandon_keeps_a_finished_response(store: IdempotencyStore) -> None:
    await store.begin_request("key", "fp", 30)
    await store.finish_request("key", "fp", RESPONSE, LONG)
    await store.abandon_request("key")
    assert (await store.begin_request("key", "fp", 30)).state is RequestState.REPLAY


async def test_an_expired_in_flight_marker_is_new_again(backend: Backend, store: IdempotencyStore) -> None:
    await store.begin_request("key", "fp", 0.3)
    backend.passes(0.3)
    await eventually(lambda: _state(store.begin_request("key", "fp", 30)), RequestState.NEW)


async def test_a_remembered_response_expires_after_its_ttl(backend: Backend, store: IdempotencyStore) -> None:
    await store.finish_request("key", "fp", RESPONSE, 0.3)
    backend.passes(0.3)
    await eventually(lambda: _state(store.begin_request("key", "other", 30)), RequestState.NEW)


async def test_the_two_namespaces_never_collide(store: IdempotencyStore) -> None:
    assert await store.claim(["same"], "a", LONG) == [Claim.CLAIMED]
    assert (await store.begin_request("same", "fp", 30)).state is RequestState.NEW
    await store.complete(["same"], "a", LONG)
    assert (await store.begin_request("same", "fp", 30)).state is RequestState.IN_FLIGHT
    await store.finish_request("same", "fp", RESPONSE, LONG)
    await store.release(["same"], "a")
    assert await store.claim(["same"], "b", LONG) == [Claim.COMPLETED]
    await store.abandon_request("same")
    assert (await store.begin_request("same", "fp", 30)).state is RequestState.REPLAY


async def test_twenty_concurrent_claims_of_one_key_on_two_stores_make_one_owner(backend: Backend) -> None:
    first, second = await backend.store(), await backend.store()
    await asyncio.gather(first.claim(["warm-1"], "w", LONG), second.claim(["warm-2"], "w", LONG))

    claims = await asyncio.gather(
        *(
            store.claim(["contended"], f"owner-{i}-{n}", LONG)
            for i in range(10)
            for n, store in enumerate((first, second))
        )
    )

    assert Counter(c for [c] in claims) == {Claim.CLAIMED: 1, Claim.IN_PROGRESS: 19}


async def test_ten_concurrent_requests_with_one_key_make_one_new(backend: Backend) -> None:
    first, second = await backend.store(), await backend.store()
    answers = await asyncio.gather(*(s.begin_request("key", "fp", 30) for _ in range(5) for s in (first, second)))
    states = [answer.state for answer in answers]
    assert states.count(RequestState.NEW) == 1
    assert states.count(RequestState.IN_FLIGHT) == 9


async def test_a_batch_of_requests_begins_in_order_in_one_round_trip(backend: Backend, store: IdempotencyStore) -> None:
    other = await backend.store()
    await other.begin_requests([("busy", "fp"), ("done", "fp"), ("done-other", "fp")], 30)
    await other.finish_requests([("done", "fp", RESPONSE), ("done-other", "fp", RESPONSE)], LONG)
    requests = [("new-1", "fp"), ("busy", "fp"), ("done", "fp"), ("done-other", "changed"), ("new-2", "fp")]
    requests.append(("new-1", "fp"))  # a key given twice: the second finds the first's marker
    before = backend.round_trips()

    claims = await store.begin_requests(requests, 30)

    assert backend.round_trips() - before == 1
    assert [c.state for c in claims] == [
        RequestState.NEW, RequestState.IN_FLIGHT, RequestState.REPLAY, RequestState.MISMATCH,
        RequestState.NEW, RequestState.IN_FLIGHT,
    ]  # fmt: skip
    assert claims[2].response == RESPONSE
    assert claims[1].retry_after is not None
    assert 25 < claims[1].retry_after <= 30
    assert await store.begin_requests([], 30) == []


async def test_a_batch_of_requests_finishes_and_abandons_in_one_round_trip(
    backend: Backend, store: IdempotencyStore
) -> None:
    await store.begin_requests([("sent-1", "fp"), ("sent-2", "fp"), ("failed", "fp"), ("done", "fp")], 30)
    await store.finish_request("done", "fp", RESPONSE, LONG)
    other = StoredResponse(202, b'{"message_id":"m-2"}', "application/json")
    before = backend.round_trips()

    await store.finish_requests(
        [("sent-1", "fp", RESPONSE), ("sent-2", "fp", other)], LONG, abandoned=["failed", "done", "absent"]
    )

    assert backend.round_trips() - before == 1
    after = await store.begin_requests([("sent-1", "fp"), ("sent-2", "fp"), ("failed", "fp"), ("done", "fp")], 30)
    assert after == [
        RequestClaim(RequestState.REPLAY, response=RESPONSE),
        RequestClaim(RequestState.REPLAY, response=other),
        RequestClaim(RequestState.NEW),  # abandoned: a retry starts afresh
        RequestClaim(RequestState.REPLAY, response=RESPONSE),  # abandon keeps a finished response
    ]
    left = await backend.remaining("conveyor:w:sent-1")
    assert left is not None
    assert LONG - 5 < left <= LONG
    before = backend.round_trips()
    await store.finish_requests([], LONG, abandoned=[])
    assert backend.round_trips() == before  # nothing to say: no round trip


async def test_finish_and_begin_ends_then_begins_in_one_round_trip(backend: Backend, store: IdempotencyStore) -> None:
    await store.begin_requests([("done", "fp"), ("failed", "fp"), ("busy", "fp")], 30)
    before = backend.round_trips()

    claims = await store.finish_and_begin_requests(
        [("done", "fp", RESPONSE)], ["failed"], [("done", "fp"), ("failed", "other"), ("busy", "fp"), ("new", "fp")],
        ttl_seconds=LONG, lease_seconds=30,
    )  # fmt: skip

    assert backend.round_trips() - before == 1
    assert claims == [
        RequestClaim(RequestState.REPLAY, response=RESPONSE),  # finished first, in the same round trip
        RequestClaim(RequestState.NEW),  # abandoned first: a retry starts afresh
        claims[2],
        RequestClaim(RequestState.NEW),
    ]
    assert claims[2].state is RequestState.IN_FLIGHT
    left = await backend.remaining("conveyor:w:done")
    assert left is not None
    assert left > 30  # the TTL, not the lease
    before = backend.round_trips()
    assert await store.finish_and_begin_requests((), (), (), ttl_seconds=LONG, lease_seconds=30) == []
    assert backend.round_trips() == before


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf")])
async def test_durations_must_be_positive_and_finite(store: IdempotencyStore, seconds: float) -> None:
    with pytest.raises(ValueError, match="lease_seconds must be a positive number of seconds"):
        await store.claim(["k"], "a", seconds)
    with pytest.raises(ValueError, match="ttl_seconds must be a positive number of seconds"):
        await store.complete(["k"], "a", seconds)
    with pytest.raises(ValueError, match="lease_seconds must be a positive number of seconds"):
        await store.begin_request("k", "fp", seconds)
    with pytest.raises(ValueError, match="lease_seconds must be a positive number of seconds"):
        await store.begin_requests([("k", "fp")], seconds)
    with pytest.raises(ValueError, match="ttl_seconds must be a positive number of seconds"):
        await store.finish_requests([("k", "fp", RESPONSE)], seconds)
    with pytest.raises(ValueError, match="ttl_seconds must be a positive number of seconds"):
        await store.finish_and_begin_requests((), (), [("k", "fp")], ttl_seconds=seconds, lease_seconds=30)
    with pytest.raises(ValueError, match="lease_seconds must be a positive number of seconds"):
        await store.finish_and_begin_requests((), (), [("k", "fp")], ttl_seconds=LONG, lease_seconds=seconds)


async def _state(answer: object) -> RequestState:
    claim = await answer  # type: ignore[misc]  # a RequestClaim coroutine
    assert isinstance(claim, RequestClaim)
    return claim.state
