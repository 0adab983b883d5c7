"""Merchant records and what drivers see of them: registering a store and its QR token (admin), store changes
(owner or admin), charger links with walking estimates, the "while you charge" list, a merchant's details
screen, and what a scanned checkout QR code is."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import secrets
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from nerava.merchants.v1 import merchants_pb2 as pb
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import audit
from services.common.context import Caller
from services.common.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from services.common.geo import great_circle_m
from services.merchants import domain, store
from services.merchants.favorites import amenity_counts
from services.merchants.peers import ChargerDirectory, NovaBalances
from services.merchants.reasons import Reason
from services.merchants.records import (
    ADMIN,
    insert_merchant,
    merchant_not_found,
    open_status,
    opening_periods,
    owned_merchant,
    periods_json,
    perk_of,
)

QR_TOKEN_BYTES = 32
METRES_PER_MILE = 1609.344


def new_merchant_id() -> str:
    return f"m_{uuid.uuid4().hex[:12]}"


def new_qr_token() -> str:
    """32 random bytes, base64url without padding: 43 characters."""
    return base64.urlsafe_b64encode(secrets.token_bytes(QR_TOKEN_BYTES)).rstrip(b"=").decode()


def _check_time_zone(field: str, name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument([(field, f"unknown IANA time zone {name!r}")], reason=Reason.UNKNOWN_TIME_ZONE) from None


def _local_day_start(time_zone: Any) -> Any:
    """SQL: the start of today in the store's time zone ("today" in the counts a store shows is its own day)."""
    return sa.func.timezone(time_zone, sa.func.date_trunc("day", sa.func.timezone(time_zone, sa.func.now())))


# --- queries (the tables are in store.py) -------------------------------------------------------------------


async def merchant_by_create_request(conn: AsyncConnection, request_id: uuid.UUID, *, required: bool = False) -> Any:
    """The store CreateMerchant made for this request id; None when there is none (`required`: it must be)."""
    result = await conn.execute(sa.select(store.merchants).where(store.merchants.c.create_request_id == request_id))
    return result.one() if required else result.first()


async def update_merchant(conn: AsyncConnection, merchant_id: str, changes: dict[str, Any]) -> Any:
    return (
        await conn.execute(
            sa.update(store.merchants)
            .where(store.merchants.c.id == merchant_id)
            .values(**changes, updated_at=sa.func.now())
            .returning(*store.merchants.c)
        )
    ).one()


async def upsert_charger_link(conn: AsyncConnection, merchant_id: str, charger_id: str, values: dict[str, Any]) -> None:
    """Links the store to the charger (or changes the link) with `values`; a primary link demotes the charger's
    previous primary one."""
    # Links of one charger change one at a time (the primary flag is unique per charger).
    await conn.execute(
        sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended("charger-links:" + charger_id, 0)))
    )
    if values["is_primary"]:
        # One featured merchant per charger: linking a new primary demotes the old one.
        await conn.execute(
            sa.update(store.charger_links)
            .where(store.charger_links.c.charger_id == charger_id, store.charger_links.c.is_primary)
            .values(is_primary=False)
        )
    await conn.execute(
        pg_insert(store.charger_links)
        .values(merchant_id=merchant_id, charger_id=charger_id, **values)
        .on_conflict_do_update(
            index_elements=[store.charger_links.c.merchant_id, store.charger_links.c.charger_id], set_=values
        )
    )


async def merchant_by_id_or_place(conn: AsyncConnection, merchant_id_or_place: str) -> Any:
    """The store by its id or its Google place id (the app sends either), or None."""
    return (
        await conn.execute(
            sa.select(store.merchants).where(
                sa.or_(
                    store.merchants.c.id == merchant_id_or_place,
                    store.merchants.c.place_id == merchant_id_or_place,
                )
            )
        )
    ).first()


async def exclusives_today(conn: AsyncConnection, merchant_id: str, time_zone: str) -> tuple[int, int]:
    """(exclusive activations, verified visits) at the store since the start of its local day."""
    activations = (
        await conn.execute(
            sa.select(sa.func.count()).where(
                store.exclusive_sessions.c.merchant_id == merchant_id,
                store.exclusive_sessions.c.activated_at >= _local_day_start(sa.literal(time_zone)),
            )
        )
    ).scalar_one()
    visits = (
        await conn.execute(
            sa.select(sa.func.count()).where(
                store.verified_visits.c.merchant_id == merchant_id,
                store.verified_visits.c.verified_at >= _local_day_start(sa.literal(time_zone)),
            )
        )
    ).scalar_one()
    return activations, visits


async def use_qr_token(conn: AsyncConnection, qr_token: str) -> Any:
    """The ACTIVE store with this QR token, its last use stamped now; None when no live store has it."""
    return (
        await conn.execute(
            sa.update(store.merchants)
            .where(store.merchants.c.qr_token == qr_token, store.merchants.c.status == pb.MERCHANT_STATUS_ACTIVE)
            .values(qr_last_used_at=sa.func.now())
            .returning(*store.merchants.c)
        )
    ).first()


async def linked_merchants(conn: AsyncConnection, charger_ids: list[str]) -> list[Any]:
    """The active merchants linked to the chargers, with their walk, today's counts and first active offer."""
    day_start = _local_day_start(store.merchants.c.time_zone)
    activations = (
        sa.select(sa.func.count())
        .where(
            store.exclusive_sessions.c.merchant_id == store.merchants.c.id,
            store.exclusive_sessions.c.activated_at >= day_start,
        )
        .scalar_subquery()
    )
    visits = (
        sa.select(sa.func.count())
        .where(
            store.verified_visits.c.merchant_id == store.merchants.c.id,
            store.verified_visits.c.verified_at >= day_start,
        )
        .scalar_subquery()
    )
    offer = (
        sa.select(store.exclusive_offers.c.title, store.exclusive_offers.c.description)
        .where(store.exclusive_offers.c.merchant_id == store.merchants.c.id, store.exclusive_offers.c.is_active)
        .order_by(store.exclusive_offers.c.created_at)
        .limit(1)
        .lateral()
    )
    query = (
        sa.select(
            store.merchants,
            store.charger_links.c.charger_id,
            store.charger_links.c.walk_distance_m,
            store.charger_links.c.walk_time_s,
            store.charger_links.c.is_primary,
            activations.label("activations"),
            visits.label("visits"),
            offer.c.title.label("offer_title"),
            offer.c.description.label("offer_description"),
        )
        .select_from(
            store.charger_links.join(
                store.merchants, store.merchants.c.id == store.charger_links.c.merchant_id
            ).outerjoin(offer, sa.true())
        )
        .where(store.charger_links.c.charger_id.in_(charger_ids), store.merchants.c.status == pb.MERCHANT_STATUS_ACTIVE)
    )
    return list((await conn.execute(query)).all())


@dataclasses.dataclass(frozen=True, slots=True)
class NewStore:
    """A store as an admin registers it; an empty time zone is UTC, an unset (0) status ACTIVE."""

    name: str
    category: str
    lat: float
    lng: float
    address: str
    phone: str
    website: str
    place_id: str
    time_zone: str
    opening_periods: Sequence[domain.OpeningPeriod]
    custom_perk_cents: int
    perk_label: str
    status: int
    owner_user_id: str
    zone_slug: str
    logo_url: str
    photo_urls: Sequence[str]


@dataclasses.dataclass(frozen=True, slots=True)
class OpeningHours:
    time_zone: str  # empty: UTC
    periods: Sequence[domain.OpeningPeriod]


@dataclasses.dataclass(frozen=True, slots=True)
class StoreChanges:
    """What an owner or admin changes of a store; None leaves it as it is."""

    name: str | None = None
    category: str | None = None
    address: str | None = None
    phone: str | None = None
    website: str | None = None
    custom_perk_cents: int | None = None
    perk_label: str | None = None
    hours: OpeningHours | None = None
    status: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ChargerLink:
    merchant_id: str
    charger_id: str
    charger_name: str
    walk_distance_m: int
    walk_time_s: int
    is_primary: bool


@dataclasses.dataclass(frozen=True, slots=True)
class ListedMerchant:
    """A merchant on a charger's "while you charge" list: its linked_merchants row and whether it is open now
    (and until when, "" when unknown)."""

    row: Any
    open_now: bool
    open_until: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Moment:
    """How far the driver is from the store, from where they captured the charging intent."""

    distance_miles: float
    label: str


@dataclasses.dataclass(frozen=True, slots=True)
class StoreDetails:
    """A merchant's details screen: the store, its hours today, today's exclusive activations and verified
    visits, its amenity votes (amenity → (up, down)) and the driver's moment (None without a usable session)."""

    row: Any
    perk: domain.Perk
    hours_today: str
    activations_today: int
    verified_visits_today: int
    amenity_votes: dict[str, tuple[int, int]]
    moment: Moment | None


@dataclasses.dataclass(frozen=True, slots=True)
class ScannedCheckout:
    """What a scanned QR code is: the store, its perk, the driver's spendable Nova (None when the scanner is not
    a signed-in driver) and the store's nearest charger link (None when it has none)."""

    row: Any
    perk: domain.Perk
    nova_balance: int | None
    charger_link: Any


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Catalog:
    """The merchant records and what drivers see of them; callers are handed in by the handlers."""

    def __init__(
        self,
        engine: AsyncEngine,
        reads: AsyncEngine,
        chargers: ChargerDirectory,
        nova: NovaBalances,
        *,
        clock: Callable[[], datetime.datetime] = _utc_now,
    ) -> None:
        self._engine = engine
        self._reads = reads
        self._chargers = chargers
        self._nova = nova
        self._clock = clock

    async def create(self, request_id: str, new: NewStore) -> Any:
        """Registers the store once per request id (a retry answers the store the first call made); its row.
        PLACE_ID_TAKEN when another store has its Google place."""
        time_zone = new.time_zone or "UTC"
        _check_time_zone("merchant.hours.time_zone", time_zone)
        create_request_id = uuid.UUID(request_id)
        async with self._engine.begin() as conn:
            existing = await merchant_by_create_request(conn, create_request_id)
            if existing is not None:
                return existing
            values = {
                "id": new_merchant_id(),
                "create_request_id": create_request_id,
                "name": new.name,
                "category": new.category,
                "lat": new.lat,
                "lng": new.lng,
                "address": new.address,
                "phone": new.phone,
                "website": new.website,
                "place_id": new.place_id or None,
                "time_zone": time_zone,
                "opening_periods": periods_json(new.opening_periods),
                "custom_perk_cents": new.custom_perk_cents,
                "recommended_perk_cents": 0,
                "perk_label": new.perk_label,
                "status": new.status or pb.MERCHANT_STATUS_ACTIVE,
                "owner_user_id": new.owner_user_id or None,
                "zone_slug": new.zone_slug,
                "logo_url": new.logo_url,
                "photo_urls": list(new.photo_urls),
                "qr_token": new_qr_token(),
            }
            try:
                await insert_merchant(conn, values)
            except IntegrityError as error:
                if "merchants_place_id" in str(error.orig):
                    raise InvalidArgument(
                        [("merchant.place_id", "another merchant has this place id")], reason=Reason.PLACE_ID_TAKEN
                    ) from None
                # A concurrent create with the same request id: the caller's retry replays it.
                raise Unavailable(Reason.CONFLICT_RETRY, "a concurrent change conflicted; retry") from None
            await audit.record(conn, "merchant.create", f"merchant:{values['id']}", name=new.name)
            return await merchant_by_create_request(conn, create_request_id, required=True)

    async def update(self, caller: Caller, merchant_id: str, changes: StoreChanges) -> tuple[Any, bool]:
        """The caller's store with `changes`; its row after and whether it has Square connected. Only an admin
        suspends a store or reinstates a suspended one (MERCHANT_STATUS_NOT_ALLOWED)."""
        values: dict[str, Any] = {
            name: getattr(changes, name)
            for name in ("name", "category", "address", "phone", "website", "custom_perk_cents", "perk_label")
            if getattr(changes, name) is not None
        }
        if changes.hours is not None:
            time_zone = changes.hours.time_zone or "UTC"
            _check_time_zone("hours.time_zone", time_zone)
            values["time_zone"] = time_zone
            values["opening_periods"] = periods_json(changes.hours.periods)
        if changes.status is not None:
            if changes.status == pb.MERCHANT_STATUS_SUSPENDED and not caller.has_any({ADMIN}):
                raise PermissionDenied(Reason.MERCHANT_STATUS_NOT_ALLOWED, "only an admin suspends a merchant")
            values["status"] = changes.status
        async with self._engine.begin() as conn:
            row = await owned_merchant(conn, merchant_id, caller, write=True, for_update=True)
            if row.status == pb.MERCHANT_STATUS_SUSPENDED and not caller.has_any({ADMIN}) and "status" in values:
                raise PermissionDenied(
                    Reason.MERCHANT_STATUS_NOT_ALLOWED, "a suspended merchant is reinstated by an admin"
                )
            if values:
                row = await update_merchant(conn, merchant_id, values)
            connected = await store.square_connected(conn, row.id)
        return row, connected

    async def link_charger(
        self, caller: Caller, merchant_id: str, charger_id: str, walk: tuple[int, int], *, is_primary: bool
    ) -> ChargerLink:
        """Links the store to a charger of the directory; `walk` is (metres, seconds), 0 for either estimates it
        from the two places."""
        charger = await self._chargers.charger(charger_id)
        async with self._engine.begin() as conn:
            merchant = await owned_merchant(conn, merchant_id, caller, write=True)
            estimated_m, _ = domain.walk_estimate((charger.lat, charger.lng), (merchant.lat, merchant.lng))
            walk_m = walk[0] or estimated_m
            walk_s = walk[1] or round(walk_m / domain.WALK_SPEED_M_PER_S)
            values = {
                "charger_name": charger.name,
                "charger_address": charger.address,
                "charger_network": charger.network_name,
                "charger_lat": charger.lat,
                "charger_lng": charger.lng,
                "walk_distance_m": walk_m,
                "walk_time_s": walk_s,
                "is_primary": is_primary,
            }
            await upsert_charger_link(conn, merchant_id, charger_id, values)
            await audit.record(
                conn, "charger.link", f"merchant:{merchant_id}", charger_id=charger_id, primary=is_primary
            )
        return ChargerLink(merchant_id, charger_id, charger.name, walk_m, walk_s, is_primary)

    async def qr_token(self, caller: Caller, merchant_id: str) -> str:
        """The caller's store's checkout QR token."""
        async with self._reads.connect() as conn:
            token: str = (await owned_merchant(conn, merchant_id, caller)).qr_token
        return token

    # --- drivers ------------------------------------------------------------------------------------------

    async def for_charger(self, charger_id: str, state: str, *, open_only: bool) -> list[ListedMerchant]:
        """The charger's "while you charge" list for the driver's state ("charging" when empty); an unknown
        charger is CHARGER_NOT_FOUND, not an empty list."""
        rows = await self._linked_merchants([charger_id])
        if not rows:
            await self._chargers.charger(charger_id)
        return _ranked(rows, state or "charging", open_only, self._clock())

    async def for_chargers(self, charger_ids: Sequence[str]) -> dict[str, list[ListedMerchant]]:
        """Each charger's list while charging, in the order asked; chargers without merchants left out."""
        rows = await self._linked_merchants(list(charger_ids))
        now = self._clock()
        found = {}
        for charger_id in dict.fromkeys(charger_ids):
            listed = _ranked([r for r in rows if r.charger_id == charger_id], "charging", False, now)
            if listed:
                found[charger_id] = listed
        return found

    async def _linked_merchants(self, charger_ids: list[str]) -> list[Any]:
        async with self._reads.connect() as conn:
            return await linked_merchants(conn, charger_ids)

    async def details(self, merchant_id: str, session_id: str, driver_id: str | None) -> StoreDetails:
        """An active store by its id or Google place id (MERCHANT_NOT_FOUND otherwise), as its details screen
        shows it to `driver_id` (whose intent session `session_id` may give the distance)."""
        now = self._clock()
        async with self._reads.connect() as conn:
            row = await merchant_by_id_or_place(conn, merchant_id)
            if row is None or row.status != pb.MERCHANT_STATUS_ACTIVE:
                raise merchant_not_found(merchant_id)
            activations, visits = await exclusives_today(conn, row.id, row.time_zone)
            votes = await amenity_counts(conn, row.id)
        return StoreDetails(
            row,
            perk_of(row),
            domain.hours_today(opening_periods(row), row.time_zone, now),
            activations,
            visits,
            votes,
            await self._moment(session_id, driver_id, row),
        )

    async def _moment(self, session_id: str, driver_id: str | None, row: Any) -> Moment | None:
        """Distance and label from where the calling driver captured the intent (sessions keeps intent sessions);
        None without a usable session of theirs — the screen still opens."""
        if not session_id:
            return None
        # An unknown or expired session, or sessions not answering: a screen without distance.
        intent = await self._chargers.intent_position(session_id)
        if intent is None or intent.driver_id != driver_id:
            return None  # where a driver stood is theirs: another caller's session id tells nothing
        metres = great_circle_m(intent.lat, intent.lng, row.lat, row.lng)
        return Moment(round(metres / METRES_PER_MILE, 2), domain.moment_label(metres))

    async def scan_qr(self, qr_token: str, driver_id: str | None) -> ScannedCheckout:
        """The live store of a scanned QR code (QR_TOKEN_UNKNOWN otherwise), its last use stamped; with
        `driver_id` (a signed-in driver scanned it) their Nova balance (LEDGER_UNAVAILABLE when the ledger is
        down)."""
        async with self._engine.begin() as conn:
            row = await use_qr_token(conn, qr_token)
            if row is None:
                raise NotFound(Reason.QR_TOKEN_UNKNOWN, "this QR code is not a live Nerava checkout")
            link = await store.nearest_charger_link(conn, row.id)
        balance = None if driver_id is None else await self._nova.balance(driver_id)
        return ScannedCheckout(row, perk_of(row), balance, link)


def _ranked(rows: list[Any], state: str, open_only: bool, now: datetime.datetime) -> list[ListedMerchant]:
    """One charger's linked merchants as the "while you charge" screen lists them (domain.rank_for_charger)."""
    by_id = {row.id: row for row in rows}
    status = {row.id: open_status(row, now) for row in rows}
    candidates = [
        domain.NearbyMerchant(row.id, row.is_primary, status[row.id][0], row.walk_time_s, perk_of(row).cents)
        for row in rows
        if status[row.id][0] or not open_only
    ]
    return [
        ListedMerchant(by_id[chosen.merchant_id], *status[chosen.merchant_id])
        for chosen in domain.rank_for_charger(candidates, state)
    ]


__all__ = ["Catalog"]
