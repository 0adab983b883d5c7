"""The merchant app's acquisition funnel: find one's business on Google Places, get its signed preview, claim it.

- SearchBusinesses: Text Search, each result marked with the Nerava store it already is and whether it is owned.
- ResolveBusiness: the store of a Google place, created PENDING and unowned from Place Details on first sight;
  its listing (rating, photos, hours, business status, time zone) refreshed from Google on every call, so a
  preview shows what Google shows today. A Google outage does not stop a known store's preview (the stored
  listing is kept); a new one needs Google.
- RequestMerchantClaim: whoever holds a valid preview link asks to own an unowned store for a business email,
  before any sign-in (the funnel precedes it; a signed-in caller is recorded). The claim is stored PENDING (one
  per store and email); the claim sign-in (accounts: the magic link to that email) verifies it and makes the
  email's account the owner with the merchant role.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from nerava.merchants.v1 import merchants_pb2 as pb
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.errors import FailedPrecondition, NotFound, PermissionDenied, Unavailable
from services.merchants import domain, store
from services.merchants.adapters.places import Business, Listing, PlaceNotFound, PlacesDirectory, PlacesError
from services.merchants.catalog import new_merchant_id, new_qr_token
from services.merchants.config import MerchantsSettings
from services.merchants.peers import ClaimLinks
from services.merchants.portal import preview_url
from services.merchants.reasons import Reason
from services.merchants.records import insert_merchant, load_merchant, merchant_not_found

# A store the funnel creates is listed under this category until its owner picks one (Google's type is kept
# when it gives one).
DEFAULT_CATEGORY = "other"
# What Google says of a store, refreshed even once an owner runs it; the rest of the listing is the owner's then.
GOOGLES_OWN = frozenset({"rating", "user_rating_count", "business_status"})


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _places_unavailable() -> Unavailable:
    return Unavailable(Reason.PLACES_UNAVAILABLE, "Google Places did not answer; retry")


def listing_values(listing: Listing) -> dict[str, Any]:
    """The merchants columns Google's listing of a store fills."""
    business = listing.business
    values: dict[str, Any] = {
        "name": business.name,
        "lat": business.lat,
        "lng": business.lng,
        "address": business.address,
        "rating": listing.rating,
        "user_rating_count": listing.rating_count,
        "business_status": listing.business_status,
        "photo_urls": list(listing.photo_urls),
        "opening_periods": [
            {"day_of_week": p.day_of_week, "open_minute": p.open_minute, "close_minute": p.close_minute}
            for p in listing.periods
        ],
    }
    if listing.time_zone:
        values["time_zone"] = listing.time_zone
    if listing.phone:
        values["phone"] = listing.phone
    if listing.website:
        values["website"] = listing.website
    return values


def _unless_owned(column: str, value: Any) -> Any:
    """SQL: `value` for a store nobody owns yet, else the column as its owner left it."""
    return sa.case(
        (store.merchants.c.owner_user_id.is_(None), sa.literal(value, store.merchants.c[column].type)),
        else_=store.merchants.c[column],
    )


# --- queries (the tables are in store.py) -------------------------------------------------------------------


async def stores_of_places(conn: AsyncConnection, place_ids: list[str]) -> Sequence[Any]:
    """(id, place_id, owner_user_id) of the stores among these Google places."""
    return (
        await conn.execute(
            sa.select(store.merchants.c.id, store.merchants.c.place_id, store.merchants.c.owner_user_id).where(
                store.merchants.c.place_id.in_(place_ids)
            )
        )
    ).all()


async def store_of_place(conn: AsyncConnection, place_id: str) -> Any:
    return (await conn.execute(sa.select(store.merchants).where(store.merchants.c.place_id == place_id))).first()


async def refresh_listing(conn: AsyncConnection, place_id: str, values: dict[str, Any]) -> Any:
    """The place's store with the listing's `values`, except what its owner controls once it has one; its id, or
    None when no store has this place."""
    return (
        await conn.execute(
            sa.update(store.merchants)
            .where(store.merchants.c.place_id == place_id)
            .values(
                **{
                    name: value if name in GOOGLES_OWN else _unless_owned(name, value) for name, value in values.items()
                },
                updated_at=sa.func.now(),
            )
            .returning(store.merchants.c.id)
        )
    ).scalar_one_or_none()


async def overwrite_listing(conn: AsyncConnection, place_id: str, values: dict[str, Any]) -> str:
    """The place's store (created a moment ago) with the listing's `values`; its id."""
    return str(
        (
            await conn.execute(
                sa.update(store.merchants)
                .where(store.merchants.c.place_id == place_id)
                .values(**values)
                .returning(store.merchants.c.id)
            )
        ).scalar_one()
    )


async def upsert_claim(conn: AsyncConnection, merchant_id: str, email: str, user_id: str | None) -> Any:
    """The PENDING claim of the store by this address, created or found again (keeping its first user)."""
    return (
        await conn.execute(
            pg.insert(store.merchant_claims)
            .values(
                id=uuid.uuid4(),
                merchant_id=merchant_id,
                user_id=user_id,
                email=email,
                status=pb.MERCHANT_CLAIM_STATUS_PENDING,
            )
            .on_conflict_do_update(
                index_elements=[store.merchant_claims.c.merchant_id, store.merchant_claims.c.email],
                set_={
                    "user_id": sa.func.coalesce(store.merchant_claims.c.user_id, user_id),
                    "updated_at": sa.func.now(),
                },
            )
            .returning(store.merchant_claims)
        )
    ).one()


async def drop_pending_claim(conn: AsyncConnection, claim_id: uuid.UUID) -> None:
    await conn.execute(
        sa.delete(store.merchant_claims).where(
            store.merchant_claims.c.id == claim_id, store.merchant_claims.c.status == pb.MERCHANT_CLAIM_STATUS_PENDING
        )
    )


@dataclasses.dataclass(frozen=True, slots=True)
class FoundBusiness:
    """A search result, with the Nerava store it already is ("" when none) and whether someone owns that."""

    business: Business
    merchant_id: str
    claimed: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Preview:
    """A store's signed preview link: the page's URL and its signature, valid until `expires` (Unix seconds)."""

    merchant_id: str
    url: str
    signature: str
    expires: int


@dataclasses.dataclass(frozen=True, slots=True)
class StoreClaim:
    id: str
    merchant_id: str
    merchant_name: str
    email: str
    status: int
    created_at: datetime.datetime


class Funnel:
    """The funnel's three steps over the database, Google Places and accounts' claim links."""

    def __init__(
        self,
        engine: AsyncEngine,
        reads: AsyncEngine,
        places: PlacesDirectory,
        claim_links: ClaimLinks,
        settings: MerchantsSettings,
        *,
        clock: Callable[[], datetime.datetime] = _now,
    ) -> None:
        self._engine = engine
        self._reads = reads
        self._places = places
        self._claim_links = claim_links
        self._settings = settings
        self._clock = clock

    def _preview_key(self) -> bytes:
        return self._settings.preview_signing_key.value.encode()

    async def search(self, query: str, near: tuple[float, float] | None) -> list[FoundBusiness]:
        try:
            found = await self._places.search(query, near)
        except PlacesError:
            raise _places_unavailable() from None
        ids = [b.place_id for b in found if b.place_id]
        async with self._reads.connect() as conn:
            known = {row.place_id: row for row in await stores_of_places(conn, ids)}
        return [
            FoundBusiness(
                b,
                known[b.place_id].id if b.place_id in known else "",
                b.place_id in known and known[b.place_id].owner_user_id is not None,
            )
            for b in found
            if b.place_id
        ]

    async def resolve(self, place_id: str) -> Preview:
        """The place's store (created or refreshed from Google, see the module docstring) and its preview link."""
        async with self._reads.connect() as conn:
            existing = await store_of_place(conn, place_id)
        try:
            listing = await self._places.listing(place_id)
        except PlaceNotFound:
            raise NotFound(Reason.PLACE_NOT_FOUND, "Google Places has no such place", {"place_id": place_id}) from None
        except PlacesError:
            if existing is None:
                raise _places_unavailable() from None
            merchant_id = str(existing.id)  # keep the stored listing of a known store
        else:
            async with self._engine.begin() as conn:
                merchant_id = await self._store_listing(conn, place_id, listing)
        expires = int(self._clock().timestamp()) + int(domain.PREVIEW_TTL.total_seconds())
        signature = domain.preview_signature(self._preview_key(), merchant_id, expires)
        url = preview_url(self._settings.portal_base_url, merchant_id, expires, signature)
        return Preview(merchant_id, url, signature, expires)

    async def _store_listing(self, conn: AsyncConnection, place_id: str, listing: Listing) -> str:
        """Refreshes the listing of the place's store, or creates the store (PENDING, unowned); its id.

        An owned store keeps what its owner controls (name, address, hours, photos, contact); only Google's own
        judgement of it (rating, rating count, business status) is refreshed."""
        values = listing_values(listing)
        updated = await refresh_listing(conn, place_id, values)
        if updated is not None:
            return str(updated)

        new = {
            "id": new_merchant_id(),
            "category": listing.business.category or DEFAULT_CATEGORY,
            "phone": "",
            "website": "",
            "place_id": place_id,
            "time_zone": "UTC",
            "custom_perk_cents": 0,
            "recommended_perk_cents": 0,
            "perk_label": "",
            "status": pb.MERCHANT_STATUS_PENDING,
            "owner_user_id": None,
            "zone_slug": "",
            "logo_url": "",
            "qr_token": new_qr_token(),
            **values,
        }
        try:
            async with conn.begin_nested():
                row = await insert_merchant(conn, new)
        except IntegrityError:
            # The same place resolved concurrently: that call created the store; refresh it instead.
            return await overwrite_listing(conn, place_id, values)
        return str(row.id)

    async def request_claim(
        self, merchant_id: str, expires: int, signature: str, email: str, user_id: str | None
    ) -> StoreClaim:
        """The PENDING claim of the store for `email` by whoever holds its preview link (`user_id`: the caller,
        if signed in), and the claim link emailed. PREVIEW_LINK_INVALID, MERCHANT_NOT_FOUND,
        MERCHANT_ALREADY_CLAIMED, and accounts' refusals (peers.ClaimLinks)."""
        if not domain.preview_valid(self._preview_key(), merchant_id, expires, signature, self._clock()):
            raise PermissionDenied(Reason.PREVIEW_LINK_INVALID, "this preview link is expired or invalid")
        email = email.strip().lower()
        async with self._reads.connect() as conn:
            merchant = await load_merchant(conn, merchant_id)
        if merchant is None:
            raise merchant_not_found(merchant_id)
        if merchant.owner_user_id is not None:
            raise FailedPrecondition(Reason.MERCHANT_ALREADY_CLAIMED, "this store already has an owner")
        async with self._engine.begin() as conn:
            # One claim per store and email: asking again answers the same claim (and sends a fresh link).
            claim = await upsert_claim(conn, merchant.id, email, user_id)
        # Stored first, so a link opened at once finds the claim to mark verified. Accounts checks the address
        # against the store (AuthorizeMerchantClaim: the store's own web domain) and emails the single-use link;
        # opening it makes that address's account the owner.
        try:
            await self._claim_links.send(merchant.id, email)
        except PermissionDenied:
            async with self._engine.begin() as conn:
                await drop_pending_claim(conn, claim.id)
            raise
        return StoreClaim(str(claim.id), merchant.id, merchant.name, claim.email, claim.status, claim.created_at)
