"""Exclusive offers over gRPC and REST: activation within 150 m of the charger (the edge inside), idempotent and
one ACTIVE session per driver under concurrency, the offer's caps, the 60-minute window and its expiry (lazily
and by the worker), verified visits with per-merchant daily numbers, completion, admin cancellation, and the
merchant's offer configuration."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import uuid
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa
from google.protobuf import struct_pb2
from nerava.merchants.v1 import merchants_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.context import Caller
from services.common.errors import NotFound
from services.common.geo import great_circle_m
from services.merchants import domain, store
from services.merchants.exclusives import (
    Exclusives,
    OfferAnalytics,
    OfferChanges,
    expire_due_exclusives,
    expire_exclusives,
)
from services.merchants.peers import Charger, ChargerDirectory
from tests.merchants.helpers import Merchants, Store, new_charger, offset
from tests.support.eventually import eventually
from tests.support.locks import lock_waits
from tests.support.people import NewPerson, Person
from tests.support.rpc import bad_fields, error_metadata, error_reason

X = store.exclusive_sessions
V = store.verified_visits


# --- helpers of this file ------------------------------------------------------------------------------------


async def activate(
    merchants: Merchants,
    driver: Person,
    shop: Store,
    *,
    north_m: float = 0.0,
    east_m: float = 10.0,
    key: str = "",
    charger_id: str = "",
) -> pb.ActivateExclusiveResponse:
    lat, lng = offset(shop.charger_lat, shop.charger_lng, north_m=north_m, east_m=east_m)
    return await merchants.stub.ActivateExclusive(
        pb.ActivateExclusiveRequest(
            merchant_id=shop.id, charger_id=charger_id or shop.charger_id, lat=lat, lng=lng, idempotency_key=key
        ),
        metadata=driver.auth,
    )


async def sessions_of(engine: AsyncEngine, driver: Person) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.select(X).where(X.c.driver_id == driver.user_id))).all())


async def session_row(engine: AsyncEngine, session_id: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(X).where(X.c.id == uuid.UUID(session_id)))).one()


async def push_into_past(engine: AsyncEngine, session_id: str) -> None:
    """Ends the session's window a minute ago, as if 61 minutes had passed."""
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(X)
            .where(X.c.id == uuid.UUID(session_id))
            .values(
                activated_at=sa.func.now() - sa.text("interval '61 minutes'"),
                expires_at=sa.func.now() - sa.text("interval '1 minute'"),
            )
        )


async def create_offer(merchants: Merchants, shop: Store, **fields: Any) -> pb.CreateMerchantExclusiveResponse:
    return await merchants.stub.CreateMerchantExclusive(
        pb.CreateMerchantExclusiveRequest(merchant_id=shop.id, **{"title": "Free cookie", **fields}),
        metadata=shop.owner.auth,
    )


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    return failure.value


# --- activation ------------------------------------------------------------------------------------------------


async def test_activating_149_m_from_the_charger_starts_an_enriched_session(
    merchants: Merchants, shop: Store, driver: Person, merchants_engine: AsyncEngine
) -> None:
    started = await activate(merchants, driver, shop, north_m=149, east_m=0)
    assert started.status == "ACTIVE" and not started.idempotent
    session = started.exclusive_session
    assert session.status == pb.EXCLUSIVE_STATUS_ACTIVE
    assert (session.merchant_id, session.charger_id) == (shop.id, shop.charger_id)
    assert session.merchant_name == "Test Coffee" and session.merchant_category == "coffee"
    assert (session.merchant_lat, session.merchant_lng) == (shop.merchant.lat, shop.merchant.lng)
    assert session.charger_name == "Merchant test charger"
    walk_m, walk_s = domain.walk_estimate((shop.charger_lat, shop.charger_lng), (shop.merchant.lat, shop.merchant.lng))
    assert session.merchant_distance_m == walk_m  # the charger link's walk
    assert session.merchant_walk_time_min == domain.walk_minutes(walk_s)
    assert 0 < session.remaining_seconds <= 3600
    assert session.expires_at.ToDatetime() - session.activated_at.ToDatetime() == domain.EXCLUSIVE_DURATION
    assert session.verification_code == "" and session.charging_active is False
    assert not session.HasField("charging_session_ended_at")
    (row,) = await sessions_of(merchants_engine, driver)
    assert str(row.id) == session.id and row.status == pb.EXCLUSIVE_STATUS_ACTIVE
    assert round(row.distance_m, 1) == 149.0


async def test_151_m_from_the_charger_is_outside_the_radius_with_the_distance(
    merchants: Merchants, shop: Store, driver: Person, merchants_engine: AsyncEngine, rest: httpx.AsyncClient
) -> None:
    failure = await refused(activate(merchants, driver, shop, north_m=151, east_m=0))
    assert failure.code() == grpc.StatusCode.FAILED_PRECONDITION and error_reason(failure) == "OUTSIDE_RADIUS"
    assert error_metadata(failure) == {"distance_m": "151.0", "radius_m": "150"}
    lat, lng = offset(shop.charger_lat, shop.charger_lng, east_m=400)
    over_rest = await rest.post(
        "/v1/exclusive/activate",
        json={"merchant_id": shop.id, "charger_id": shop.charger_id, "lat": lat, "lng": lng},
        headers=driver.headers,
    )
    assert over_rest.status_code == 400, over_rest.text  # FAILED_PRECONDITION
    detail = over_rest.json()["details"][0]
    assert detail["reason"] == "OUTSIDE_RADIUS" and detail["metadata"]["radius_m"] == "150"
    assert abs(float(detail["metadata"]["distance_m"]) - 400) < 0.5
    assert await sessions_of(merchants_engine, driver) == []


async def test_exactly_150_m_from_the_charger_is_inside(merchants: Merchants, shop: Store, driver: Person) -> None:
    # The point 150 m north, nudged by the last float step if rounding put it a hair beyond 150.0.
    lat, lng = offset(shop.charger_lat, shop.charger_lng, north_m=150)
    while great_circle_m(lat, lng, shop.charger_lat, shop.charger_lng) > domain.EXCLUSIVE_RADIUS_M:
        lat = math.nextafter(lat, shop.charger_lat)
    assert great_circle_m(lat, lng, shop.charger_lat, shop.charger_lng) == pytest.approx(150.0, abs=1e-6)
    started = await merchants.stub.ActivateExclusive(
        pb.ActivateExclusiveRequest(merchant_id=shop.id, charger_id=shop.charger_id, lat=lat, lng=lng),
        metadata=driver.auth,
    )
    assert started.status == "ACTIVE"
    assert domain.within_exclusive_radius(150.0) and not domain.within_exclusive_radius(150.05)


async def test_the_same_idempotency_key_returns_the_stored_session(
    merchants: Merchants, shop: Store, driver: Person, merchants_engine: AsyncEngine
) -> None:
    key = str(uuid.uuid4())
    first = await activate(merchants, driver, shop, key=key)
    again = await activate(merchants, driver, shop, key=key)
    assert again.idempotent and again.exclusive_session.id == first.exclusive_session.id
    # The key also comes as the x-idempotency-key header (what the gateway forwards); the field wins.
    lat, lng = offset(shop.charger_lat, shop.charger_lng, east_m=10)
    by_header = await merchants.stub.ActivateExclusive(
        pb.ActivateExclusiveRequest(merchant_id=shop.id, charger_id=shop.charger_id, lat=lat, lng=lng),
        metadata=(*driver.auth, ("x-idempotency-key", key)),
    )
    assert by_header.idempotent and by_header.exclusive_session.id == first.exclusive_session.id
    bad_header = await refused(
        merchants.stub.ActivateExclusive(
            pb.ActivateExclusiveRequest(merchant_id=shop.id, charger_id=shop.charger_id, lat=lat, lng=lng),
            metadata=(*driver.auth, ("x-idempotency-key", "not-a-uuid")),
        )
    )
    assert bad_header.code() == grpc.StatusCode.INVALID_ARGUMENT and "idempotency_key" in bad_fields(bad_header)
    assert len(await sessions_of(merchants_engine, driver)) == 1


@pytest.mark.parametrize("with_offer", [False, True], ids=["no-offer", "offer-session-cap-1"])
async def test_ten_concurrent_activations_of_one_driver_make_one_session(
    merchants: Merchants, shop: Store, driver: Person, merchants_engine: AsyncEngine, with_offer: bool
) -> None:
    if with_offer:  # the losers must get the winner's session, not EXCLUSIVE_CAP_REACHED
        await create_offer(merchants, shop, session_cap=1, daily_cap=1)
    key = str(uuid.uuid4())
    replies = await asyncio.gather(
        *(activate(merchants, driver, shop, key=key if n % 2 else "", east_m=n) for n in range(10))
    )
    assert len({reply.exclusive_session.id for reply in replies}) == 1
    assert sum(not reply.idempotent for reply in replies) == 1
    rows = await sessions_of(merchants_engine, driver)
    assert [row.status for row in rows] == [pb.EXCLUSIVE_STATUS_ACTIVE]


async def test_an_activation_racing_an_uncommitted_one_yields_to_it(
    merchants: Merchants, shop: Store, driver: Person, merchants_engine: AsyncEngine
) -> None:
    # A concurrent activation of the same driver, held uncommitted: ours passes every check, then its insert
    # waits on the one-ACTIVE-per-driver index and, once the other commits, answers with that session.
    winner = uuid.uuid4()
    async with merchants_engine.connect() as holder:
        other = await holder.begin()
        await holder.execute(
            sa.insert(X).values(
                id=winner,
                driver_id=driver.user_id,
                merchant_id=shop.id,
                charger_id=shop.charger_id,
                status=pb.EXCLUSIVE_STATUS_ACTIVE,
                lat=shop.charger_lat,
                lng=shop.charger_lng,
                distance_m=0.0,
                expires_at=sa.func.now() + sa.text("interval '60 minutes'"),
            )
        )
        racing = asyncio.create_task(activate(merchants, driver, shop))

        async def blocked() -> None:  # the activation's insert waits for our row's lock
            waiting = await lock_waits(merchants_engine, "INSERT INTO%exclusive_sessions%")
            assert waiting, "the activation is not waiting for the lock yet"

        await eventually(blocked, within=10, interval=0.02)
        await other.commit()
    reply = await racing
    assert reply.idempotent and reply.exclusive_session.id == str(winner)
    assert [row.id for row in await sessions_of(merchants_engine, driver)] == [winner]


async def test_a_second_activation_while_one_is_active_returns_it(
    merchants: Merchants, shop: Store, driver: Person, admin: Person, owner: Person, merchants_engine: AsyncEngine
) -> None:
    first = await activate(merchants, driver, shop)
    other_shop = await merchants.create_store(admin, owner, name="Other Tacos")
    second = await activate(merchants, driver, other_shop)
    assert second.idempotent and second.status == "ACTIVE"
    assert second.exclusive_session.id == first.exclusive_session.id
    assert second.exclusive_session.merchant_id == shop.id
    assert len(await sessions_of(merchants_engine, driver)) == 1


async def test_a_place_id_finds_the_store_and_an_unlinked_charger_is_refused(
    merchants: Merchants, admin: Person, owner: Person, driver: Person, person: NewPerson
) -> None:
    place = f"ChIJ{uuid.uuid4().hex[:16]}"
    shop = await merchants.create_store(admin, owner, place_id=place)
    lat, lng = offset(shop.charger_lat, shop.charger_lng, north_m=20)
    started = await merchants.stub.ActivateExclusive(
        pb.ActivateExclusiveRequest(merchant_place_id=place, charger_id=shop.charger_id, lat=lat, lng=lng),
        metadata=driver.auth,
    )
    session = started.exclusive_session
    assert session.merchant_id == shop.id and session.merchant_place_id == place
    assert session.charger_name == "Merchant test charger"
    # A charger the store is not linked to: its offer is not shown there, so it does not start there either
    # (the 150 m rule would measure from a charger that has nothing to do with the store).
    elsewhere, c_lat, c_lng = await new_charger(merchants.sessions_engine)
    near_lat, near_lng = offset(c_lat, c_lng, north_m=20)
    other = await person()
    refusal = await refused(
        merchants.stub.ActivateExclusive(
            pb.ActivateExclusiveRequest(merchant_id=shop.id, charger_id=elsewhere, lat=near_lat, lng=near_lng),
            metadata=other.auth,
        )
    )
    assert error_reason(refusal) == "NO_CHARGER_LINK"


async def test_unknown_or_paused_merchants_and_unknown_chargers_are_refused(
    merchants: Merchants, shop: Store, driver: Person, merchants_engine: AsyncEngine
) -> None:
    unknown_charger = await refused(activate(merchants, driver, shop, charger_id="no-such-charger"))
    assert error_reason(unknown_charger) == "CHARGER_NOT_FOUND"
    unknown_place = await refused(
        merchants.stub.ActivateExclusive(
            pb.ActivateExclusiveRequest(merchant_place_id="ChIJnothere", charger_id=shop.charger_id, lat=1, lng=1),
            metadata=driver.auth,
        )
    )
    assert error_reason(unknown_place) == "MERCHANT_NOT_FOUND"
    await merchants.stub.UpdateMerchant(
        pb.UpdateMerchantRequest(merchant_id=shop.id, status=pb.MERCHANT_STATUS_PAUSED), metadata=shop.owner.auth
    )
    paused = await refused(activate(merchants, driver, shop))
    assert paused.code() == grpc.StatusCode.FAILED_PRECONDITION and error_reason(paused) == "MERCHANT_NOT_ACTIVE"
    assert await sessions_of(merchants_engine, driver) == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lat": 91.0}, "lat"),
        ({"lng": -181.0}, "lng"),
        ({"lat": None}, "lat"),
        ({"charger_id": ""}, "charger_id"),
        ({"intent": "dance"}, "intent"),
        ({"idempotency_key": "abc"}, "idempotency_key"),
    ],
)
async def test_bad_activations_name_the_field_and_write_nothing(
    merchants: Merchants,
    shop: Store,
    driver: Person,
    merchants_engine: AsyncEngine,
    changes: dict[str, Any],
    field: str,
) -> None:
    fields: dict[str, Any] = {
        "merchant_id": shop.id,
        "charger_id": shop.charger_id,
        "lat": shop.charger_lat,
        "lng": shop.charger_lng,
        **changes,
    }
    request = pb.ActivateExclusiveRequest(**{k: v for k, v in fields.items() if v is not None})
    failure = await refused(merchants.stub.ActivateExclusive(request, metadata=driver.auth))
    assert failure.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in bad_fields(failure)
    assert await sessions_of(merchants_engine, driver) == []


async def test_a_missing_merchant_names_the_rule(merchants: Merchants, shop: Store, driver: Person) -> None:
    failure = await refused(
        merchants.stub.ActivateExclusive(
            pb.ActivateExclusiveRequest(charger_id=shop.charger_id, lat=shop.charger_lat, lng=shop.charger_lng),
            metadata=driver.auth,
        )
    )
    assert failure.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- caps --------------------------------------------------------------------------------------------------------


async def test_the_daily_cap_counts_the_days_activations(merchants: Merchants, shop: Store, person: NewPerson) -> None:
    offer = await create_offer(merchants, shop, daily_cap=2)
    first, second, third = [await person() for _ in range(3)]
    started = await activate(merchants, first, shop)
    assert started.exclusive_session.exclusive_title == "Free cookie"
    await merchants.stub.CompleteExclusive(
        pb.CompleteExclusiveRequest(exclusive_session_id=started.exclusive_session.id), metadata=first.auth
    )
    await activate(merchants, second, shop)
    failure = await refused(activate(merchants, third, shop))
    assert failure.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_reason(failure) == "EXCLUSIVE_CAP_REACHED"
    assert error_metadata(failure)["cap"] == "daily" and error_metadata(failure)["offer_id"] == offer.id
    # Lifting the cap lets the third driver in.
    await merchants.stub.UpdateMerchantExclusive(
        pb.UpdateMerchantExclusiveRequest(merchant_id=shop.id, exclusive_id=offer.id, daily_cap=0),
        metadata=shop.owner.auth,
    )
    assert (await activate(merchants, third, shop)).status == "ACTIVE"


async def test_the_session_cap_counts_sessions_active_at_once(
    merchants: Merchants, shop: Store, person: NewPerson, merchants_engine: AsyncEngine
) -> None:
    await create_offer(merchants, shop, session_cap=1)
    first, second = await person(), await person()
    running = await activate(merchants, first, shop)
    failure = await refused(activate(merchants, second, shop))
    assert error_reason(failure) == "EXCLUSIVE_CAP_REACHED" and error_metadata(failure)["cap"] == "session"
    # A session past its window no longer holds a place, even before anything marks it EXPIRED.
    await push_into_past(merchants_engine, running.exclusive_session.id)
    assert (await activate(merchants, second, shop)).status == "ACTIVE"


async def test_concurrent_drivers_never_exceed_the_session_cap(
    merchants: Merchants, shop: Store, person: NewPerson, merchants_engine: AsyncEngine
) -> None:
    offer = await create_offer(merchants, shop, session_cap=2)
    drivers = [await person() for _ in range(6)]
    outcomes = await asyncio.gather(*(activate(merchants, d, shop) for d in drivers), return_exceptions=True)
    started = [o for o in outcomes if isinstance(o, pb.ActivateExclusiveResponse)]
    capped = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(started) == 2 and len(capped) == 4
    assert {error_reason(error) for error in capped} == {"EXCLUSIVE_CAP_REACHED"}
    async with merchants_engine.connect() as conn:
        active = (
            await conn.execute(
                sa.select(sa.func.count()).where(X.c.offer_id == offer.id, X.c.status == pb.EXCLUSIVE_STATUS_ACTIVE)
            )
        ).scalar_one()
    assert active == 2


# --- the window ------------------------------------------------------------------------------------------------


async def test_a_session_past_its_window_expires_on_read_and_refuses_verification(
    merchants: Merchants, shop: Store, person: NewPerson, merchants_engine: AsyncEngine
) -> None:
    reader, verifier = await person(), await person()
    read_one = (await activate(merchants, reader, shop)).exclusive_session.id
    verify_one = (await activate(merchants, verifier, shop)).exclusive_session.id
    await push_into_past(merchants_engine, read_one)
    await push_into_past(merchants_engine, verify_one)

    just_expired = await merchants.stub.GetActiveExclusive(
        pb.GetActiveExclusiveRequest(include_expired=True), metadata=reader.auth
    )
    assert just_expired.session.id == read_one and just_expired.session.remaining_seconds == 0
    assert just_expired.session.status == pb.EXCLUSIVE_STATUS_EXPIRED
    assert (await session_row(merchants_engine, read_one)).status == pb.EXCLUSIVE_STATUS_EXPIRED
    none = await merchants.stub.GetActiveExclusive(pb.GetActiveExclusiveRequest(), metadata=reader.auth)
    assert none.exclusive_session.WhichOneof("kind") == "null_value" and not none.HasField("session")
    after_read = await refused(
        merchants.stub.VerifyExclusiveVisit(
            pb.VerifyExclusiveVisitRequest(exclusive_session_id=read_one), metadata=reader.auth
        )
    )
    assert error_reason(after_read) == "EXCLUSIVE_EXPIRED"

    # Not yet marked: verifying marks it EXPIRED and refuses.
    lapsed = await refused(
        merchants.stub.VerifyExclusiveVisit(
            pb.VerifyExclusiveVisitRequest(exclusive_session_id=verify_one), metadata=verifier.auth
        )
    )
    assert lapsed.code() == grpc.StatusCode.FAILED_PRECONDITION and error_reason(lapsed) == "EXCLUSIVE_EXPIRED"
    assert (await session_row(merchants_engine, verify_one)).status == pb.EXCLUSIVE_STATUS_EXPIRED
    completing = await refused(
        merchants.stub.CompleteExclusive(
            pb.CompleteExclusiveRequest(exclusive_session_id=verify_one), metadata=verifier.auth
        )
    )
    assert error_reason(completing) == "EXCLUSIVE_EXPIRED"
    # The driver may start a new one.
    again = await activate(merchants, verifier, shop)
    assert not again.idempotent and again.exclusive_session.id != verify_one


async def test_the_worker_expires_sessions_past_their_window(
    merchants: Merchants, shop: Store, person: NewPerson, merchants_engine: AsyncEngine
) -> None:
    late, running = await person(), await person()
    late_id = (await activate(merchants, late, shop)).exclusive_session.id
    running_id = (await activate(merchants, running, shop)).exclusive_session.id
    await push_into_past(merchants_engine, late_id)
    stop = asyncio.Event()
    worker = asyncio.create_task(expire_exclusives(merchants_engine, stop, every_s=0.05))
    try:

        async def expired() -> None:  # the worker's first pass runs at once
            assert (await session_row(merchants_engine, late_id)).status != pb.EXCLUSIVE_STATUS_ACTIVE

        await eventually(expired, within=10)
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=5)
    late_row = await session_row(merchants_engine, late_id)
    assert late_row.status == pb.EXCLUSIVE_STATUS_EXPIRED and late_row.ended_at == late_row.expires_at
    assert (await session_row(merchants_engine, running_id)).status == pb.EXCLUSIVE_STATUS_ACTIVE
    assert await expire_due_exclusives(merchants_engine) == 0  # nothing left that is due
    # The worker's EXPIRED session is still shown with include_expired.
    shown = await merchants.stub.GetActiveExclusive(
        pb.GetActiveExclusiveRequest(include_expired=True), metadata=late.auth
    )
    assert shown.session.id == late_id and shown.session.status == pb.EXCLUSIVE_STATUS_EXPIRED


# --- visits and completion ---------------------------------------------------------------------------------------


async def test_visits_are_numbered_per_merchant_day_and_verifying_twice_gives_the_same_code(
    merchants: Merchants, shop: Store, person: NewPerson, merchants_engine: AsyncEngine
) -> None:
    async with merchants_engine.connect() as conn:
        short_code = (
            await conn.execute(sa.select(store.merchants.c.short_code).where(store.merchants.c.id == shop.id))
        ).scalar_one()
    assert short_code in domain.short_code_candidates("Test Coffee")  # "TESTCO" unless another Test Coffee took it
    first, second = await person(), await person()
    codes = []
    for driver in (first, second):
        session_id = (await activate(merchants, driver, shop)).exclusive_session.id
        verified = await merchants.stub.VerifyExclusiveVisit(
            pb.VerifyExclusiveVisitRequest(exclusive_session_id=session_id), metadata=driver.auth
        )
        assert verified.status == "VERIFIED" and verified.merchant_name == "Test Coffee"
        codes.append((verified.visit_number, verified.verification_code))
        again = await merchants.stub.VerifyExclusiveVisit(
            pb.VerifyExclusiveVisitRequest(exclusive_session_id=session_id), metadata=driver.auth
        )
        assert again.status == "ALREADY_VERIFIED"
        assert (again.visit_number, again.verification_code) == (verified.visit_number, verified.verification_code)
        assert again.verified_at == verified.verified_at
        row = await session_row(merchants_engine, session_id)
        assert row.status == pb.EXCLUSIVE_STATUS_COMPLETED and row.ended_at is not None
    assert codes == [(1, f"AUS-{short_code}-001"), (2, f"AUS-{short_code}-002")]
    if short_code == "TESTCO":
        assert codes[0][1] == "AUS-TESTCO-001"


async def test_the_verified_point_defaults_to_the_activation_point(
    merchants: Merchants, shop: Store, person: NewPerson, merchants_engine: AsyncEngine
) -> None:
    quiet, explicit = await person(), await person()
    quiet_start = await activate(merchants, quiet, shop, north_m=30)
    await merchants.stub.VerifyExclusiveVisit(
        pb.VerifyExclusiveVisitRequest(exclusive_session_id=quiet_start.exclusive_session.id), metadata=quiet.auth
    )
    explicit_start = await activate(merchants, explicit, shop)
    await merchants.stub.VerifyExclusiveVisit(
        pb.VerifyExclusiveVisitRequest(
            exclusive_session_id=explicit_start.exclusive_session.id, lat=shop.merchant.lat, lng=shop.merchant.lng
        ),
        metadata=explicit.auth,
    )
    async with merchants_engine.connect() as conn:
        visits = {
            row.driver_id: row for row in (await conn.execute(sa.select(V).where(V.c.merchant_id == shop.id))).all()
        }
    activation = await session_row(merchants_engine, quiet_start.exclusive_session.id)
    assert (visits[quiet.user_id].lat, visits[quiet.user_id].lng) == (activation.lat, activation.lng)
    assert (visits[explicit.user_id].lat, visits[explicit.user_id].lng) == (shop.merchant.lat, shop.merchant.lng)


async def test_completing_records_feedback_and_is_idempotent_after_verification(
    merchants: Merchants, shop: Store, person: NewPerson, merchants_engine: AsyncEngine
) -> None:
    plain, verifying = await person(), await person()
    plain_id = (await activate(merchants, plain, shop)).exclusive_session.id
    done = await merchants.stub.CompleteExclusive(
        pb.CompleteExclusiveRequest(
            exclusive_session_id=plain_id, feedback=pb.ExclusiveFeedback(thumbs_up=True, tags=["friendly"])
        ),
        metadata=plain.auth,
    )
    assert (done.status, done.idempotent, done.nova_earned) == ("COMPLETED", False, 0)
    row = await session_row(merchants_engine, plain_id)
    assert row.status == pb.EXCLUSIVE_STATUS_COMPLETED and row.feedback == {"thumbs_up": True, "tags": ["friendly"]}

    verifying_id = (await activate(merchants, verifying, shop)).exclusive_session.id
    await merchants.stub.VerifyExclusiveVisit(
        pb.VerifyExclusiveVisitRequest(exclusive_session_id=verifying_id), metadata=verifying.auth
    )
    after_verify = await merchants.stub.CompleteExclusive(
        pb.CompleteExclusiveRequest(exclusive_session_id=verifying_id, feedback=pb.ExclusiveFeedback(thumbs_up=False)),
        metadata=verifying.auth,
    )
    assert (after_verify.status, after_verify.idempotent) == ("COMPLETED", True)
    assert (await session_row(merchants_engine, verifying_id)).feedback == {"thumbs_up": False, "tags": []}
    none = await merchants.stub.GetActiveExclusive(pb.GetActiveExclusiveRequest(), metadata=verifying.auth)
    assert none.exclusive_session.WhichOneof("kind") == "null_value"


async def test_a_completed_session_without_a_visit_cannot_be_verified(
    merchants: Merchants, shop: Store, driver: Person
) -> None:
    session_id = (await activate(merchants, driver, shop)).exclusive_session.id
    await merchants.stub.CompleteExclusive(
        pb.CompleteExclusiveRequest(exclusive_session_id=session_id), metadata=driver.auth
    )
    failure = await refused(
        merchants.stub.VerifyExclusiveVisit(
            pb.VerifyExclusiveVisitRequest(exclusive_session_id=session_id), metadata=driver.auth
        )
    )
    assert error_reason(failure) == "EXCLUSIVE_NOT_ACTIVE"


async def test_another_driver_cannot_see_verify_or_complete_the_session(
    merchants: Merchants, shop: Store, driver: Person, person: NewPerson, merchants_engine: AsyncEngine
) -> None:
    session_id = (await activate(merchants, driver, shop)).exclusive_session.id
    stranger = await person()
    for call in (
        merchants.stub.VerifyExclusiveVisit(
            pb.VerifyExclusiveVisitRequest(exclusive_session_id=session_id), metadata=stranger.auth
        ),
        merchants.stub.CompleteExclusive(
            pb.CompleteExclusiveRequest(exclusive_session_id=session_id), metadata=stranger.auth
        ),
        merchants.stub.VerifyExclusiveVisit(
            pb.VerifyExclusiveVisitRequest(exclusive_session_id=str(uuid.uuid4())), metadata=driver.auth
        ),
    ):
        failure = await refused(call)
        assert failure.code() == grpc.StatusCode.NOT_FOUND and error_reason(failure) == "EXCLUSIVE_NOT_FOUND"
    none = await merchants.stub.GetActiveExclusive(pb.GetActiveExclusiveRequest(), metadata=stranger.auth)
    assert none.exclusive_session.WhichOneof("kind") == "null_value"
    assert (await session_row(merchants_engine, session_id)).status == pb.EXCLUSIVE_STATUS_ACTIVE


# --- admin cancellation ------------------------------------------------------------------------------------------


async def test_an_admin_cancels_one_session_or_every_session_at_a_charger(
    merchants: Merchants,
    shop: Store,
    admin: Person,
    person: NewPerson,
    merchants_engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    one, two, three = [await person() for _ in range(3)]
    one_id = (await activate(merchants, one, shop)).exclusive_session.id
    with caplog.at_level(logging.INFO, logger="services.merchants.exclusives"):
        by_id = await merchants.stub.CancelExclusive(
            pb.CancelExclusiveRequest(exclusive_session_id=one_id, reason="fraud check"), metadata=admin.auth
        )
    assert (by_id.canceled_count, list(by_id.exclusive_session_ids)) == (1, [one_id])
    (audit,) = [r for r in caplog.records if getattr(r, "audit", None) == "exclusive.cancel"]
    assert (vars(audit)["admin_id"], vars(audit)["reason"]) == (admin.user_id, "fraud check")
    assert vars(audit)["exclusive_session_ids"] == [one_id]
    row = await session_row(merchants_engine, one_id)
    assert row.status == pb.EXCLUSIVE_STATUS_CANCELED and row.ended_at is not None
    assert (row.cancel_reason, row.canceled_by) == ("fraud check", admin.user_id)
    for call in (
        merchants.stub.VerifyExclusiveVisit(
            pb.VerifyExclusiveVisitRequest(exclusive_session_id=one_id), metadata=one.auth
        ),
        merchants.stub.CompleteExclusive(pb.CompleteExclusiveRequest(exclusive_session_id=one_id), metadata=one.auth),
    ):
        assert error_reason(await refused(call)) == "EXCLUSIVE_NOT_ACTIVE"
    again = await merchants.stub.CancelExclusive(
        pb.CancelExclusiveRequest(exclusive_session_id=one_id, reason="fraud check"), metadata=admin.auth
    )
    assert again.canceled_count == 0  # nothing ACTIVE left to cancel

    ids = {(await activate(merchants, d, shop)).exclusive_session.id for d in (two, three)}
    at_charger = await merchants.stub.CancelExclusive(
        pb.CancelExclusiveRequest(charger_id=shop.charger_id, reason="charger closed"), metadata=admin.auth
    )
    assert at_charger.canceled_count == 2 and set(at_charger.exclusive_session_ids) == ids
    unknown = await refused(
        merchants.stub.CancelExclusive(
            pb.CancelExclusiveRequest(exclusive_session_id=str(uuid.uuid4()), reason="typo"), metadata=admin.auth
        )
    )
    assert error_reason(unknown) == "EXCLUSIVE_NOT_FOUND"


async def test_a_driver_or_merchant_cannot_cancel(
    merchants: Merchants, shop: Store, driver: Person, merchants_engine: AsyncEngine
) -> None:
    session_id = (await activate(merchants, driver, shop)).exclusive_session.id
    for who in (driver, shop.owner):
        failure = await refused(
            merchants.stub.CancelExclusive(
                pb.CancelExclusiveRequest(exclusive_session_id=session_id, reason="mine"), metadata=who.auth
            )
        )
        assert failure.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await session_row(merchants_engine, session_id)).status == pb.EXCLUSIVE_STATUS_ACTIVE


# --- offers ------------------------------------------------------------------------------------------------------


async def test_the_owner_manages_offers_over_rest(merchants: Merchants, shop: Store, rest: httpx.AsyncClient) -> None:
    created = await rest.post(
        f"/v1/merchants/{shop.id}/exclusives",
        json={"title": "Free cookie", "description": "with any coffee", "daily_cap": 20},
        headers=shop.owner.headers,
    )
    assert created.status_code == 200, created.text
    offer = created.json()
    assert re.fullmatch(r"ex_[0-9a-f]{12}", offer["id"])
    assert (offer["merchant_id"], offer["eligibility"], offer["is_active"]) == (shop.id, "charging_only", True)
    assert (offer["daily_cap"], offer["session_cap"]) == (20, 0)
    changed = await rest.put(
        f"/v1/merchants/{shop.id}/exclusives/{offer['id']}",
        json={"is_active": False, "session_cap": 3},
        headers=shop.owner.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["title"] == "Free cookie" and changed.json()["description"] == "with any coffee"
    assert (changed.json()["is_active"], changed.json()["session_cap"], changed.json()["daily_cap"]) == (False, 3, 20)
    second = await rest.post(
        f"/v1/merchants/{shop.id}/exclusives",
        json={"title": "Half-price pastry", "eligibility": "all"},
        headers=shop.owner.headers,
    )
    listed = await rest.get(f"/v1/merchants/{shop.id}/exclusives", headers=shop.owner.headers)
    assert listed.status_code == 200 and listed.headers["content-type"].startswith("application/json")
    body = listed.json()
    assert isinstance(body, list)  # a bare array, newest first
    assert [item["id"] for item in body] == [second.json()["id"], offer["id"]]
    assert body[1]["is_active"] is False and body[0]["eligibility"] == "all"
    typed = await merchants.stub.ListMerchantExclusives(
        pb.ListMerchantExclusivesRequest(merchant_id=shop.id), metadata=shop.owner.auth
    )
    assert [item.id for item in typed.exclusives] == [item["id"] for item in body]


async def test_an_admin_manages_any_merchants_offers(merchants: Merchants, shop: Store, admin: Person) -> None:
    created = await merchants.stub.CreateMerchantExclusive(
        pb.CreateMerchantExclusiveRequest(merchant_id=shop.id, title="Admin offer"), metadata=admin.auth
    )
    listed = await merchants.stub.ListMerchantExclusives(
        pb.ListMerchantExclusivesRequest(merchant_id=shop.id), metadata=admin.auth
    )
    assert [item.id for item in listed.exclusives] == [created.id]


async def test_another_merchant_cannot_see_or_change_the_offers(
    merchants: Merchants, shop: Store, person: NewPerson, driver: Person
) -> None:
    offer = await create_offer(merchants, shop)
    stranger = await person("merchant")
    for call in (
        merchants.stub.ListMerchantExclusives(
            pb.ListMerchantExclusivesRequest(merchant_id=shop.id), metadata=stranger.auth
        ),
        merchants.stub.CreateMerchantExclusive(
            pb.CreateMerchantExclusiveRequest(merchant_id=shop.id, title="Mine now"), metadata=stranger.auth
        ),
        merchants.stub.UpdateMerchantExclusive(
            pb.UpdateMerchantExclusiveRequest(merchant_id=shop.id, exclusive_id=offer.id, title="Mine now"),
            metadata=stranger.auth,
        ),
    ):
        assert error_reason(await refused(call)) == "MERCHANT_NOT_FOUND"
    as_driver = await refused(
        merchants.stub.ListMerchantExclusives(
            pb.ListMerchantExclusivesRequest(merchant_id=shop.id), metadata=driver.auth
        )
    )
    assert as_driver.code() == grpc.StatusCode.PERMISSION_DENIED
    listed = await merchants.stub.ListMerchantExclusives(
        pb.ListMerchantExclusivesRequest(merchant_id=shop.id), metadata=shop.owner.auth
    )
    assert [(item.id, item.title) for item in listed.exclusives] == [(offer.id, "Free cookie")]


async def test_an_offer_needs_a_charger_link_and_unknown_offers_are_not_found(
    merchants: Merchants, shop: Store, admin: Person, owner: Person
) -> None:
    unlinked = await merchants.stub.CreateMerchant(
        pb.CreateMerchantRequest(
            request_id=str(uuid.uuid4()),
            merchant=pb.Merchant(name="Lonely Bagels", lat=30.0, lng=-97.0, owner_user_id=owner.user_id),
        ),
        metadata=admin.auth,
    )
    no_link = await refused(
        merchants.stub.CreateMerchantExclusive(
            pb.CreateMerchantExclusiveRequest(merchant_id=unlinked.merchant.id, title="Free bagel"),
            metadata=owner.auth,
        )
    )
    assert no_link.code() == grpc.StatusCode.FAILED_PRECONDITION and error_reason(no_link) == "NO_CHARGER_LINK"
    unknown = await refused(
        merchants.stub.UpdateMerchantExclusive(
            pb.UpdateMerchantExclusiveRequest(merchant_id=shop.id, exclusive_id="ex_000000000000", title="X"),
            metadata=owner.auth,
        )
    )
    assert unknown.code() == grpc.StatusCode.NOT_FOUND and error_reason(unknown) == "EXCLUSIVE_OFFER_NOT_FOUND"
    # An offer of another merchant is unknown here too.
    offer = await create_offer(merchants, shop)
    other = await merchants.create_store(admin, owner, name="Second Shop")
    elsewhere = await refused(
        merchants.stub.UpdateMerchantExclusive(
            pb.UpdateMerchantExclusiveRequest(merchant_id=other.id, exclusive_id=offer.id, title="X"),
            metadata=owner.auth,
        )
    )
    assert error_reason(elsewhere) == "EXCLUSIVE_OFFER_NOT_FOUND"


async def test_bad_offers_name_the_field(merchants: Merchants, shop: Store) -> None:
    for request, field in (
        (pb.CreateMerchantExclusiveRequest(merchant_id=shop.id, title=""), "title"),
        (pb.CreateMerchantExclusiveRequest(merchant_id=shop.id, title="X", daily_cap=-1), "daily_cap"),
        (pb.CreateMerchantExclusiveRequest(merchant_id=shop.id, title="X", eligibility="vip"), "eligibility"),
    ):
        failure = await refused(merchants.stub.CreateMerchantExclusive(request, metadata=shop.owner.auth))
        assert failure.code() == grpc.StatusCode.INVALID_ARGUMENT and field in bad_fields(failure)


# --- the driver app over REST ---------------------------------------------------------------------------------


async def test_the_driver_app_flow_through_the_gateway(
    merchants: Merchants, shop: Store, driver: Person, rest: httpx.AsyncClient
) -> None:
    await create_offer(merchants, shop, title="Free refill")
    lat, lng = offset(shop.charger_lat, shop.charger_lng, north_m=40)
    headers = {**driver.headers, "X-Idempotency-Key": str(uuid.uuid4())}
    body = {"merchant_id": shop.id, "charger_id": shop.charger_id, "lat": lat, "lng": lng, "intent": "eat"}
    started = await rest.post("/v1/exclusive/activate", json=body, headers=headers)
    assert started.status_code == 200, started.text
    session = started.json()["exclusive_session"]
    assert started.json()["status"] == "ACTIVE" and session["exclusive_title"] == "Free refill"
    assert session["verification_code"] == "" and session["charging_active"] is False
    replayed = await rest.post("/v1/exclusive/activate", json=body, headers=headers)
    assert replayed.json()["idempotent"] is True and replayed.json()["exclusive_session"]["id"] == session["id"]

    active = await rest.get("/v1/exclusive/active", headers=driver.headers)
    assert active.status_code == 200, active.text
    shown = active.json()["exclusive_session"]
    assert shown["id"] == session["id"] and shown["merchant_name"] == "Test Coffee"
    assert shown["status"] == "EXCLUSIVE_STATUS_ACTIVE" and shown["remaining_seconds"] > 0
    assert shown == active.json()["session"]  # the Value carries the typed session, as printed

    verified = await rest.post(
        "/v1/exclusive/verify", json={"exclusive_session_id": session["id"]}, headers=driver.headers
    )
    assert verified.status_code == 200, verified.text
    assert verified.json()["status"] == "VERIFIED" and verified.json()["visit_number"] == 1
    region, short_code, number = verified.json()["verification_code"].split("-")
    assert (region, number) == ("AUS", "001") and short_code in domain.short_code_candidates("Test Coffee")
    completed = await rest.post(
        "/v1/exclusive/complete",
        json={"exclusive_session_id": session["id"], "feedback": {"thumbs_up": True, "tags": ["quick"]}},
        headers=driver.headers,
    )
    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "COMPLETED" and completed.json()["idempotent"] is True

    after = await rest.get("/v1/exclusive/active", headers=driver.headers)
    assert after.status_code == 200 and "exclusive_session" in after.json()
    assert after.json()["exclusive_session"] is None and "session" not in after.json()
    missing_lat = await rest.post(
        "/v1/exclusive/activate", json={"merchant_id": shop.id, "charger_id": shop.charger_id}, headers=driver.headers
    )
    assert missing_lat.status_code == 400
    unauthenticated = await rest.get("/v1/exclusive/active")
    assert unauthenticated.status_code == 401


async def test_the_null_session_is_a_value_for_grpc_callers(merchants: Merchants, driver: Person) -> None:
    none = await merchants.stub.GetActiveExclusive(pb.GetActiveExclusiveRequest(), metadata=driver.auth)
    assert none.exclusive_session == struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)


async def test_the_portal_switches_an_offer_and_reads_its_analytics(
    merchants: Merchants, shop: Store, person: NewPerson, rest: httpx.AsyncClient
) -> None:
    offer = await create_offer(merchants, shop)
    path = f"/v1/merchants/{shop.id}/exclusives/{offer.id}/enable"
    off = await rest.post(path, params={"enabled": "false"}, headers=shop.owner.headers)
    assert off.status_code == 200, off.text
    assert off.json() == {"ok": True, "is_active": False}
    on = await rest.post(path, params={"enabled": "true"}, headers=shop.owner.headers)
    assert on.json()["is_active"] is True
    stranger = await person("merchant")
    assert (await rest.post(path, params={"enabled": "false"}, headers=stranger.headers)).status_code == 404
    first, second = await person(), await person()
    for driver in (first, second):
        await activate(merchants, driver, shop)
    session_id = (
        await merchants.stub.GetActiveExclusive(pb.GetActiveExclusiveRequest(), metadata=first.auth)
    ).session.id
    await merchants.stub.VerifyExclusiveVisit(
        pb.VerifyExclusiveVisitRequest(exclusive_session_id=session_id), metadata=first.auth
    )
    analytics = await rest.get(f"/v1/merchants/{shop.id}/analytics", headers=shop.owner.headers)
    assert analytics.status_code == 200, analytics.text
    assert analytics.json() == {
        "merchant_id": shop.id,
        "activations": 2,
        "completes": 1,
        "unique_drivers": 2,
        "completion_rate": 50.0,
    }
    assert (await rest.get(f"/v1/merchants/{shop.id}/analytics", headers=stranger.headers)).status_code == 404
    # The same day's figures on the drivers' "while you charge" list and the store's page (the store's own day).
    listed = (await rest.get("/v1/drivers/merchants/open", params={"charger_id": shop.charger_id})).json()
    assert (listed[0]["activations_today"], listed[0]["verified_visits_today"]) == (2, 1)
    page = (await rest.get(f"/v1/merchants/{shop.id}")).json()["merchant"]
    assert (page["activations_today"], page["verified_visits_today"]) == (2, 1)


async def test_the_offer_core_runs_without_the_servicer(
    shop: Store, person: NewPerson, merchants_engine: AsyncEngine
) -> None:
    """Exclusives is plain Python over the database: the owner (a Caller handed in, not read from a context)
    creates, changes and lists an offer and reads its figures; another merchant is told the store does not exist."""

    class NoDirectory(ChargerDirectory):
        def __init__(self) -> None:
            pass

        async def charger(self, charger_id: str) -> Charger:
            raise AssertionError("configuring offers never asks the charger directory")

    core = Exclusives(merchants_engine, merchants_engine, NoDirectory())
    owner = Caller(user_id=shop.owner.user_id, roles=frozenset({"merchant"}))
    offer = await core.create_offer(
        shop.id, owner, title="Free coffee", description="", daily_cap=0, session_cap=0, eligibility=""
    )
    assert (offer.is_active, offer.eligibility) == (True, "charging_only")
    unchanged = await core.change_offer(shop.id, owner, offer.id, OfferChanges())
    assert (unchanged.title, unchanged.is_active) == ("Free coffee", True)
    paused = await core.change_offer(shop.id, owner, offer.id, OfferChanges(is_active=False, daily_cap=5))
    assert (paused.title, paused.is_active, paused.daily_cap) == ("Free coffee", False, 5)
    assert [row.id for row in await core.offers(shop.id, owner)] == [offer.id]
    assert await core.analytics(shop.id, owner) == OfferAnalytics(
        activations=0, completes=0, unique_drivers=0, completion_rate=0.0
    )
    stranger = Caller(user_id=(await person("merchant")).user_id, roles=frozenset({"merchant"}))
    with pytest.raises(NotFound) as hidden:
        await core.offers(shop.id, stranger)
    assert hidden.value.reason == "MERCHANT_NOT_FOUND"


async def test_a_key_replayed_for_another_charger_is_refused_and_a_paused_store_takes_no_visit(
    merchants: Merchants, admin: Person, owner: Person, driver: Person
) -> None:
    shop = await merchants.create_store(admin, owner)
    key = str(uuid.uuid4())
    started = await activate(merchants, driver, shop, key=key)
    other = await merchants.create_store(admin, owner)
    lat, lng = offset(other.charger_lat, other.charger_lng, east_m=10)
    reused = await refused(
        merchants.stub.ActivateExclusive(
            pb.ActivateExclusiveRequest(
                merchant_id=other.id, charger_id=other.charger_id, lat=lat, lng=lng, idempotency_key=key
            ),
            metadata=driver.auth,
        )
    )
    assert reused.code() == grpc.StatusCode.ABORTED and error_reason(reused) == "IDEMPOTENCY_KEY_REUSED"
    await merchants.stub.UpdateMerchant(
        pb.UpdateMerchantRequest(merchant_id=shop.id, status=pb.MERCHANT_STATUS_PAUSED), metadata=owner.auth
    )
    paused = await refused(
        merchants.stub.VerifyExclusiveVisit(
            pb.VerifyExclusiveVisitRequest(exclusive_session_id=started.exclusive_session.id), metadata=driver.auth
        )
    )
    assert error_reason(paused) == "MERCHANT_NOT_ACTIVE"


# --- the staff screen -----------------------------------------------------------------------------------------


async def test_staff_see_the_offer_by_the_sessions_id_without_signing_in(
    merchants: Merchants, shop: Store, driver: Person, merchants_engine: AsyncEngine, rest: httpx.AsyncClient
) -> None:
    await create_offer(merchants, shop, title="Free cookie", description="One cookie with any drink")
    session = (await activate(merchants, driver, shop)).exclusive_session

    screen = await rest.get(f"/v1/exclusive/session/{session.id}")  # no token: the id is the capability
    assert screen.status_code == 200, screen.text
    body = screen.json()
    shown = body["exclusive_session"]
    assert shown["id"] == session.id and shown["merchant_id"] == shop.id
    assert shown["charger_id"] is None  # staff are not told where the driver charges
    assert shown["status"] == "EXCLUSIVE_STATUS_ACTIVE" and 0 < shown["remaining_seconds"] <= 3600
    assert (body["merchant_name"], body["exclusive_title"], body["staff_instructions"]) == (
        "Test Coffee",
        "Free cookie",
        "One cookie with any drink",
    )
    assert driver.user_id not in screen.text

    await push_into_past(merchants_engine, session.id)
    expired = (await rest.get(f"/v1/exclusive/session/{session.id}")).json()["exclusive_session"]
    assert (expired["status"], expired["remaining_seconds"]) == ("EXCLUSIVE_STATUS_EXPIRED", 0)


async def test_an_unknown_session_is_null_and_a_bad_id_is_refused(
    merchants: Merchants, shop: Store, driver: Person, rest: httpx.AsyncClient
) -> None:
    session = (await activate(merchants, driver, shop)).exclusive_session  # a session without an offer
    untitled = (await rest.get(f"/v1/exclusive/session/{session.id}")).json()
    assert (untitled["exclusive_title"], untitled["staff_instructions"]) == (None, None)

    unknown = await rest.get(f"/v1/exclusive/session/{uuid.uuid4()}")
    assert unknown.status_code == 200, unknown.text
    assert unknown.json() == {
        "exclusive_session": None,
        "merchant_name": None,
        "exclusive_title": None,
        "staff_instructions": None,
    }
    bad = await rest.get("/v1/exclusive/session/not-a-uuid")
    assert bad.status_code == 400, bad.text
    violations = [v for d in bad.json()["details"] for v in d.get("field_violations", [])]
    assert [v["field"] for v in violations] == ["exclusive_session_id"]
    typed = await merchants.stub.GetExclusiveStaffView(pb.GetExclusiveStaffViewRequest(exclusive_session_id=session.id))
    assert typed.staff_view.id == session.id and not typed.staff_view.HasField("exclusive_title")


# --- arrival check-in -----------------------------------------------------------------------------------------


async def test_staff_check_a_driver_in_with_the_arrival_code_once(
    merchants: Merchants, shop: Store, driver: Person, rest: httpx.AsyncClient, merchants_engine: AsyncEngine
) -> None:
    session = (await activate(merchants, driver, shop)).exclusive_session
    code = session.arrival_code
    assert re.fullmatch(f"[{domain.ARRIVAL_CODE_ALPHABET}]{{6}}", code), code
    active = await rest.get("/v1/exclusive/active", headers=driver.headers)
    assert active.json()["exclusive_session"]["arrival_code"] == code

    typed = f"{code[:3].lower()}-{code[3:].lower()}"  # staff type it as they like
    checked = await rest.post(
        "/v1/checkin/redeem", json={"code": typed, "order_number": "A-17", "order_total_cents": 1250}
    )
    assert checked.status_code == 200, checked.text
    body = checked.json()
    assert (body["redeemed"], body["already_redeemed"], body["session_id"], body["error"]) == (
        True,
        False,
        session.id,
        None,
    )
    assert body["verification_code"].endswith(f"-{body['visit_number']:03d}")
    row = await session_row(merchants_engine, session.id)
    assert row.status == pb.EXCLUSIVE_STATUS_COMPLETED and row.checked_in_at is not None
    assert (row.check_in_order_number, row.check_in_order_total_cents) == ("A-17", 1250)
    visits = await rest.get(f"/v1/merchants/{shop.id}/visits", headers=shop.owner.headers)
    assert body["verification_code"] in [v["verification_code"] for v in visits.json()["visits"]]

    again = await rest.post("/v1/checkin/redeem", json={"code": code})
    assert again.status_code == 200, again.text
    assert (again.json()["redeemed"], again.json()["already_redeemed"]) == (False, True)
    assert again.json()["verification_code"] == body["verification_code"]  # single-use: nothing new
    # The driver's own "I'm here" after the check-in is the same visit.
    verified = await merchants.stub.VerifyExclusiveVisit(
        pb.VerifyExclusiveVisitRequest(exclusive_session_id=session.id), metadata=driver.auth
    )
    assert (verified.status, verified.verification_code) == ("ALREADY_VERIFIED", body["verification_code"])


async def test_check_in_codes_that_are_unknown_lapsed_or_malformed_are_refused(
    merchants: Merchants, shop: Store, driver: Person, rest: httpx.AsyncClient, merchants_engine: AsyncEngine
) -> None:
    unknown = await rest.post("/v1/checkin/redeem", json={"code": "ZZZZZZ"})
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["details"][0]["reason"] == "CHECK_IN_CODE_UNKNOWN"

    session = (await activate(merchants, driver, shop)).exclusive_session
    await push_into_past(merchants_engine, session.id)
    lapsed = await rest.post("/v1/checkin/redeem", json={"code": session.arrival_code})
    assert lapsed.status_code == 400, lapsed.text
    assert lapsed.json()["details"][0]["reason"] == "EXCLUSIVE_EXPIRED"
    assert (await session_row(merchants_engine, session.id)).status == pb.EXCLUSIVE_STATUS_EXPIRED

    for body in ({"code": "AB"}, {"code": "ABC$EF"}, {"code": "ABCDEF", "order_total_cents": -1}):
        refused_input = await rest.post("/v1/checkin/redeem", json=body)
        assert refused_input.status_code == 400, (body, refused_input.text)


async def test_arrival_codes_are_unique_among_live_sessions(
    merchants: Merchants, shop: Store, person: NewPerson, merchants_engine: AsyncEngine
) -> None:
    drivers = [await person() for _ in range(5)]
    sessions = [(await activate(merchants, d, shop)).exclusive_session for d in drivers]
    assert len({s.arrival_code for s in sessions}) == 5
    # The database refuses a second live session with a code already live.
    with pytest.raises(sa.exc.IntegrityError):
        async with merchants_engine.begin() as conn:
            await conn.execute(
                sa.update(X).where(X.c.id == uuid.UUID(sessions[1].id)).values(arrival_code=sessions[0].arrival_code)
            )
