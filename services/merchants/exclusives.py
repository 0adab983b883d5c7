"""Exclusive offers: a driver at a charger starts a merchant's offer (150 m, 60 min), verifies the visit at the
merchant (a code staff check), completes it; admins cancel; merchants configure their offers.

Lifecycle `ACTIVE → COMPLETED | EXPIRED | CANCELED`. A session past its window is marked EXPIRED lazily by
whichever read or write meets it first, and by `expire_exclusives` (the worker) in the background.

Concurrency, by what the database guarantees (migrations/versions/0002):
- one ACTIVE session per driver (partial unique index) and one session per (driver, idempotency key): an
  activation inserts with ON CONFLICT DO NOTHING, and the loser of a race answers with the winner's session;
- an offer's caps are checked and the session inserted in one transaction holding the offer row FOR UPDATE,
  so concurrent activations of one offer count each other;
- a visit number is unique per merchant and local day: the next number is taken under a transaction-level
  advisory lock on the merchant; one visit per session (the session row is locked FOR UPDATE).

Caps, from the merchant's active offer (the oldest when several are active): `daily_cap` counts the offer's
activations since the start of the merchant's local day (its time zone), canceled sessions excepted;
`session_cap` counts the offer's sessions ACTIVE at once (unexpired). 0 means no cap.

Out of scope here: linking a session to the driver's charging session. `charging_active` is always false,
`charging_session_ended_at` absent, and the window is not extended after charging ends (the contract's
"60 minutes after the linked charging session ends" needs that link).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import uuid
from collections.abc import Sequence
from typing import Any, cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from nerava.merchants.v1 import merchants_pb2 as pb
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.context import Caller
from services.common.errors import (
    Aborted,
    FailedPrecondition,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from services.common.geo import great_circle_m
from services.merchants import domain, store
from services.merchants.peers import Charger, ChargerDirectory
from services.merchants.reasons import Reason
from services.merchants.records import (
    active_merchant,
    load_merchant,
    merchant_not_found,
    owned_merchant,
)

log = logging.getLogger(__name__)


ACTIVE = pb.EXCLUSIVE_STATUS_ACTIVE
COMPLETED = pb.EXCLUSIVE_STATUS_COMPLETED
MERCHANT_ACTIVE = pb.MERCHANT_STATUS_ACTIVE
EXPIRED = pb.EXCLUSIVE_STATUS_EXPIRED
CANCELED = pb.EXCLUSIVE_STATUS_CANCELED

DEFAULT_ELIGIBILITY = "charging_only"
EXPIRE_BATCH = 500
_ACTIVATE_ATTEMPTS = 3


@dataclasses.dataclass(frozen=True)
class ExclusiveStart:
    """What a driver asks to start: the store (by id, else by Google place id), the charger they are at, where
    they are, and what the store may want to know of the visit."""

    merchant_id: str
    merchant_place_id: str
    charger_id: str
    lat: float
    lng: float
    accuracy_m: float
    intent: str
    party_size: int
    needs_power_outlet: bool
    is_to_go: bool


@dataclasses.dataclass(frozen=True)
class ShownSession:
    """A session as the app shows it: its row (as `_view` reads it), its status now (EXPIRED once past its window,
    whether or not that is written yet), the seconds left, and the walk from the charger to the store (measured
    when linked, else estimated)."""

    row: Any
    status: int
    remaining_seconds: int
    walk_m: int
    walk_minutes: int
    charger_name: str


@dataclasses.dataclass(frozen=True)
class Activated:
    session: ShownSession
    # The driver's key (or their running session) answered with a session started before.
    idempotent: bool


@dataclasses.dataclass(frozen=True)
class VerifiedVisit:
    """A session's verified visit (a verified_visits row) at the store named; `earlier` when verified before."""

    visit: Any
    merchant_name: str
    earlier: bool


@dataclasses.dataclass(frozen=True)
class StaffView:
    """The session as the store's staff see it (its row with the store's name and the offer's title and
    description), its status now and the seconds left."""

    row: Any
    status: int
    remaining_seconds: int


@dataclasses.dataclass(frozen=True)
class CheckIn:
    """A redeemed arrival code: the session, its visit (None only for a session checked in without one), and
    whether it was redeemed by this call or before."""

    session_id: str
    visit: Any
    redeemed: bool


@dataclasses.dataclass(frozen=True)
class OfferChanges:
    """The fields of an offer to change; None leaves one as it is."""

    title: str | None = None
    description: str | None = None
    daily_cap: int | None = None
    session_cap: int | None = None
    eligibility: str | None = None
    is_active: bool | None = None


@dataclasses.dataclass(frozen=True)
class OfferAnalytics:
    """The store's exclusive sessions, all time; the completion rate in percent, 2 decimals."""

    activations: int
    completes: int
    unique_drivers: int
    completion_rate: float


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def status_name(status: int) -> str:
    """The status's name without its prefix ("ACTIVE", "EXPIRED"), as answers and errors spell it."""
    return pb.ExclusiveStatus.Name(status).removeprefix("EXCLUSIVE_STATUS_")  # type: ignore[arg-type]


def _session_not_found(session_id: str) -> NotFound:
    return NotFound(Reason.EXCLUSIVE_NOT_FOUND, "no such exclusive session", {"exclusive_session_id": session_id})


def _expired(session_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        Reason.EXCLUSIVE_EXPIRED, "the exclusive offer's window is over", {"exclusive_session_id": session_id}
    )


def _not_active(session_id: str, status: int) -> FailedPrecondition:
    return FailedPrecondition(
        Reason.EXCLUSIVE_NOT_ACTIVE,
        f"the exclusive session is {status_name(status).lower()}",
        {"exclusive_session_id": session_id, "status": status_name(status)},
    )


def _local_day_start(now: datetime.datetime, time_zone: str) -> datetime.datetime:
    local = now.astimezone(ZoneInfo(time_zone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _view() -> sa.Select[Any]:
    """A session with what the app shows of it: the merchant, the walk from the charger (when linked), the
    offer's title and the visit code (once verified)."""
    return sa.select(
        store.exclusive_sessions,
        store.merchants.c.name.label("merchant_name"),
        store.merchants.c.place_id.label("merchant_place_id"),
        store.merchants.c.lat.label("merchant_lat"),
        store.merchants.c.lng.label("merchant_lng"),
        store.merchants.c.category.label("merchant_category"),
        store.merchants.c.photo_urls.label("merchant_photo_urls"),
        store.charger_links.c.charger_name.label("link_charger_name"),
        store.charger_links.c.walk_distance_m.label("link_walk_distance_m"),
        store.charger_links.c.walk_time_s.label("link_walk_time_s"),
        store.exclusive_offers.c.title.label("offer_title"),
        store.verified_visits.c.verification_code.label("visit_code"),
    ).select_from(
        store.exclusive_sessions.join(store.merchants, store.merchants.c.id == store.exclusive_sessions.c.merchant_id)
        .outerjoin(
            store.charger_links,
            sa.and_(
                store.charger_links.c.merchant_id == store.exclusive_sessions.c.merchant_id,
                store.charger_links.c.charger_id == store.exclusive_sessions.c.charger_id,
            ),
        )
        .outerjoin(store.exclusive_offers, store.exclusive_offers.c.id == store.exclusive_sessions.c.offer_id)
        .outerjoin(store.verified_visits, store.verified_visits.c.exclusive_session_id == store.exclusive_sessions.c.id)
    )


async def _expire_session(conn: AsyncConnection, session_id: uuid.UUID) -> None:
    """Marks one session EXPIRED if it is still ACTIVE (conditional: a concurrent change wins)."""
    await conn.execute(
        sa.update(store.exclusive_sessions)
        .where(store.exclusive_sessions.c.id == session_id, store.exclusive_sessions.c.status == ACTIVE)
        .values(status=EXPIRED, ended_at=store.exclusive_sessions.c.expires_at)
    )


# --- queries: exclusive sessions, offers and visits (the tables are in store.py) ---------------------------


async def session_by_key(conn: AsyncConnection, driver_id: str, key: uuid.UUID) -> Any:
    """The session the driver started with this idempotency key (as `_view` shows it), or None."""
    return (
        await conn.execute(
            _view().where(
                store.exclusive_sessions.c.driver_id == driver_id,
                store.exclusive_sessions.c.idempotency_key == key,
            )
        )
    ).first()


async def active_session(conn: AsyncConnection, driver_id: str) -> Any:
    """The driver's ACTIVE session (at most one), as `_view` shows it, or None."""
    return (
        await conn.execute(
            _view().where(
                store.exclusive_sessions.c.driver_id == driver_id, store.exclusive_sessions.c.status == ACTIVE
            )
        )
    ).first()


async def session_view(conn: AsyncConnection, session_id: uuid.UUID) -> Any:
    return (await conn.execute(_view().where(store.exclusive_sessions.c.id == session_id))).one()


async def merchant_id_by_place(conn: AsyncConnection, place_id: str) -> str | None:
    merchant_id: str | None = (
        await conn.execute(sa.select(store.merchants.c.id).where(store.merchants.c.place_id == place_id))
    ).scalar_one_or_none()
    return merchant_id


async def charger_link(conn: AsyncConnection, merchant_id: str, charger_id: str) -> Any:
    return (
        await conn.execute(
            sa.select(store.charger_links).where(
                store.charger_links.c.merchant_id == merchant_id,
                store.charger_links.c.charger_id == charger_id,
            )
        )
    ).first()


async def has_charger_link(conn: AsyncConnection, merchant_id: str) -> bool:
    linked = (
        await conn.execute(
            sa.select(store.charger_links.c.charger_id).where(store.charger_links.c.merchant_id == merchant_id).limit(1)
        )
    ).first()
    return linked is not None


async def drivers_session_for_update(conn: AsyncConnection, session_id: uuid.UUID, driver_id: str) -> Any:
    """The driver's own session, locked; None when it is unknown or another driver's."""
    return (
        await conn.execute(
            sa.select(store.exclusive_sessions)
            .where(store.exclusive_sessions.c.id == session_id, store.exclusive_sessions.c.driver_id == driver_id)
            .with_for_update()
        )
    ).first()


async def visit_of(conn: AsyncConnection, session_id: uuid.UUID) -> Any:
    """The verified visit of a session, or None."""
    return (
        await conn.execute(
            sa.select(store.verified_visits).where(store.verified_visits.c.exclusive_session_id == session_id)
        )
    ).first()


async def complete_session(conn: AsyncConnection, session_id: uuid.UUID, now: datetime.datetime, **also: Any) -> None:
    """Marks the session COMPLETED now, with `also` (more of its columns); the caller holds its lock."""
    await conn.execute(
        sa.update(store.exclusive_sessions)
        .where(store.exclusive_sessions.c.id == session_id)
        .values(status=COMPLETED, ended_at=now, **also)
    )


async def set_feedback(conn: AsyncConnection, session_id: uuid.UUID, feedback: dict[str, Any]) -> None:
    await conn.execute(
        sa.update(store.exclusive_sessions).where(store.exclusive_sessions.c.id == session_id).values(feedback=feedback)
    )


async def merchant_offers(conn: AsyncConnection, merchant_id: str) -> Sequence[Any]:
    """The store's exclusive offers, newest first."""
    return (
        await conn.execute(
            sa.select(store.exclusive_offers)
            .where(store.exclusive_offers.c.merchant_id == merchant_id)
            .order_by(store.exclusive_offers.c.created_at.desc(), store.exclusive_offers.c.id.desc())
        )
    ).all()


async def insert_offer(conn: AsyncConnection, **values: Any) -> Any:
    """A new, active offer with a fresh id; returns its row."""
    return (
        await conn.execute(
            sa.insert(store.exclusive_offers)
            .values(id=f"ex_{uuid.uuid4().hex[:12]}", is_active=True, **values)
            .returning(*store.exclusive_offers.c)
        )
    ).one()


async def exclusive_figures(conn: AsyncConnection, merchant_id: str) -> tuple[int, int, int]:
    """(activations, completions, distinct drivers) of the store's exclusive sessions, all time."""
    figures = (
        await conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.count().filter(store.exclusive_sessions.c.status == COMPLETED),
                sa.func.count(sa.distinct(store.exclusive_sessions.c.driver_id)),
            ).where(store.exclusive_sessions.c.merchant_id == merchant_id)
        )
    ).one()
    activations, completes, drivers = (int(value) for value in figures)
    return activations, completes, drivers


async def existing_session_id(conn: AsyncConnection, driver_id: str, key: uuid.UUID | None) -> uuid.UUID | None:
    """The session of this driver's key, else the driver's ACTIVE session."""
    if key is not None:
        by_key = (
            await conn.execute(
                sa.select(store.exclusive_sessions.c.id).where(
                    store.exclusive_sessions.c.driver_id == driver_id,
                    store.exclusive_sessions.c.idempotency_key == key,
                )
            )
        ).scalar_one_or_none()
        if by_key is not None:
            return cast(uuid.UUID, by_key)
    active: uuid.UUID | None = (
        await conn.execute(
            sa.select(store.exclusive_sessions.c.id).where(
                store.exclusive_sessions.c.driver_id == driver_id, store.exclusive_sessions.c.status == ACTIVE
            )
        )
    ).scalar_one_or_none()
    return active


async def latest_shown_session(
    conn: AsyncConnection, driver_id: str, now: datetime.datetime, *, include_expired: bool
) -> Any:
    """The driver's ACTIVE session, as `_view` shows it; with `include_expired` else the latest one that expired
    within the last window."""
    shown = store.exclusive_sessions.c.status == ACTIVE
    if include_expired:
        # Also a session that expired within the last window, whoever marked it (this read or the worker).
        shown = sa.or_(
            shown,
            sa.and_(
                store.exclusive_sessions.c.status == EXPIRED,
                store.exclusive_sessions.c.expires_at > now - domain.EXCLUSIVE_DURATION,
            ),
        )
    query = (
        _view()
        .where(store.exclusive_sessions.c.driver_id == driver_id, shown)
        .order_by(
            sa.case((store.exclusive_sessions.c.status == ACTIVE, 0), else_=1),
            store.exclusive_sessions.c.activated_at.desc(),
        )
        .limit(1)
    )
    return (await conn.execute(query)).first()


async def expire_drivers_lapsed_session(conn: AsyncConnection, driver_id: str, now: datetime.datetime) -> None:
    """An ACTIVE session of the driver past its window is EXPIRED (it no longer holds the one active slot)."""
    await conn.execute(
        sa.update(store.exclusive_sessions)
        .where(
            store.exclusive_sessions.c.driver_id == driver_id,
            store.exclusive_sessions.c.status == ACTIVE,
            store.exclusive_sessions.c.expires_at <= now,
        )
        .values(status=EXPIRED, ended_at=store.exclusive_sessions.c.expires_at)
    )


async def live_offer_for_update(conn: AsyncConnection, merchant_id: str) -> Any:
    """The store's first active offer, locked (activations of one offer take turns under its caps), or None."""
    return (
        await conn.execute(
            sa.select(store.exclusive_offers)
            .where(store.exclusive_offers.c.merchant_id == merchant_id, store.exclusive_offers.c.is_active)
            .order_by(store.exclusive_offers.c.created_at, store.exclusive_offers.c.id)
            .limit(1)
            .with_for_update()
        )
    ).first()


async def insert_session(
    conn: AsyncConnection, values: dict[str, Any], offer_id: str | None, now: datetime.datetime
) -> uuid.UUID | None:
    """A new session starting now; None when a concurrent one of the driver (or of the key) holds its place."""
    inserted: uuid.UUID | None = (
        await conn.execute(
            pg_insert(store.exclusive_sessions)
            .values(
                id=uuid.uuid4(),
                # Unique among live sessions: a collision conflicts like a rival activation, and the
                # caller's retry draws another code.
                arrival_code=domain.new_arrival_code(),
                offer_id=offer_id,
                activated_at=now,
                expires_at=now + domain.EXCLUSIVE_DURATION,
                **values,
            )
            .on_conflict_do_nothing()
            .returning(store.exclusive_sessions.c.id)
        )
    ).scalar_one_or_none()
    return inserted


async def sessions_of_offer_since(conn: AsyncConnection, offer_id: str, since: datetime.datetime) -> int:
    """The offer's sessions activated since `since`, canceled ones not counted (the daily cap)."""
    count: int = (
        await conn.execute(
            sa.select(sa.func.count()).where(
                store.exclusive_sessions.c.offer_id == offer_id,
                store.exclusive_sessions.c.activated_at >= since,
                store.exclusive_sessions.c.status != CANCELED,
            )
        )
    ).scalar_one()
    return count


async def running_sessions_of_offer(conn: AsyncConnection, offer_id: str, now: datetime.datetime) -> int:
    """The offer's ACTIVE sessions still within their window (the at-once cap)."""
    count: int = (
        await conn.execute(
            sa.select(sa.func.count()).where(
                store.exclusive_sessions.c.offer_id == offer_id,
                store.exclusive_sessions.c.status == ACTIVE,
                store.exclusive_sessions.c.expires_at > now,
            )
        )
    ).scalar_one()
    return count


async def lock_next_visit_number(conn: AsyncConnection, merchant_id: str, visit_date: datetime.date) -> int:
    """The merchant's next visit number of its local day, under a transaction lock on the merchant's visits."""
    await conn.execute(
        sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(f"merchant-visits:{merchant_id}", 0)))
    )
    number: int = (
        await conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(store.verified_visits.c.visit_number), 0) + 1).where(
                store.verified_visits.c.merchant_id == merchant_id, store.verified_visits.c.visit_date == visit_date
            )
        )
    ).scalar_one()
    return number


async def insert_visit(conn: AsyncConnection, **values: Any) -> Any:
    return (
        await conn.execute(
            sa.insert(store.verified_visits).values(id=uuid.uuid4(), **values).returning(*store.verified_visits.c)
        )
    ).one()


async def staff_session(conn: AsyncConnection, session_id: uuid.UUID) -> Any:
    """The session with its store's name and its offer's title and description, for the store's staff."""
    return (
        await conn.execute(
            sa.select(
                store.exclusive_sessions,
                store.merchants.c.name.label("merchant_name"),
                store.exclusive_offers.c.title.label("offer_title"),
                store.exclusive_offers.c.description,
            )
            .select_from(
                store.exclusive_sessions.join(
                    store.merchants, store.merchants.c.id == store.exclusive_sessions.c.merchant_id
                ).outerjoin(store.exclusive_offers, store.exclusive_offers.c.id == store.exclusive_sessions.c.offer_id)
            )
            .where(store.exclusive_sessions.c.id == session_id)
        )
    ).first()


async def session_by_arrival_code_for_update(conn: AsyncConnection, code: str) -> Any:
    """The live session with this arrival code, else the latest one that had it (used, lapsed or ended), locked."""
    return (
        await conn.execute(
            sa.select(store.exclusive_sessions)
            .where(store.exclusive_sessions.c.arrival_code == code)
            .order_by(
                sa.case((store.exclusive_sessions.c.status == ACTIVE, 0), else_=1),
                store.exclusive_sessions.c.activated_at.desc(),
            )
            .limit(1)
            .with_for_update()
        )
    ).first()


async def session_exists(conn: AsyncConnection, session_id: uuid.UUID) -> bool:
    known = (
        await conn.execute(sa.select(store.exclusive_sessions.c.id).where(store.exclusive_sessions.c.id == session_id))
    ).first()
    return known is not None


async def cancel_live_sessions(
    conn: AsyncConnection,
    which: sa.ColumnElement[bool],
    now: datetime.datetime,
    *,
    reason: str,
    canceled_by: str | None,
) -> Sequence[uuid.UUID]:
    """Cancels the ACTIVE sessions `which` selects; returns their ids."""
    canceled: Sequence[uuid.UUID] = (
        (
            await conn.execute(
                sa.update(store.exclusive_sessions)
                # A session past its window expired, whatever the sweep has not marked yet.
                .where(which, store.exclusive_sessions.c.status == ACTIVE, store.exclusive_sessions.c.expires_at > now)
                .values(status=CANCELED, cancel_reason=reason, canceled_by=canceled_by, ended_at=now)
                .returning(store.exclusive_sessions.c.id)
            )
        )
        .scalars()
        .all()
    )
    return canceled


async def update_offer(conn: AsyncConnection, merchant_id: str, offer_id: str, changes: dict[str, Any]) -> Any:
    """The store's offer after `changes` (as it is, when there are none); None when the store has no such offer."""
    which = sa.and_(store.exclusive_offers.c.id == offer_id, store.exclusive_offers.c.merchant_id == merchant_id)
    if changes:
        query: Any = (
            sa.update(store.exclusive_offers)
            .where(which)
            .values(**changes, updated_at=sa.func.now())
            .returning(*store.exclusive_offers.c)
        )
    else:
        query = sa.select(store.exclusive_offers).where(which)
    return (await conn.execute(query)).first()


def _same_activation(stored: Any, start: ExclusiveStart) -> bool:
    """Whether a replayed key asks for what it started: the same charger and merchant (by id or place id)."""
    merchant = (
        stored.merchant_id == start.merchant_id
        if start.merchant_id
        else (stored.merchant_place_id == start.merchant_place_id)
    )
    return bool(merchant and stored.charger_id == start.charger_id)


class Exclusives:
    """Exclusive offers: drivers start, verify and complete sessions; the store's staff look one up and redeem
    arrival codes; admins cancel; owners configure their offers and read their figures."""

    def __init__(
        self,
        engine: AsyncEngine,
        reads: AsyncEngine,
        chargers: ChargerDirectory,
    ) -> None:
        self.engine = engine
        self.reads = reads
        # The sessions service's chargers: CHARGER_NOT_FOUND or SESSIONS_UNAVAILABLE when it cannot give one.
        self.chargers = chargers

    # --- drivers ------------------------------------------------------------------------------------------

    async def activate(self, driver_id: str, key: uuid.UUID | None, start: ExclusiveStart) -> Activated:
        """Starts the driver's session of the store's offer at the charger (within 150 m of it, under the offer's
        caps); their running session, or the one their key started, is the answer when there is one."""
        now = _now()
        async with self.reads.connect() as conn:
            if key is not None:
                replayed = await session_by_key(conn, driver_id, key)
                if replayed is not None:
                    if not _same_activation(replayed, start):
                        raise Aborted(
                            Reason.IDEMPOTENCY_KEY_REUSED,
                            "this idempotency key started an exclusive at another merchant or charger",
                            {"exclusive_session_id": str(replayed.id)},
                        )
                    return await self._activated(replayed, now, idempotent=True)
            # At most one ACTIVE session per driver: a running one is the answer.
            running = await active_session(conn, driver_id)
            if running is not None and running.expires_at > now:
                return await self._activated(running, now, idempotent=True)
            merchant_id: str | None = start.merchant_id
            if not merchant_id:
                merchant_id = await merchant_id_by_place(conn, start.merchant_place_id)
            if merchant_id is None:
                raise merchant_not_found(start.merchant_place_id)
            merchant = await active_merchant(conn, merchant_id)
            link = await charger_link(conn, merchant.id, start.charger_id)
        charger: Charger | None = None
        if link is None:
            # An offer belongs to the chargers the store is linked to (the ones whose drivers see it); elsewhere
            # the 150 m rule would measure from a charger the store has nothing to do with.
            await self.chargers.charger(start.charger_id)  # an unknown charger is CHARGER_NOT_FOUND
            raise FailedPrecondition(
                Reason.NO_CHARGER_LINK,
                "this merchant's exclusive offers are not available at this charger",
                {"merchant_id": merchant.id, "charger_id": start.charger_id},
            )
        distance_m = great_circle_m(start.lat, start.lng, link.charger_lat, link.charger_lng)
        if not domain.within_exclusive_radius(distance_m):
            raise FailedPrecondition(
                Reason.OUTSIDE_RADIUS,
                f"you are {distance_m:.1f} m from the charger; exclusive offers start within "
                f"{domain.EXCLUSIVE_RADIUS_M:g} m",
                {"distance_m": f"{distance_m:.1f}", "radius_m": f"{domain.EXCLUSIVE_RADIUS_M:g}"},
            )
        values = {
            "driver_id": driver_id,
            "merchant_id": merchant.id,
            "charger_id": start.charger_id,
            "status": ACTIVE,
            "idempotency_key": key,
            "lat": start.lat,
            "lng": start.lng,
            "accuracy_m": start.accuracy_m,
            "distance_m": distance_m,
            "intent": start.intent,
            "party_size": start.party_size,
            "needs_power_outlet": start.needs_power_outlet,
            "is_to_go": start.is_to_go,
        }
        for _ in range(_ACTIVATE_ATTEMPTS):
            session_id, created = await self._start_exclusive(values, merchant.time_zone, key, now)
            if session_id is not None:
                async with self.reads.connect() as conn:
                    row = await session_view(conn, session_id)
                return await self._activated(row, now, idempotent=not created, charger=charger)
        # The conflicting session changed state between our insert and our read, three times over.
        raise Unavailable(Reason.CONFLICT_RETRY, "a concurrent change conflicted; retry")

    async def _start_exclusive(
        self, values: dict[str, Any], time_zone: str, key: uuid.UUID | None, now: datetime.datetime
    ) -> tuple[uuid.UUID | None, bool]:
        """Inserts the session under the offer's caps: (id, True) when created, (the existing session's id,
        False) when a concurrent activation of the driver (or the same key) won, (None, False) when that
        session is gone again."""
        driver_id = values["driver_id"]
        async with self.engine.begin() as conn:
            # An ACTIVE session past its window no longer holds the driver's one active slot.
            await expire_drivers_lapsed_session(conn, driver_id, now)
            offer = await live_offer_for_update(conn, values["merchant_id"])
            # Re-read under the offer lock: a concurrent activation of this driver may have committed meanwhile.
            existing = await existing_session_id(conn, driver_id, key)
            if existing is not None:
                return existing, False
            if offer is not None:
                await _check_offer_caps(conn, offer, time_zone, now)
            inserted = await insert_session(conn, values, offer.id if offer is not None else None, now)
            if inserted is not None:
                return inserted, True
            # The insert waited for a concurrent one of this driver (or key) and yielded to it.
            return await existing_session_id(conn, driver_id, key), False

    async def _activated(
        self,
        row: Any,
        now: datetime.datetime,
        *,
        idempotent: bool,
        charger: Charger | None = None,
    ) -> Activated:
        status = row.status
        if status == ACTIVE and row.expires_at <= now:  # a replayed key of a session past its window
            async with self.engine.begin() as conn:
                await _expire_session(conn, row.id)
            status = EXPIRED
        return Activated(await self._shown(row, now, status=status, charger=charger), idempotent)

    async def _shown(
        self,
        row: Any,
        now: datetime.datetime,
        *,
        status: int,
        charger: Charger | None = None,
    ) -> ShownSession:
        if row.link_walk_distance_m is not None:
            walk_m, walk_s, charger_name = row.link_walk_distance_m, row.link_walk_time_s, row.link_charger_name
        else:
            # Not linked: estimated from the charger (or, when the directory does not answer, from where the
            # driver activated, which is within 150 m of it).
            if charger is None:
                charger = await self._directory_charger_or_none(row.charger_id)
            origin = (charger.lat, charger.lng) if charger is not None else (row.lat, row.lng)
            walk_m, walk_s = domain.walk_estimate(origin, (row.merchant_lat, row.merchant_lng))
            charger_name = charger.name if charger is not None else ""
        return ShownSession(
            row=row,
            status=status,
            remaining_seconds=domain.remaining_seconds(row.expires_at, now) if status == ACTIVE else 0,
            walk_m=walk_m,
            walk_minutes=domain.walk_minutes(walk_s),
            charger_name=charger_name,
        )

    async def _directory_charger_or_none(self, charger_id: str) -> Charger | None:
        """The charger for display only: None when unknown or the directory does not answer."""
        try:
            return await self.chargers.charger(charger_id)
        except (NotFound, Unavailable):
            return None

    async def verify_visit(
        self, driver_id: str, session_id: str, lat: float | None, lng: float | None
    ) -> VerifiedVisit:
        """Records the visit of the driver's live session at (lat, lng) — where they activated when not given —
        and completes the session; a session verified before answers with its visit."""
        session_uuid = uuid.UUID(session_id)
        now = _now()
        async with self.engine.begin() as conn:
            row = await drivers_session_for_update(conn, session_uuid, driver_id)
            if row is None:
                raise _session_not_found(session_id)
            merchant = await load_merchant(conn, row.merchant_id)
            visit = await visit_of(conn, session_uuid)
            if visit is not None:
                return VerifiedVisit(visit, merchant.name, earlier=True)
            where = (row.lat if lat is None else lat, row.lng if lng is None else lng)
            visit = await _complete_with_visit(conn, row, merchant, where, now, also={})
        if visit is None:  # the EXPIRED mark is committed before the refusal
            raise _expired(session_id)
        return VerifiedVisit(visit, merchant.name, earlier=False)

    async def complete(self, driver_id: str, session_id: str, feedback: dict[str, Any] | None) -> bool:
        """Completes the driver's live session with their feedback (a completed one takes new feedback); True
        when it was completed before."""
        session_uuid = uuid.UUID(session_id)
        now = _now()
        async with self.engine.begin() as conn:
            row = await drivers_session_for_update(conn, session_uuid, driver_id)
            if row is None:
                raise _session_not_found(session_id)
            lapsed = row.status == ACTIVE and row.expires_at <= now
            if lapsed:
                await _expire_session(conn, session_uuid)
            elif row.status == ACTIVE:
                await complete_session(conn, session_uuid, now, feedback=feedback)
            elif row.status == COMPLETED:
                if feedback is not None:
                    await set_feedback(conn, session_uuid, feedback)
            elif row.status == EXPIRED:
                raise _expired(session_id)
            else:
                raise _not_active(session_id, row.status)
        if lapsed:
            raise _expired(session_id)
        return bool(row.status == COMPLETED)

    async def shown_session(self, driver_id: str, *, include_expired: bool) -> ShownSession | None:
        """The driver's ACTIVE session; with `include_expired` else the latest one that expired within the last
        window. None when there is none."""
        now = _now()
        async with self.reads.connect() as conn:
            row = await latest_shown_session(conn, driver_id, now, include_expired=include_expired)
        if row is None:
            return None
        status = row.status
        if status == ACTIVE and row.expires_at <= now:
            async with self.engine.begin() as conn:
                await _expire_session(conn, row.id)
            status = EXPIRED
        if status != ACTIVE and not include_expired:
            return None
        return await self._shown(row, now, status=status)

    # --- the store's staff ----------------------------------------------------------------------------------

    async def staff_view(self, session_id: str) -> StaffView | None:
        """The session for the store's staff; None when unknown."""
        async with self.reads.connect() as conn:
            row = await staff_session(conn, uuid.UUID(session_id))
        if row is None:
            return None
        now = _now()
        status = row.status
        if status == ACTIVE and row.expires_at <= now:
            status = EXPIRED  # the read says so; the worker (or the driver's next read) writes it
        remaining = domain.remaining_seconds(row.expires_at, now) if status == ACTIVE else 0
        return StaffView(row, status, remaining)

    async def redeem_check_in(self, typed_code: str, order_number: str, order_total_cents: int) -> CheckIn:
        """Checks the driver in by the arrival code staff typed (with the order, when given): records the visit
        and completes the session; a code redeemed before answers with its visit."""
        code = domain.normalized_arrival_code(typed_code)
        now = _now()
        async with self.engine.begin() as conn:
            # The live session with this code, else the latest one that had it (used, lapsed or ended).
            row = await session_by_arrival_code_for_update(conn, code)
            if row is None:
                raise NotFound(Reason.CHECK_IN_CODE_UNKNOWN, "no exclusive has this arrival code")
            visit = await visit_of(conn, row.id)
            if row.checked_in_at is not None or visit is not None:
                return CheckIn(str(row.id), visit, redeemed=False)
            merchant = await load_merchant(conn, row.merchant_id)
            checked_in = {
                "checked_in_at": now,
                "check_in_order_number": order_number or None,
                "check_in_order_total_cents": order_total_cents or None,
            }
            visit = await _complete_with_visit(conn, row, merchant, (row.lat, row.lng), now, also=checked_in)
        if visit is None:  # the EXPIRED mark is committed before the refusal
            raise _expired(str(row.id))
        return CheckIn(str(row.id), visit, redeemed=True)

    # --- admins -------------------------------------------------------------------------------------------

    async def cancel(
        self, admin_id: str | None, reason: str, *, exclusive_session_id: str = "", charger_id: str = ""
    ) -> list[str]:
        """Cancels the live session `exclusive_session_id`, or every live session at `charger_id` (one of the two
        is given); returns the canceled sessions' ids, sorted."""
        target = "exclusive_session_id" if exclusive_session_id else "charger_id"
        now = _now()
        async with self.engine.begin() as conn:
            if exclusive_session_id:
                session_id = uuid.UUID(exclusive_session_id)
                if not await session_exists(conn, session_id):
                    raise _session_not_found(exclusive_session_id)
                which = store.exclusive_sessions.c.id == session_id
            else:
                which = store.exclusive_sessions.c.charger_id == charger_id
            canceled = await cancel_live_sessions(conn, which, now, reason=reason, canceled_by=admin_id)
        ids = sorted(str(session_id) for session_id in canceled)
        log.info(
            "exclusive sessions canceled by an admin",
            extra={
                "audit": "exclusive.cancel",
                "admin_id": admin_id,
                "reason": reason,
                "target": target,
                "exclusive_session_id": exclusive_session_id,
                "charger_id": charger_id,
                "canceled_count": len(ids),
                "exclusive_session_ids": ids,
            },
        )
        return ids

    # --- merchants: offer configuration -------------------------------------------------------------------

    async def offers(self, merchant_id: str, caller: Caller) -> Sequence[Any]:
        """The store's offers, newest first."""
        async with self.reads.connect() as conn:
            await owned_merchant(conn, merchant_id, caller)
            return await merchant_offers(conn, merchant_id)

    async def create_offer(
        self,
        merchant_id: str,
        caller: Caller,
        *,
        title: str,
        description: str,
        daily_cap: int,
        session_cap: int,
        eligibility: str,
    ) -> Any:
        """A new, active offer of the store (linked to a charger at least); `eligibility` "" is charging only."""
        async with self.engine.begin() as conn:
            await owned_merchant(conn, merchant_id, caller, write=True)
            if not await has_charger_link(conn, merchant_id):
                raise FailedPrecondition(
                    Reason.NO_CHARGER_LINK,
                    "an exclusive offer needs the merchant linked to at least one charger",
                    {"merchant_id": merchant_id},
                )
            return await insert_offer(
                conn,
                merchant_id=merchant_id,
                title=title,
                description=description,
                daily_cap=daily_cap,
                session_cap=session_cap,
                eligibility=eligibility or DEFAULT_ELIGIBILITY,
            )

    async def change_offer(self, merchant_id: str, caller: Caller, offer_id: str, changes: OfferChanges) -> Any:
        """The store's offer after `changes`; EXCLUSIVE_OFFER_NOT_FOUND when the store has no such offer."""
        values = {name: value for name, value in dataclasses.asdict(changes).items() if value is not None}
        async with self.engine.begin() as conn:
            await owned_merchant(conn, merchant_id, caller, write=True)
            row = await update_offer(conn, merchant_id, offer_id, values)
        if row is None:
            raise NotFound(
                Reason.EXCLUSIVE_OFFER_NOT_FOUND,
                "no exclusive offer with that id at this merchant",
                {"merchant_id": merchant_id, "exclusive_id": offer_id},
            )
        return row

    async def analytics(self, merchant_id: str, caller: Caller) -> OfferAnalytics:
        async with self.reads.connect() as conn:
            await owned_merchant(conn, merchant_id, caller)
            activations, completes, drivers = await exclusive_figures(conn, merchant_id)
        return OfferAnalytics(
            activations=activations,
            completes=completes,
            unique_drivers=drivers,
            completion_rate=round(completes * 100 / activations, 2) if activations else 0.0,
        )


async def _check_offer_caps(conn: AsyncConnection, offer: Any, time_zone: str, now: datetime.datetime) -> None:
    """EXCLUSIVE_CAP_REACHED when the offer's daily or at-once cap is used up. Runs under the offer's lock."""
    if offer.daily_cap > 0:
        today = await sessions_of_offer_since(conn, offer.id, _local_day_start(now, time_zone))
        if today >= offer.daily_cap:
            raise ResourceExhausted(
                Reason.EXCLUSIVE_CAP_REACHED,
                "today's exclusive offers at this merchant are all taken",
                {"offer_id": offer.id, "cap": "daily", "daily_cap": str(offer.daily_cap)},
            )
    if offer.session_cap > 0:
        running = await running_sessions_of_offer(conn, offer.id, now)
        if running >= offer.session_cap:
            raise ResourceExhausted(
                Reason.EXCLUSIVE_CAP_REACHED,
                "this merchant's exclusive offer is fully taken right now",
                {"offer_id": offer.id, "cap": "session", "session_cap": str(offer.session_cap)},
            )


async def _complete_with_visit(
    conn: AsyncConnection,
    row: Any,
    merchant: Any,
    where: tuple[float, float],
    now: datetime.datetime,
    *,
    also: dict[str, Any],
) -> Any:
    """Records the visit of a live session and completes it (with `also`, more columns of the session).
    None when its window is over: the EXPIRED mark is written, and the caller refuses after the commit."""
    if merchant.status != MERCHANT_ACTIVE:
        # A store that paused (or was suspended) since the activation takes no new visits.
        raise FailedPrecondition(
            Reason.MERCHANT_NOT_ACTIVE, "the merchant is not taking Nerava visits now", {"merchant_id": merchant.id}
        )
    if row.status == ACTIVE and row.expires_at <= now:
        await _expire_session(conn, row.id)
        return None
    if row.status == EXPIRED:
        raise _expired(str(row.id))
    if row.status != ACTIVE:
        raise _not_active(str(row.id), row.status)
    visit = await _record_verified_visit(conn, row, merchant, where, now)
    await complete_session(conn, row.id, now, **also)
    return visit


async def _record_verified_visit(
    conn: AsyncConnection, session: Any, merchant: Any, where: tuple[float, float], now: datetime.datetime
) -> Any:
    """The merchant's next visit of its local day, numbered under a lock on the merchant."""
    visit_date = now.astimezone(ZoneInfo(merchant.time_zone)).date()
    number = await lock_next_visit_number(conn, merchant.id, visit_date)
    code = domain.verification_code(domain.region_code(merchant.zone_slug), merchant.short_code, number)
    return await insert_visit(
        conn,
        exclusive_session_id=session.id,
        merchant_id=merchant.id,
        driver_id=session.driver_id,
        visit_date=visit_date,
        visit_number=number,
        verification_code=code,
        lat=where[0],
        lng=where[1],
        verified_at=now,
    )


# --- background -----------------------------------------------------------------------------------------------


async def expire_due_exclusives(engine: AsyncEngine, batch: int = EXPIRE_BATCH) -> int:
    """Marks up to `batch` ACTIVE sessions past their window EXPIRED; returns how many. Rows another replica is
    changing are skipped (it expires them, or they were completed or canceled)."""
    due = (
        sa.select(store.exclusive_sessions.c.id)
        .where(store.exclusive_sessions.c.status == ACTIVE, store.exclusive_sessions.c.expires_at <= sa.func.now())
        .order_by(store.exclusive_sessions.c.expires_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    async with engine.begin() as conn:
        result = await conn.execute(
            sa.update(store.exclusive_sessions)
            .where(store.exclusive_sessions.c.id.in_(due), store.exclusive_sessions.c.status == ACTIVE)
            .values(status=EXPIRED, ended_at=store.exclusive_sessions.c.expires_at)
        )
    return int(result.rowcount or 0)


async def expire_exclusives(engine: AsyncEngine, stop: asyncio.Event, every_s: float) -> None:
    """Expires ACTIVE sessions past their window, at start and every `every_s` until `stop`. Safe on every
    replica at once (conditional updates, locked rows skipped)."""
    while not stop.is_set():
        try:
            while await expire_due_exclusives(engine) >= EXPIRE_BATCH and not stop.is_set():
                pass  # more than one batch was due
        except Exception:
            log.exception("expiring exclusive sessions failed; will try again")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)


__all__ = ["Exclusives", "expire_due_exclusives", "expire_exclusives"]
