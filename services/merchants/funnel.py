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

import datetime
import uuid
from collections.abc import Sequence
from typing import Any

import grpc
import sqlalchemy as sa
from nerava.accounts.v1 import accounts_pb2
from nerava.merchants.v1 import merchants_pb2 as pb
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.context import current_caller
from services.common.errors import FailedPrecondition, NotFound, PermissionDenied, Unavailable, peer_reason
from services.common.interceptors import PUBLIC_DATA, Access
from services.merchants import domain, store
from services.merchants.adapters.places import Listing, PlaceNotFound, PlacesError
from services.merchants.catalog import new_merchant_id, new_qr_token
from services.merchants.portal import preview_url
from services.merchants.reasons import Reason
from services.merchants.records import (
    Resources,
    insert_merchant,
    load_merchant,
    merchant_not_found,
    timestamp,
)

ACCESS: dict[str, Access] = {
    "SearchBusinesses": Access.anyone().not_owned(PUBLIC_DATA),
    "ResolveBusiness": Access.anyone().not_owned(PUBLIC_DATA),
    # The preview link's signature is the capability; the emailed link, not the caller, proves the claim.
    "RequestMerchantClaim": Access.anyone().not_owned(
        "a capability: the signed preview link names the store, and the emailed claim link proves the claimant"
    ),
}

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


class FunnelRpcs(Resources):
    def _preview_key(self) -> bytes:
        return self.settings.preview_signing_key.value.encode()

    async def SearchBusinesses(self, request: pb.SearchBusinessesRequest, context: Any) -> pb.SearchBusinessesResponse:
        near = (request.lat, request.lng) if request.HasField("lat") and request.HasField("lng") else None
        try:
            found = await self.places.search(request.query, near)
        except PlacesError:
            raise _places_unavailable() from None
        ids = [b.place_id for b in found if b.place_id]
        async with self.reads.connect() as conn:
            known = {row.place_id: row for row in await stores_of_places(conn, ids)}
        return pb.SearchBusinessesResponse(
            businesses=[
                pb.Business(
                    place_id=b.place_id,
                    name=b.name,
                    address=b.address,
                    lat=b.lat,
                    lng=b.lng,
                    category=b.category,
                    merchant_id=known[b.place_id].id if b.place_id in known else "",
                    claimed=b.place_id in known and known[b.place_id].owner_user_id is not None,
                )
                for b in found
                if b.place_id
            ]
        )

    async def ResolveBusiness(self, request: pb.ResolveBusinessRequest, context: Any) -> pb.ResolveBusinessResponse:
        async with self.reads.connect() as conn:
            existing = await store_of_place(conn, request.place_id)
        try:
            listing = await self.places.listing(request.place_id)
        except PlaceNotFound:
            missing = {"place_id": request.place_id}
            raise NotFound(Reason.PLACE_NOT_FOUND, "Google Places has no such place", missing) from None
        except PlacesError:
            if existing is None:
                raise _places_unavailable() from None
            merchant_id = str(existing.id)  # keep the stored listing of a known store
        else:
            async with self.engine.begin() as conn:
                merchant_id = await self._store_listing(conn, request.place_id, listing)
        expires = int(_now().timestamp()) + int(domain.PREVIEW_TTL.total_seconds())
        signature = domain.preview_signature(self._preview_key(), merchant_id, expires)
        return pb.ResolveBusinessResponse(
            merchant_id=merchant_id,
            preview_url=preview_url(self.settings.portal_base_url, merchant_id, expires, signature),
            sig=signature,
            expires_at=timestamp(datetime.datetime.fromtimestamp(expires, datetime.UTC)),
            exp=expires,
        )

    async def _store_listing(self, conn: Any, place_id: str, listing: Listing) -> str:
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

    async def _send_claim_link(self, merchant_id: str, email: str) -> None:
        try:
            await self.accounts.SendMerchantClaimLink(
                accounts_pb2.SendMerchantClaimLinkRequest(merchant_id=merchant_id, email=email)
            )
        except grpc.aio.AioRpcError as error:
            reason = peer_reason(error)
            if error.code() == grpc.StatusCode.PERMISSION_DENIED:
                # The only refusal left once the store is known to be unowned: the address is not the store's.
                raise PermissionDenied(
                    Reason.CLAIM_NOT_OWNER, error.details() or "this address may not claim the store"
                ) from None
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise FailedPrecondition(reason or "SIGN_IN_NOT_CONFIGURED", error.details() or "") from None
            raise Unavailable(
                Reason.EMAIL_UNAVAILABLE if reason == "EMAIL_UNAVAILABLE" else "ACCOUNTS_UNAVAILABLE",
                "the claim link could not be sent; retry",
            ) from None

    async def RequestMerchantClaim(
        self, request: pb.RequestMerchantClaimRequest, context: Any
    ) -> pb.RequestMerchantClaimResponse:
        caller = current_caller()
        if not domain.preview_valid(self._preview_key(), request.merchant_id, request.exp, request.sig, _now()):
            raise PermissionDenied(Reason.PREVIEW_LINK_INVALID, "this preview link is expired or invalid")
        email = request.email.strip().lower()
        async with self.reads.connect() as conn:
            merchant = await load_merchant(conn, request.merchant_id)
        if merchant is None:
            raise merchant_not_found(request.merchant_id)
        if merchant.owner_user_id is not None:
            raise FailedPrecondition(Reason.MERCHANT_ALREADY_CLAIMED, "this store already has an owner")
        async with self.engine.begin() as conn:
            # One claim per store and email: asking again answers the same claim (and sends a fresh link).
            claim = await upsert_claim(conn, merchant.id, email, caller.user_id)
        # Stored first, so a link opened at once finds the claim to mark verified. Accounts checks the address
        # against the store (AuthorizeMerchantClaim: the store's own web domain) and emails the single-use link;
        # opening it makes that address's account the owner.
        try:
            await self._send_claim_link(merchant.id, email)
        except PermissionDenied:
            async with self.engine.begin() as conn:
                await drop_pending_claim(conn, claim.id)
            raise
        return pb.RequestMerchantClaimResponse(
            claim=pb.MerchantClaim(
                id=str(claim.id),
                merchant_id=merchant.id,
                merchant_name=merchant.name,
                email=claim.email,
                status=claim.status,
                created_at=timestamp(claim.created_at),
            )
        )
