"""The merchant portal's reads (owner only) and the merchant's artwork; HMAC-signed preview links.

- GetMyMerchant: the caller's stores, the first ACTIVE one (else the oldest) with its Nova from the ledger's
  MERCHANT_NOVA account and that account's last 10 transfers.
- GetMerchantSummary, GetShareables, GetShareCard: over COMPLETED redemptions only, windows rolling back from
  now (the last 7, 30 or N times 24 hours).
- ListMerchantVisits: the redemption log of exclusive offers. Two kinds of rows exist in this system:
  VERIFIED (a verified visit; timestamp = when it was verified) and ACTIVE (an exclusive session still
  running, not yet verified; timestamp = its activation). PARTIAL and REJECTED are accepted as filters for the
  portal's sake but nothing produces them, so they list nothing. An empty filter lists both kinds.
- GetBillingSummary: the ledger's fee period of the month (the ledger accrues the fee with each transfer).
- Preview links: the signature is checked before the merchant is looked up, so an id is never confirmed to
  exist without a valid link.

Ownership (records.owned_merchant): an owner sees their own stores, an admin all; anything else is
MERCHANT_NOT_FOUND.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import urllib.parse
from collections.abc import Sequence
from typing import Any

import grpc
import sqlalchemy as sa
from google.api import httpbody_pb2
from nerava.ledger.v1 import ledger_pb2
from nerava.merchants.v1 import merchants_pb2 as pb
from nerava.sessions.v1 import sessions_pb2
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.context import current_caller
from services.common.errors import NotFound, PermissionDenied, Unavailable
from services.common.interceptors import BY_AN_ADMIN, OWN_DATA, Access
from services.common.paging import MAX_OFFSET, page_position, page_token
from services.merchants import artwork, domain, store
from services.merchants.reasons import Reason
from services.merchants.records import (
    ADMIN,
    ADMIN_READONLY,
    MERCHANT,
    STORE,
    Resources,
    checkout_url,
    load_merchant,
    merchant_message,
    merchant_not_found,
    open_status,
    owned_merchant,
    perk_of,
    timestamp,
)

_OWNER = Access.role(MERCHANT, ADMIN, ADMIN_READONLY).owned(STORE)

ACCESS: dict[str, Access] = {
    # The caller's own stores, found by their owner id.
    "GetMyMerchant": Access.role(MERCHANT, ADMIN).not_owned(OWN_DATA),
    "GetMyMerchantInsights": Access.role(MERCHANT, ADMIN).not_owned(OWN_DATA),
    "GetMerchantSummary": _OWNER,
    "ListMerchantVisits": _OWNER,
    "GetBillingSummary": _OWNER,
    "GetShareables": _OWNER,
    "GetShareCard": _OWNER,
    "GetQrSign": _OWNER,
    "CreatePreviewLink": Access.role(ADMIN).not_owned(BY_AN_ADMIN),
    "ResolvePreviewLink": Access.anyone().not_owned("the link's signature is the capability"),
}


COMPLETED = pb.REDEMPTION_STATUS_COMPLETED
RECENT_TRANSFERS = 10
DEFAULT_VISITS, DEFAULT_SHARE_DAYS = 100, 7
INSIGHTS_PERIODS = {
    "7d": datetime.timedelta(days=7),
    "30d": datetime.timedelta(days=30),
    "90d": datetime.timedelta(days=90),
}
DEFAULT_INSIGHTS_PERIOD = "30d"
PEAK_HOURS = 5
VISIT_PERIODS = {"week": datetime.timedelta(days=7), "month": datetime.timedelta(days=30), "all": None}
VERIFIED, ACTIVE = "VERIFIED", "ACTIVE"
ANONYMIZED_HEX = 10

_FEE_STATUS = {
    ledger_pb2.FEE_PERIOD_STATUS_ACCRUING: "accruing",
    ledger_pb2.FEE_PERIOD_STATUS_INVOICED: "invoiced",
    ledger_pb2.FEE_PERIOD_STATUS_PAID: "paid",
}
_KIND_PREFIX = "TRANSFER_KIND_"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _merchant_nova(merchant_id: str) -> ledger_pb2.AccountRef:
    return ledger_pb2.AccountRef(
        type=ledger_pb2.ACCOUNT_TYPE_MERCHANT_NOVA, owner_id=merchant_id, currency=ledger_pb2.CURRENCY_NOVA_POINTS
    )


def _ledger_unavailable() -> Unavailable:
    return Unavailable(Reason.LEDGER_UNAVAILABLE, "the ledger did not answer; retry")


def transfer_type(kind: int) -> str:
    """The portal's transaction type: the ledger kind's name in lower case ("redemption", "admin_grant")."""
    name: str = ledger_pb2.TransferKind.Name(kind)  # type: ignore[arg-type]
    return name.removeprefix(_KIND_PREFIX).lower()


def transaction_message(transfer: ledger_pb2.Transfer) -> pb.MerchantTransaction:
    """A ledger transfer of the merchant's Nova account as the portal lists it; the driver is the driver-Nova side
    of the transfer (the debited driver of a redemption), empty for grants."""
    driver = next(
        (
            side.owner_id
            for side in (transfer.from_account, transfer.to_account)
            if side.type == ledger_pb2.ACCOUNT_TYPE_DRIVER_NOVA
        ),
        "",
    )
    return pb.MerchantTransaction(
        id=transfer.id,
        type=transfer_type(transfer.kind),
        amount=transfer.amount,
        driver_user_id=driver,
        created_at=transfer.created_at,
        metadata={field.name: str(value) for field, value in transfer.metadata.ListFields()},
    )


def anonymized_driver(merchant_id: str, driver_id: str) -> str:
    """A stable per-merchant pseudonym: the same driver looks different at two merchants, and the id cannot be
    read back from it."""
    return hashlib.sha256(f"{merchant_id}:{driver_id}".encode()).hexdigest()[:ANONYMIZED_HEX]


def half_up_average(total: int, count: int) -> int:
    """total / count rounded half-up to an integer (non-negative inputs); 0 when count is 0."""
    return (2 * total + count) // (2 * count) if count else 0


async def _my_stores(conn: AsyncConnection) -> Sequence[Any]:
    """The caller's stores, oldest first; MERCHANT_NOT_FOUND when they own none."""
    caller = current_caller()
    rows = (
        await conn.execute(
            sa.select(store.merchants)
            .where(store.merchants.c.owner_user_id == caller.user_id)
            .order_by(store.merchants.c.created_at, store.merchants.c.id)
        )
    ).all()
    if not rows:
        raise NotFound(Reason.MERCHANT_NOT_FOUND, "the caller owns no merchant store")
    return rows


def preview_url(portal_base_url: str, merchant_id: str, expires_unix: int, signature: str) -> str:
    query = urllib.parse.urlencode({"merchant_id": merchant_id, "exp": expires_unix, "sig": signature})
    return f"{portal_base_url}/preview?{query}"


def _totals_query(merchant_id: str, now: datetime.datetime) -> sa.Select[Any]:
    """Every redemption figure of the portal in one statement (COMPLETED rows, FILTER for the windows)."""
    week = store.redemptions.c.created_at >= now - datetime.timedelta(days=7)
    month = store.redemptions.c.created_at >= now - datetime.timedelta(days=30)
    return sa.select(
        sa.func.count().label("total"),
        sa.func.coalesce(sa.func.sum(store.redemptions.c.discount_cents), 0).label("discount"),
        sa.func.count(sa.distinct(store.redemptions.c.driver_id)).label("drivers"),
        sa.func.count().filter(week).label("last_7d"),
        sa.func.count().filter(month).label("last_30d"),
        sa.func.coalesce(sa.func.sum(store.redemptions.c.discount_cents).filter(month), 0).label("discount_30d"),
    ).where(store.redemptions.c.merchant_id == merchant_id, store.redemptions.c.status == COMPLETED)


def _visit_rows(merchant_id: str, status: str, since: datetime.datetime | None, now: datetime.datetime) -> Any:
    """The visit rows matching the filter, as one selectable (None when the filter cannot match anything)."""
    link = (store.charger_links.c.merchant_id == store.exclusive_sessions.c.merchant_id) & (
        store.charger_links.c.charger_id == store.exclusive_sessions.c.charger_id
    )
    parts: list[sa.Select[Any]] = []
    if status in ("", VERIFIED):
        verified = (
            sa.select(
                store.verified_visits.c.id.label("id"),
                store.verified_visits.c.verified_at.label("at"),
                sa.literal_column(f"'{VERIFIED}'", sa.Text).label("status"),
                store.verified_visits.c.driver_id.label("driver_id"),
                store.exclusive_sessions.c.activated_at.label("activated_at"),
                store.exclusive_sessions.c.offer_id.label("offer_id"),
                store.exclusive_offers.c.title.label("title"),
                store.exclusive_sessions.c.charger_id.label("charger_id"),
                store.charger_links.c.charger_name.label("location"),
                store.verified_visits.c.verification_code.label("code"),
            )
            .select_from(
                store.verified_visits.join(
                    store.exclusive_sessions,
                    store.exclusive_sessions.c.id == store.verified_visits.c.exclusive_session_id,
                )
                .outerjoin(store.exclusive_offers, store.exclusive_offers.c.id == store.exclusive_sessions.c.offer_id)
                .outerjoin(store.charger_links, link)
            )
            .where(store.verified_visits.c.merchant_id == merchant_id)
        )
        parts.append(verified if since is None else verified.where(store.verified_visits.c.verified_at >= since))
    if status in ("", ACTIVE):
        active = (
            sa.select(
                store.exclusive_sessions.c.id.label("id"),
                store.exclusive_sessions.c.activated_at.label("at"),
                sa.literal_column(f"'{ACTIVE}'", sa.Text).label("status"),
                store.exclusive_sessions.c.driver_id.label("driver_id"),
                store.exclusive_sessions.c.activated_at.label("activated_at"),
                store.exclusive_sessions.c.offer_id.label("offer_id"),
                store.exclusive_offers.c.title.label("title"),
                store.exclusive_sessions.c.charger_id.label("charger_id"),
                store.charger_links.c.charger_name.label("location"),
                sa.literal_column("''", sa.Text).label("code"),
            )
            .select_from(
                store.exclusive_sessions.outerjoin(
                    store.exclusive_offers, store.exclusive_offers.c.id == store.exclusive_sessions.c.offer_id
                ).outerjoin(store.charger_links, link)
            )
            # Still running: ACTIVE and inside its window (the expiry sweep may not have run yet).
            .where(
                store.exclusive_sessions.c.merchant_id == merchant_id,
                store.exclusive_sessions.c.status == pb.EXCLUSIVE_STATUS_ACTIVE,
                store.exclusive_sessions.c.expires_at > now,
            )
        )
        parts.append(active if since is None else active.where(store.exclusive_sessions.c.activated_at >= since))
    if not parts:
        return None
    return (parts[0] if len(parts) == 1 else sa.union_all(*parts)).subquery("visits")


def _visit_message(merchant_id: str, row: Any) -> pb.MerchantVisit:
    minutes = 0
    if row.status == VERIFIED:
        minutes = max(0, int((row.at - row.activated_at).total_seconds() // 60))
    return pb.MerchantVisit(
        id=str(row.id),
        timestamp=timestamp(row.at),
        exclusive_id=row.offer_id or "",
        exclusive_title=row.title or "",
        driver_id_anonymized=anonymized_driver(merchant_id, row.driver_id),
        verification_status=row.status,
        duration_minutes=minutes,
        charger_id=row.charger_id or "",
        location_name=row.location or "",
        verification_code=row.code or "",
    )


# --- queries (the tables are in store.py; _my_stores, _totals_query and _visit_rows above) ------------------


async def store_totals(conn: AsyncConnection, merchant_id: str, now: datetime.datetime) -> Any:
    """The store's totals as `_totals_query` counts them."""
    return (await conn.execute(_totals_query(merchant_id, now))).one()


async def linked_charger_ids(conn: AsyncConnection, merchant_id: str) -> list[str]:
    return list(
        (
            await conn.execute(
                sa.select(store.charger_links.c.charger_id).where(store.charger_links.c.merchant_id == merchant_id)
            )
        ).scalars()
    )


async def visit_counts(conn: AsyncConnection, rows_of: Any) -> tuple[int, int]:
    """(all, verified) of the visit rows `_visit_rows` selects."""
    counts = (
        await conn.execute(
            sa.select(
                sa.func.count().label("total"),
                sa.func.count().filter(rows_of.c.status == VERIFIED).label("verified"),
            ).select_from(rows_of)
        )
    ).one()
    return counts.total, counts.verified


async def visit_page(conn: AsyncConnection, rows_of: Any, size: int, offset: int) -> Sequence[Any]:
    """A page of the visit rows `_visit_rows` selects, newest first."""
    return (
        await conn.execute(
            sa.select(rows_of).order_by(rows_of.c.at.desc(), rows_of.c.id.desc()).limit(size).offset(offset)
        )
    ).all()


async def redemptions_since(conn: AsyncConnection, merchant_id: str, since: datetime.datetime) -> Any:
    """(redemptions, discount, drivers) of the store's COMPLETED redemptions since `since`, for its share card."""
    return (
        await conn.execute(
            sa.select(
                sa.func.count().label("redemptions"),
                sa.func.coalesce(sa.func.sum(store.redemptions.c.discount_cents), 0).label("discount"),
                sa.func.count(sa.distinct(store.redemptions.c.driver_id)).label("drivers"),
            ).where(
                store.redemptions.c.merchant_id == merchant_id,
                store.redemptions.c.status == COMPLETED,
                store.redemptions.c.created_at >= since,
            )
        )
    ).one()


async def visit_count(conn: AsyncConnection, merchant_id: str) -> int:
    count: int = (
        await conn.execute(sa.select(sa.func.count()).where(store.verified_visits.c.merchant_id == merchant_id))
    ).scalar_one()
    return count


class PortalRpcs(Resources):
    async def GetMyMerchant(self, request: pb.GetMyMerchantRequest, context: Any) -> pb.GetMyMerchantResponse:
        async with self.reads.connect() as conn:
            rows = await _my_stores(conn)
            row = next((r for r in rows if r.status == pb.MERCHANT_STATUS_ACTIVE), rows[0])
            connected = await store.square_connected(conn, row.id)
        balance, transfers = await self._merchant_nova(row.id)
        return pb.GetMyMerchantResponse(
            merchant=pb.MerchantAccount(
                id=row.id,
                name=row.name,
                nova_balance=balance,
                zone_slug=row.zone_slug,
                status=row.status,
                details=merchant_message(row, square_connected=connected, owner_view=True),
            ),
            transactions=[transaction_message(t) for t in transfers],
            merchant_ids=[r.id for r in rows],
        )

    async def GetMyMerchantInsights(
        self, request: pb.GetMyMerchantInsightsRequest, context: Any
    ) -> pb.GetMyMerchantInsightsResponse:
        period = request.period or DEFAULT_INSIGHTS_PERIOD
        async with self.reads.connect() as conn:
            rows = await _my_stores(conn)
            row = next((r for r in rows if r.status == pb.MERCHANT_STATUS_ACTIVE), rows[0])
            chargers = await linked_charger_ids(conn, row.id)
        since = _now() - INSIGHTS_PERIODS[period]
        try:
            summary = await self.sessions.SummarizeChargerSessions(
                sessions_pb2.SummarizeChargerSessionsRequest(
                    charger_ids=chargers, since=timestamp(since), time_zone=row.time_zone
                )
            )
        except grpc.aio.AioRpcError:
            raise Unavailable(Reason.SESSIONS_UNAVAILABLE, "the sessions service did not answer; retry") from None
        reply = pb.GetMyMerchantInsightsResponse(
            period=period,
            ev_sessions_nearby=summary.total_sessions,
            unique_drivers=summary.unique_drivers,
            peak_hours=[pb.PeakHour(hour=h.hour, sessions=h.sessions) for h in summary.hours[:PEAK_HOURS]],
        )
        if summary.HasField("avg_duration_minutes"):
            reply.avg_duration_minutes = summary.avg_duration_minutes
        if summary.HasField("avg_kwh"):
            reply.avg_kwh = summary.avg_kwh
        return reply

    async def _merchant_nova(self, merchant_id: str) -> tuple[int, list[ledger_pb2.Transfer]]:
        """(balance, last transfers newest first) of the merchant's Nova account; (0, []) before its first
        transfer."""
        account = _merchant_nova(merchant_id)
        try:
            reply = await self.ledger.GetAccount(ledger_pb2.GetAccountRequest(account=account))
            listed = await self.ledger.ListTransfers(
                ledger_pb2.ListTransfersRequest(account=account, page_size=RECENT_TRANSFERS)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return 0, []
            raise _ledger_unavailable() from None
        return reply.account.balance, list(listed.transfers)

    async def GetMerchantSummary(
        self, request: pb.GetMerchantSummaryRequest, context: Any
    ) -> pb.GetMerchantSummaryResponse:
        async with self.reads.connect() as conn:
            await owned_merchant(conn, request.merchant_id, current_caller())
            totals = await store_totals(conn, request.merchant_id, _now())
        return pb.GetMerchantSummaryResponse(
            total_redemptions=totals.total,
            total_discount_cents=totals.discount,
            unique_driver_count=totals.drivers,
            last_7d_redemptions=totals.last_7d,
            last_30d_redemptions=totals.last_30d,
            avg_discount_cents=half_up_average(totals.discount, totals.total),
        )

    async def ListMerchantVisits(
        self, request: pb.ListMerchantVisitsRequest, context: Any
    ) -> pb.ListMerchantVisitsResponse:
        period = request.period or "week"
        size = request.limit or request.page_size or DEFAULT_VISITS
        bound = f"visits:{request.merchant_id}:{period}:{request.status}"
        position = page_position(request.page_token, bound, maximum=MAX_OFFSET)
        offset = request.offset if position is None else position
        now = _now()
        window = VISIT_PERIODS[period]
        rows_of = _visit_rows(request.merchant_id, request.status, None if window is None else now - window, now)
        async with self.reads.connect() as conn:
            await owned_merchant(conn, request.merchant_id, current_caller())
            page: Sequence[Any] = ()
            if rows_of is None:
                total, verified = 0, 0
            else:
                total, verified = await visit_counts(conn, rows_of)
                page = await visit_page(conn, rows_of, size, offset)
        following = offset + len(page)
        return pb.ListMerchantVisitsResponse(
            visits=[_visit_message(request.merchant_id, row) for row in page],
            total=total,
            verified_count=verified,
            period=period,
            limit=size,
            offset=offset,
            next_page_token=page_token(following, bound) if page and following < total else "",
        )

    async def GetBillingSummary(
        self, request: pb.GetBillingSummaryRequest, context: Any
    ) -> pb.GetBillingSummaryResponse:
        async with self.reads.connect() as conn:
            await owned_merchant(conn, request.merchant_id, current_caller())
        try:
            reply = await self.ledger.GetMerchantFeePeriod(
                ledger_pb2.GetMerchantFeePeriodRequest(merchant_id=request.merchant_id, month=request.month)
            )
        except grpc.aio.AioRpcError:
            raise _ledger_unavailable() from None
        period = reply.period
        return pb.GetBillingSummaryResponse(
            period_start=period.period_start,
            period_end=period.period_end,
            nova_redeemed_cents=period.nova_redeemed,
            fee_cents=period.fee_cents,
            status=_FEE_STATUS.get(period.status, "accruing"),
        )

    async def GetShareables(self, request: pb.GetShareablesRequest, context: Any) -> pb.GetShareablesResponse:
        async with self.reads.connect() as conn:
            row = await owned_merchant(conn, request.merchant_id, current_caller())
            totals = await store_totals(conn, request.merchant_id, _now())
        return pb.GetShareablesResponse(
            lines=domain.shareable_lines(
                row.name,
                domain.RedemptionTotals(
                    total=totals.total,
                    total_discount_cents=totals.discount,
                    last_7d=totals.last_7d,
                    last_30d=totals.last_30d,
                    last_30d_discount_cents=totals.discount_30d,
                ),
            )
        )

    async def GetShareCard(self, request: pb.GetShareCardRequest, context: Any) -> pb.GetShareCardResponse:
        days = int(request.range.removesuffix("d")) if request.range else DEFAULT_SHARE_DAYS
        since = _now() - datetime.timedelta(days=days)
        async with self.reads.connect() as conn:
            row = await owned_merchant(conn, request.merchant_id, current_caller())
            window = await redemptions_since(conn, row.id, since)
        figures = artwork.ShareCardFigures(
            merchant_name=row.name,
            range_days=days,
            redemption_count=window.redemptions,
            discount_total_cents=window.discount,
            unique_drivers=window.drivers,
            checkout_url=checkout_url(self.settings, row.qr_token),
        )
        png = await asyncio.to_thread(artwork.render_share_card, figures)
        return pb.GetShareCardResponse(http_body=httpbody_pb2.HttpBody(content_type="image/png", data=png))

    async def GetQrSign(self, request: pb.GetQrSignRequest, context: Any) -> pb.GetQrSignResponse:
        async with self.reads.connect() as conn:
            row = await owned_merchant(conn, request.merchant_id, current_caller())
        pdf = await asyncio.to_thread(
            artwork.render_qr_sign, row.name, perk_of(row).label, checkout_url(self.settings, row.qr_token)
        )
        return pb.GetQrSignResponse(http_body=httpbody_pb2.HttpBody(content_type="application/pdf", data=pdf))

    # --- preview links ------------------------------------------------------------------------------------

    def _preview_key(self) -> bytes:
        return self.settings.preview_signing_key.value.encode()

    async def CreatePreviewLink(
        self, request: pb.CreatePreviewLinkRequest, context: Any
    ) -> pb.CreatePreviewLinkResponse:
        async with self.reads.connect() as conn:
            row = await load_merchant(conn, request.merchant_id)
        if row is None:
            raise merchant_not_found(request.merchant_id)
        expires = int(_now().timestamp()) + int(domain.PREVIEW_TTL.total_seconds())
        signature = domain.preview_signature(self._preview_key(), row.id, expires)
        return pb.CreatePreviewLinkResponse(
            merchant_id=row.id,
            preview_url=preview_url(self.settings.portal_base_url, row.id, expires, signature),
            sig=signature,
            expires_at=timestamp(datetime.datetime.fromtimestamp(expires, datetime.UTC)),
        )

    async def ResolvePreviewLink(
        self, request: pb.ResolvePreviewLinkRequest, context: Any
    ) -> pb.ResolvePreviewLinkResponse:
        now = _now()
        # The signature first: without a valid link nothing is said about the merchant id, not even whether it
        # exists.
        if not domain.preview_valid(self._preview_key(), request.merchant_id, request.exp, request.sig, now):
            raise PermissionDenied(Reason.PREVIEW_LINK_INVALID, "this preview link is expired or invalid")
        async with self.reads.connect() as conn:
            row = await load_merchant(conn, request.merchant_id)
            if row is None:
                raise merchant_not_found(request.merchant_id)
            charger = await store.nearest_charger_link(conn, row.id)
            visits = await visit_count(conn, row.id)
        photos = list(row.photo_urls)
        open_now, open_until = open_status(row, now)
        return pb.ResolvePreviewLinkResponse(
            id=row.id,
            name=row.name,
            address=row.address,
            lat=row.lat,
            lng=row.lng,
            photo_url=photos[0] if photos else "",
            photo_urls=photos,
            open_now=open_now,
            open_until=open_until,
            # Google's word for the store (the funnel keeps it fresh); empty for a store not on Google.
            business_status=row.business_status,
            rating=row.rating or 0.0,
            user_rating_count=row.user_rating_count,
            place_id=row.place_id or "",
            claimed=row.owner_user_id is not None,
            category=row.category,
            nearest_charger=(
                pb.PreviewCharger(
                    name=charger.charger_name,
                    network=charger.charger_network,
                    walk_minutes=domain.walk_minutes(charger.walk_time_s),
                    distance_m=charger.walk_distance_m,
                )
                if charger is not None
                else None
            ),
            verified_visit_count=visits,
            expires_at=timestamp(datetime.datetime.fromtimestamp(request.exp, datetime.UTC)),
        )
