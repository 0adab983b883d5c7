"""Merchant records and what drivers see of them: registering a store and its QR token (admin), store changes
(owner or admin), charger links with walking estimates, the "while you charge" list, a merchant's details
screen, and what a scanned checkout QR code is."""

from __future__ import annotations

import base64
import datetime
import secrets
import uuid
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc
import sqlalchemy as sa
from google.protobuf import struct_pb2
from nerava.ledger.v1 import ledger_pb2
from nerava.merchants.v1 import merchants_pb2 as pb
from nerava.sessions.v1 import sessions_pb2
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common import audit
from services.common.context import current_caller
from services.common.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from services.common.geo import great_circle_m
from services.common.http_body import json_array
from services.common.interceptors import BY_AN_ADMIN, PUBLIC_DATA, Access
from services.common.outbox import DEAD_LETTER_ACCESS, dead_letter_message, dead_letters, replay_dead_letters
from services.merchants import domain, store
from services.merchants.favorites import amenities_message, amenity_counts
from services.merchants.reasons import Reason
from services.merchants.records import (
    ADMIN,
    DRIVER,
    MERCHANT,
    STORE,
    Resources,
    active_merchant,
    checkout_url,
    insert_merchant,
    is_admin,
    merchant_message,
    merchant_not_found,
    open_status,
    opening_periods,
    owned_merchant,
    periods_json,
    perk_of,
)

ACCESS: dict[str, Access] = {
    "CreateMerchant": Access.role(ADMIN).not_owned(BY_AN_ADMIN),
    "UpdateMerchant": Access.role(MERCHANT, ADMIN).owned(STORE),
    "LinkCharger": Access.role(ADMIN).not_owned(BY_AN_ADMIN),
    "GetCheckoutQr": Access.role(MERCHANT, ADMIN).owned(STORE),
    "GetMerchant": Access.anyone().not_owned(PUBLIC_DATA),
    "ListMerchantsForCharger": Access.anyone().not_owned(PUBLIC_DATA),
    # The printed QR code's token is the capability: whoever scanned the sign at the counter.
    "ResolveCheckoutQr": Access.anyone().not_owned("the printed QR code's token is the capability"),
    "ListAuditEntries": Access.service_only(),
    **DEAD_LETTER_ACCESS,
    "BatchListChargerMerchants": Access.service_only(),
}

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


class CatalogRpcs(Resources):
    async def CreateMerchant(self, request: pb.CreateMerchantRequest, context: Any) -> pb.CreateMerchantResponse:
        given = request.merchant
        time_zone = given.hours.time_zone or "UTC"
        _check_time_zone("merchant.hours.time_zone", time_zone)
        request_id = uuid.UUID(request.request_id)
        status = given.status or pb.MERCHANT_STATUS_ACTIVE
        async with self.engine.begin() as conn:
            existing = await merchant_by_create_request(conn, request_id)
            if existing is None:
                values = {
                    "id": new_merchant_id(),
                    "create_request_id": request_id,
                    "name": given.name,
                    "category": given.category,
                    "lat": given.lat,
                    "lng": given.lng,
                    "address": given.address,
                    "phone": given.phone,
                    "website": given.website,
                    "place_id": given.place_id or None,
                    "time_zone": time_zone,
                    "opening_periods": periods_json(given.hours.periods),
                    "custom_perk_cents": given.perk.custom_perk_cents,
                    "recommended_perk_cents": 0,
                    "perk_label": given.perk.label,
                    "status": status,
                    "owner_user_id": given.owner_user_id or None,
                    "zone_slug": given.zone_slug,
                    "logo_url": given.logo_url,
                    "photo_urls": list(given.photo_urls),
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
                await audit.record(conn, "merchant.create", f"merchant:{values['id']}", name=given.name)
                existing = await merchant_by_create_request(conn, request_id, required=True)
        return pb.CreateMerchantResponse(
            merchant=merchant_message(existing, owner_view=True),
            qr_token=existing.qr_token,
            qr_url=checkout_url(self.settings, existing.qr_token),
        )

    async def UpdateMerchant(self, request: pb.UpdateMerchantRequest, context: Any) -> pb.UpdateMerchantResponse:
        caller = current_caller()
        changes: dict[str, Any] = {}
        for name in ("name", "category", "address", "phone", "website", "custom_perk_cents", "perk_label"):
            if request.HasField(name):
                changes[name] = getattr(request, name)
        if request.HasField("hours"):
            time_zone = request.hours.time_zone or "UTC"
            _check_time_zone("hours.time_zone", time_zone)
            changes["time_zone"] = time_zone
            changes["opening_periods"] = periods_json(request.hours.periods)
        if request.HasField("status"):
            if request.status == pb.MERCHANT_STATUS_SUSPENDED and not caller.has_any({ADMIN}):
                raise PermissionDenied(Reason.MERCHANT_STATUS_NOT_ALLOWED, "only an admin suspends a merchant")
            changes["status"] = request.status
        async with self.engine.begin() as conn:
            row = await owned_merchant(conn, request.merchant_id, caller, write=True, for_update=True)
            if row.status == pb.MERCHANT_STATUS_SUSPENDED and not caller.has_any({ADMIN}) and "status" in changes:
                raise PermissionDenied(
                    Reason.MERCHANT_STATUS_NOT_ALLOWED, "a suspended merchant is reinstated by an admin"
                )
            if changes:
                row = await update_merchant(conn, request.merchant_id, changes)
            connected = await store.square_connected(conn, row.id)
        return pb.UpdateMerchantResponse(merchant=merchant_message(row, square_connected=connected, owner_view=True))

    async def LinkCharger(self, request: pb.LinkChargerRequest, context: Any) -> pb.LinkChargerResponse:
        charger = await self.directory_charger(request.charger_id)
        async with self.engine.begin() as conn:
            merchant = await owned_merchant(conn, request.merchant_id, current_caller(), write=True)
            estimated_m, _ = domain.walk_estimate((charger.lat, charger.lng), (merchant.lat, merchant.lng))
            walk_m = request.walk_distance_m or estimated_m
            walk_s = request.walk_time_s or round(walk_m / domain.WALK_SPEED_M_PER_S)
            values = {
                "charger_name": charger.name,
                "charger_address": charger.address,
                "charger_network": charger.network_name,
                "charger_lat": charger.lat,
                "charger_lng": charger.lng,
                "walk_distance_m": walk_m,
                "walk_time_s": walk_s,
                "is_primary": request.is_primary,
            }
            await upsert_charger_link(conn, request.merchant_id, request.charger_id, values)
            await audit.record(
                conn,
                "charger.link",
                f"merchant:{request.merchant_id}",
                charger_id=request.charger_id,
                primary=request.is_primary,
            )
        return pb.LinkChargerResponse(
            link=pb.ChargerLink(
                merchant_id=request.merchant_id,
                charger_id=request.charger_id,
                charger_name=charger.name,
                walk_distance_m=walk_m,
                walk_time_s=walk_s,
                is_primary=request.is_primary,
            )
        )

    async def ListDeadLetters(self, request: pb.ListDeadLettersRequest, context: Any) -> pb.ListDeadLettersResponse:
        rows = await dead_letters(self.engine, store.outbox, request.limit or 100)
        return pb.ListDeadLettersResponse(dead_letters=[dead_letter_message(row) for row in rows])

    async def ReplayDeadLetters(
        self, request: pb.ReplayDeadLettersRequest, context: Any
    ) -> pb.ReplayDeadLettersResponse:
        replayed = await replay_dead_letters(self.engine, store.outbox, list(request.ids) or None, request.reason)
        return pb.ReplayDeadLettersResponse(replayed=replayed)

    async def ListAuditEntries(self, request: pb.ListAuditEntriesRequest, context: Any) -> pb.ListAuditEntriesResponse:
        return pb.ListAuditEntriesResponse(entries=await audit.list_entries(self.engine, "merchants", request.query))

    async def GetCheckoutQr(self, request: pb.GetCheckoutQrRequest, context: Any) -> pb.GetCheckoutQrResponse:
        async with self.reads.connect() as conn:
            row = await owned_merchant(conn, request.merchant_id, current_caller())
        return pb.GetCheckoutQrResponse(qr_token=row.qr_token, qr_url=checkout_url(self.settings, row.qr_token))

    # --- drivers ------------------------------------------------------------------------------------------

    async def ListMerchantsForCharger(
        self, request: pb.ListMerchantsForChargerRequest, context: Any
    ) -> pb.ListMerchantsForChargerResponse:
        rows = await self._linked_merchants([request.charger_id])
        if not rows:
            await self.directory_charger(
                request.charger_id
            )  # an unknown charger is CHARGER_NOT_FOUND, not an empty list
        items = _ranked(rows, request.state or "charging", request.open_only, datetime.datetime.now(datetime.UTC))
        return pb.ListMerchantsForChargerResponse(merchants=items, json_array=json_array(items))

    async def BatchListChargerMerchants(
        self, request: pb.BatchListChargerMerchantsRequest, context: Any
    ) -> pb.BatchListChargerMerchantsResponse:
        rows = await self._linked_merchants(list(request.charger_ids))
        now = datetime.datetime.now(datetime.UTC)
        found = []
        for charger_id in dict.fromkeys(request.charger_ids):
            items = _ranked([r for r in rows if r.charger_id == charger_id], "charging", False, now)
            if items:
                found.append(pb.ChargerMerchants(charger_id=charger_id, merchants=items))
        return pb.BatchListChargerMerchantsResponse(chargers=found)

    async def _linked_merchants(self, charger_ids: list[str]) -> list[Any]:
        async with self.reads.connect() as conn:
            return await linked_merchants(conn, charger_ids)

    async def GetMerchant(self, request: pb.GetMerchantRequest, context: Any) -> pb.GetMerchantResponse:
        now = datetime.datetime.now(datetime.UTC)
        async with self.reads.connect() as conn:
            row = await merchant_by_id_or_place(conn, request.merchant_id)
            if row is None or row.status != pb.MERCHANT_STATUS_ACTIVE:
                raise merchant_not_found(request.merchant_id)
            activations, visits = await exclusives_today(conn, row.id, row.time_zone)
            votes = await amenity_counts(conn, row.id)
        perk = perk_of(row)
        photos = list(row.photo_urls)
        moment = await self._moment(request.session_id, row)
        return pb.GetMerchantResponse(
            merchant=pb.MerchantDetails(
                id=row.id,
                name=row.name,
                category=row.category,
                photo_url=photos[0] if photos else "",
                photo_urls=photos,
                hours_today=domain.hours_today(opening_periods(row), row.time_zone, now),
                address=row.address,
                phone=row.phone,
                website=row.website,
                activations_today=activations,
                verified_visits_today=visits,
                amenities=amenities_message(votes),
                place_id=row.place_id or "",
                lat=row.lat,
                lng=row.lng,
                rating=row.rating or 0.0,
            ),
            moment=moment,
            perk=pb.PerkCard(title=perk.label, badge="Nova perk", description=f"Pay with Nova at {row.name}."),
            wallet=pb.MerchantWallet(can_add=False, state="INACTIVE"),
            actions=pb.MerchantActions(
                add_to_wallet=False,
                get_directions_url=f"https://www.google.com/maps/dir/?api=1&destination={row.lat},{row.lng}",
            ),
        )

    async def _moment(self, session_id: str, row: Any) -> pb.MerchantMoment:
        """Distance and label from where the calling driver captured the intent (sessions keeps intent sessions);
        without a usable session of theirs the label is null and the distance 0 — the screen still opens."""
        moment = pb.MerchantMoment(moment_copy="Spend your Nova here while you charge.")
        moment.label.null_value = struct_pb2.NULL_VALUE
        if not session_id:
            return moment
        try:
            intent = await self.sessions.GetIntentSession(sessions_pb2.GetIntentSessionRequest(session_id=session_id))
        except grpc.aio.AioRpcError:
            return moment  # unknown or expired session, or sessions not answering: a screen without distance
        if intent.driver_id != current_caller().user_id:
            return moment  # where a driver stood is theirs: another caller's session id tells nothing
        metres = great_circle_m(intent.lat, intent.lng, row.lat, row.lng)
        moment.distance_miles = round(metres / METRES_PER_MILE, 2)
        moment.label.string_value = domain.moment_label(metres)
        return moment

    async def ResolveCheckoutQr(
        self, request: pb.ResolveCheckoutQrRequest, context: Any
    ) -> pb.ResolveCheckoutQrResponse:
        caller = current_caller()
        async with self.engine.begin() as conn:
            row = await use_qr_token(conn, request.token)
            if row is None:
                raise NotFound(Reason.QR_TOKEN_UNKNOWN, "this QR code is not a live Nerava checkout")
            link = await store.nearest_charger_link(conn, row.id)
        perk = perk_of(row)
        driver = None
        if caller.user_id is not None and caller.has_any({DRIVER}):
            balance = await self.nova_balance(caller.user_id)
            driver = pb.CheckoutDriver(nova_balance=balance, max_discount_cents=min(perk.cents, balance))
        return pb.ResolveCheckoutQrResponse(
            ok=True,
            merchant=pb.CheckoutMerchant(
                id=row.id, name=row.name, category=row.category, logo_url=row.logo_url, address=row.address
            ),
            perk=pb.CheckoutPerk(perk_cents=perk.cents, label=perk.label),
            driver=driver,
            charger=(
                pb.CheckoutCharger(
                    id=link.charger_id, address=link.charger_address, lat=link.charger_lat, lng=link.charger_lng
                )
                if link
                else None
            ),
        )

    async def nova_balance(self, driver_id: str) -> int:
        """The driver's spendable Nova (0 before their first credit); LEDGER_UNAVAILABLE when the ledger is down."""
        account = ledger_pb2.AccountRef(
            type=ledger_pb2.ACCOUNT_TYPE_DRIVER_NOVA, owner_id=driver_id, currency=ledger_pb2.CURRENCY_NOVA_POINTS
        )
        try:
            reply = await self.ledger.GetAccount(ledger_pb2.GetAccountRequest(account=account))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return 0
            raise Unavailable(Reason.LEDGER_UNAVAILABLE, "the ledger did not answer; retry") from None
        return reply.account.balance


def _ranked(rows: list[Any], state: str, open_only: bool, now: datetime.datetime) -> list[pb.ChargerMerchant]:
    """One charger's linked merchants as the "while you charge" screen lists them (domain.rank_for_charger)."""
    by_id = {row.id: row for row in rows}
    status = {row.id: open_status(row, now) for row in rows}
    candidates = [
        domain.NearbyMerchant(row.id, row.is_primary, status[row.id][0], row.walk_time_s, perk_of(row).cents)
        for row in rows
        if status[row.id][0] or not open_only
    ]
    items = []
    for chosen in domain.rank_for_charger(candidates, state):
        row = by_id[chosen.merchant_id]
        open_now, open_until = status[row.id]
        photos = list(row.photo_urls)
        items.append(
            pb.ChargerMerchant(
                id=row.id,
                merchant_id=row.id,
                place_id=(row.place_id or "") if row.is_primary else "",
                name=row.name,
                lat=row.lat,
                lng=row.lng,
                address=row.address,
                phone=row.phone,
                logo_url=row.logo_url,
                photo_url=(photos[0] if photos else "") if row.is_primary else "",
                photo_urls=photos,
                category=row.category,
                types=[row.category] if row.is_primary and row.category else [],
                is_primary=row.is_primary,
                exclusive_title=(row.offer_title or "") if row.is_primary else "",
                exclusive_description=(row.offer_description or "") if row.is_primary else "",
                open_now=open_now,
                open_until=open_until or None,
                # Google's listing, kept fresh by the funnel; 0 for a store not on Google.
                rating=row.rating or 0.0,
                user_rating_count=row.user_rating_count,
                walk_time_s=row.walk_time_s,
                walk_time_seconds=row.walk_time_s,
                distance_m=row.walk_distance_m,
                activations_today=row.activations,
                verified_visits_today=row.visits,
            )
        )
    return items


__all__ = ["ACCESS", "CatalogRpcs", "active_merchant", "is_admin", "merchant_not_found"]
