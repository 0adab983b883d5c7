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
import dataclasses
import datetime
import hashlib
import urllib.parse
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from nerava.merchants.v1 import merchants_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.context import Caller
from services.common.errors import NotFound, PermissionDenied
from services.merchants import artwork, domain, store
from services.merchants.config import MerchantsSettings
from services.merchants.peers import ChargerDirectory, ChargingSummary, FeePeriod, MerchantNova, NovaTransfer
from services.merchants.reasons import Reason
from services.merchants.records import (
    checkout_url,
    load_merchant,
    merchant_not_found,
    open_status,
    owned_merchant,
    perk_of,
)

COMPLETED = pb.REDEMPTION_STATUS_COMPLETED
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


@dataclasses.dataclass(frozen=True)
class MyStore:
    """The owner's store the portal opens on (a merchants row), its Nova, and the ids of all their stores."""

    merchant: Any
    square_connected: bool
    nova_balance: int
    transfers: list[NovaTransfer]
    merchant_ids: list[str]


@dataclasses.dataclass(frozen=True)
class StoreSummary:
    """The store's COMPLETED redemptions: all of them, and those of the rolling 7 and 30 days."""

    redemptions: int
    discount_cents: int
    unique_drivers: int
    last_7d: int
    last_30d: int
    avg_discount_cents: int


@dataclasses.dataclass(frozen=True)
class Visit:
    """One row of the visit log: a VERIFIED visit (`at` = when verified) or an ACTIVE session (`at` = activation)."""

    id: str
    at: datetime.datetime
    exclusive_id: str
    exclusive_title: str
    driver_anonymized: str
    status: str
    duration_minutes: int
    charger_id: str
    location_name: str
    verification_code: str


@dataclasses.dataclass(frozen=True)
class VisitPage:
    visits: list[Visit]
    total: int
    verified: int


@dataclasses.dataclass(frozen=True)
class PreviewLink:
    merchant_id: str
    url: str
    signature: str
    expires_at: datetime.datetime


@dataclasses.dataclass(frozen=True)
class StorePreview:
    """What a valid preview link shows: the store (a merchants row), whether it is open, its nearest linked
    charger (a charger_links row, or None) and its verified visits."""

    merchant: Any
    open_now: bool
    open_until: str | None
    nearest_charger: Any
    verified_visits: int


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def anonymized_driver(merchant_id: str, driver_id: str) -> str:
    """A stable per-merchant pseudonym: the same driver looks different at two merchants, and the id cannot be
    read back from it."""
    return hashlib.sha256(f"{merchant_id}:{driver_id}".encode()).hexdigest()[:ANONYMIZED_HEX]


def half_up_average(total: int, count: int) -> int:
    """total / count rounded half-up to an integer (non-negative inputs); 0 when count is 0."""
    return (2 * total + count) // (2 * count) if count else 0


async def _my_stores(conn: AsyncConnection, owner_id: str | None) -> Sequence[Any]:
    """The owner's stores, oldest first; MERCHANT_NOT_FOUND when they own none."""
    rows = (
        await conn.execute(
            sa.select(store.merchants)
            .where(store.merchants.c.owner_user_id == owner_id)
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


def _visit(merchant_id: str, row: Any) -> Visit:
    minutes = 0
    if row.status == VERIFIED:
        minutes = max(0, int((row.at - row.activated_at).total_seconds() // 60))
    return Visit(
        id=str(row.id),
        at=row.at,
        exclusive_id=row.offer_id or "",
        exclusive_title=row.title or "",
        driver_anonymized=anonymized_driver(merchant_id, row.driver_id),
        status=row.status,
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


class Portal:
    """The owner's portal: their stores and Nova, the reports over redemptions and visits, the share card and QR
    sign, and the signed preview links. Ownership is checked here (records.owned_merchant) with the caller the
    servicer hands in."""

    def __init__(
        self,
        reads: AsyncEngine,
        ledger: MerchantNova,
        chargers: ChargerDirectory,
        settings: MerchantsSettings,
    ) -> None:
        self.reads = reads
        self.ledger = ledger
        self.chargers = chargers
        self.settings = settings

    async def my_store(self, owner_id: str | None) -> MyStore:
        """The owner's first ACTIVE store (else their oldest), with its Nova; MERCHANT_NOT_FOUND without a store."""
        async with self.reads.connect() as conn:
            rows = await _my_stores(conn, owner_id)
            row = next((r for r in rows if r.status == pb.MERCHANT_STATUS_ACTIVE), rows[0])
            connected = await store.square_connected(conn, row.id)
        balance, transfers = await self.ledger.account(row.id)
        return MyStore(
            merchant=row,
            square_connected=connected,
            nova_balance=balance,
            transfers=transfers,
            merchant_ids=[r.id for r in rows],
        )

    async def insights(self, owner_id: str | None, period: str) -> ChargingSummary:
        """Charging near the owner's store (as `my_store` picks it) over `period` (a key of INSIGHTS_PERIODS),
        from the sessions service."""
        async with self.reads.connect() as conn:
            rows = await _my_stores(conn, owner_id)
            row = next((r for r in rows if r.status == pb.MERCHANT_STATUS_ACTIVE), rows[0])
            chargers = await linked_charger_ids(conn, row.id)
        since = _now() - INSIGHTS_PERIODS[period]
        return await self.chargers.charging_summary(chargers, since, row.time_zone, peak_hours=PEAK_HOURS)

    async def summary(self, merchant_id: str, caller: Caller) -> StoreSummary:
        async with self.reads.connect() as conn:
            await owned_merchant(conn, merchant_id, caller)
            totals = await store_totals(conn, merchant_id, _now())
        return StoreSummary(
            redemptions=totals.total,
            discount_cents=totals.discount,
            unique_drivers=totals.drivers,
            last_7d=totals.last_7d,
            last_30d=totals.last_30d,
            avg_discount_cents=half_up_average(totals.discount, totals.total),
        )

    async def visits(
        self, merchant_id: str, caller: Caller, *, period: str, status: str, size: int, offset: int
    ) -> VisitPage:
        """A page of the store's visits in `period` (a key of VISIT_PERIODS) with `status` (VERIFIED, ACTIVE, or
        "" for both), newest first, and the counts of all of them."""
        now = _now()
        window = VISIT_PERIODS[period]
        rows_of = _visit_rows(merchant_id, status, None if window is None else now - window, now)
        async with self.reads.connect() as conn:
            await owned_merchant(conn, merchant_id, caller)
            page: Sequence[Any] = ()
            if rows_of is None:
                total, verified = 0, 0
            else:
                total, verified = await visit_counts(conn, rows_of)
                page = await visit_page(conn, rows_of, size, offset)
        return VisitPage(visits=[_visit(merchant_id, row) for row in page], total=total, verified=verified)

    async def fee_period(self, merchant_id: str, caller: Caller, month: str) -> FeePeriod:
        """The ledger's fee period of the store for `month` ("YYYY-MM"; "" for the current one)."""
        async with self.reads.connect() as conn:
            await owned_merchant(conn, merchant_id, caller)
        return await self.ledger.fee_period(merchant_id, month)

    async def shareable_lines(self, merchant_id: str, caller: Caller) -> list[str]:
        async with self.reads.connect() as conn:
            row = await owned_merchant(conn, merchant_id, caller)
            totals = await store_totals(conn, merchant_id, _now())
        return domain.shareable_lines(
            row.name,
            domain.RedemptionTotals(
                total=totals.total,
                total_discount_cents=totals.discount,
                last_7d=totals.last_7d,
                last_30d=totals.last_30d,
                last_30d_discount_cents=totals.discount_30d,
            ),
        )

    async def share_card(self, merchant_id: str, caller: Caller, days: int) -> bytes:
        """The store's share card over the last `days`, a PNG."""
        since = _now() - datetime.timedelta(days=days)
        async with self.reads.connect() as conn:
            row = await owned_merchant(conn, merchant_id, caller)
            window = await redemptions_since(conn, row.id, since)
        figures = artwork.ShareCardFigures(
            merchant_name=row.name,
            range_days=days,
            redemption_count=window.redemptions,
            discount_total_cents=window.discount,
            unique_drivers=window.drivers,
            checkout_url=checkout_url(self.settings.checkout_page_url, row.qr_token),
        )
        return await asyncio.to_thread(artwork.render_share_card, figures)

    async def qr_sign(self, merchant_id: str, caller: Caller) -> bytes:
        """The store's printable QR sign, a PDF."""
        async with self.reads.connect() as conn:
            row = await owned_merchant(conn, merchant_id, caller)
        return await asyncio.to_thread(
            artwork.render_qr_sign,
            row.name,
            perk_of(row).label,
            checkout_url(self.settings.checkout_page_url, row.qr_token),
        )

    # --- preview links ------------------------------------------------------------------------------------

    def _preview_key(self) -> bytes:
        return self.settings.preview_signing_key.value.encode()

    async def create_preview_link(self, merchant_id: str) -> PreviewLink:
        async with self.reads.connect() as conn:
            row = await load_merchant(conn, merchant_id)
        if row is None:
            raise merchant_not_found(merchant_id)
        expires = int(_now().timestamp()) + int(domain.PREVIEW_TTL.total_seconds())
        signature = domain.preview_signature(self._preview_key(), row.id, expires)
        return PreviewLink(
            merchant_id=row.id,
            url=preview_url(self.settings.portal_base_url, row.id, expires, signature),
            signature=signature,
            expires_at=datetime.datetime.fromtimestamp(expires, datetime.UTC),
        )

    async def resolve_preview_link(self, merchant_id: str, expires_unix: int, signature: str) -> StorePreview:
        now = _now()
        # The signature first: without a valid link nothing is said about the merchant id, not even whether it
        # exists.
        if not domain.preview_valid(self._preview_key(), merchant_id, expires_unix, signature, now):
            raise PermissionDenied(Reason.PREVIEW_LINK_INVALID, "this preview link is expired or invalid")
        async with self.reads.connect() as conn:
            row = await load_merchant(conn, merchant_id)
            if row is None:
                raise merchant_not_found(merchant_id)
            charger = await store.nearest_charger_link(conn, row.id)
            visits = await visit_count(conn, row.id)
        open_now, open_until = open_status(row, now)
        return StorePreview(
            merchant=row, open_now=open_now, open_until=open_until, nearest_charger=charger, verified_visits=visits
        )
