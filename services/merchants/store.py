"""Tables of the merchants schema (created by migrations/versions/0002) for queries; the outbox is here because
every asynchronous cross-service effect of this service goes through it."""

from __future__ import annotations

import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.outbox import outbox_table
from services.common.sweeps import expired_batch

metadata = sa.MetaData()
outbox = outbox_table(metadata)

_TS = sa.DateTime(timezone=True)

merchants = sa.Table(
    "merchants",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("create_request_id", pg.UUID(as_uuid=True)),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("lat", sa.Float, nullable=False),
    sa.Column("lng", sa.Float, nullable=False),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("phone", sa.Text, nullable=False),
    sa.Column("website", sa.Text, nullable=False),
    sa.Column("place_id", sa.Text),
    sa.Column("time_zone", sa.Text, nullable=False),
    sa.Column("opening_periods", pg.JSONB, nullable=False),
    sa.Column("custom_perk_cents", sa.Integer, nullable=False),
    sa.Column("recommended_perk_cents", sa.Integer, nullable=False),
    sa.Column("average_order_value_cents", sa.Integer),
    sa.Column("perk_label", sa.Text, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("owner_user_id", sa.Text),
    sa.Column("zone_slug", sa.Text, nullable=False),
    sa.Column("logo_url", sa.Text, nullable=False),
    sa.Column("photo_urls", pg.JSONB, nullable=False),
    # Google's listing (the funnel refreshes it); None / 0 / "" for a store not on Google.
    sa.Column("rating", sa.Float),
    sa.Column("user_rating_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("business_status", sa.Text, nullable=False, server_default=""),
    sa.Column("short_code", sa.Text, nullable=False),
    sa.Column("qr_token", sa.Text, nullable=False),
    sa.Column("qr_last_used_at", _TS),
    sa.Column("created_at", _TS, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", _TS, nullable=False, server_default=sa.func.now()),
)

square_connections = sa.Table(
    "square_connections",
    metadata,
    sa.Column("merchant_id", sa.Text, primary_key=True),
    sa.Column("square_merchant_id", sa.Text, nullable=False),
    sa.Column("location_id", sa.Text, nullable=False),
    sa.Column("access_token", sa.LargeBinary, nullable=False),
    sa.Column("refresh_token", sa.LargeBinary, nullable=False),
    sa.Column("expires_at", _TS),
    sa.Column("connected_by_user_id", sa.Text, nullable=False),
    sa.Column("connected_at", _TS, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", _TS, nullable=False, server_default=sa.func.now()),
)

square_oauth_states = sa.Table(
    "square_oauth_states",
    metadata,
    sa.Column("state", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("merchant_id", sa.Text),
    sa.Column("expires_at", _TS, nullable=False),
    sa.Column("used_at", _TS),
)


async def delete_expired_square_oauth_states(engine: AsyncEngine, before: datetime.datetime, limit: int) -> int:
    """Deletes up to `limit` Square OAuth states that expired before `before`; answers how many.
    The sweep's batch (services/common/sweeps.py)."""
    batch = expired_batch(square_oauth_states.c.state, square_oauth_states.c.expires_at, before, limit)
    async with engine.begin() as conn:
        return (await conn.execute(batch)).rowcount


charger_links = sa.Table(
    "charger_links",
    metadata,
    sa.Column("merchant_id", sa.Text, primary_key=True),
    sa.Column("charger_id", sa.Text, primary_key=True),
    sa.Column("charger_name", sa.Text, nullable=False),
    sa.Column("charger_address", sa.Text, nullable=False),
    sa.Column("charger_network", sa.Text, nullable=False),
    sa.Column("charger_lat", sa.Float, nullable=False),
    sa.Column("charger_lng", sa.Float, nullable=False),
    sa.Column("walk_distance_m", sa.Integer, nullable=False),
    sa.Column("walk_time_s", sa.Integer, nullable=False),
    sa.Column("is_primary", sa.Boolean, nullable=False),
    sa.Column("created_at", _TS, nullable=False, server_default=sa.func.now()),
)

redemptions = sa.Table(
    "redemptions",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("merchant_id", sa.Text, nullable=False),
    sa.Column("merchant_name", sa.Text, nullable=False),
    sa.Column("driver_id", sa.Text, nullable=False),
    sa.Column("idempotency_key", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("request_hash", sa.LargeBinary, nullable=False),
    sa.Column("square_order_id", sa.Text),
    sa.Column("order_total_cents", sa.Integer, nullable=False),
    sa.Column("requested_discount_cents", sa.Integer, nullable=False),
    sa.Column("discount_cents", sa.Integer, nullable=False),
    sa.Column("merchant_fee_cents", sa.Integer, nullable=False),
    sa.Column("transfer_id", pg.UUID(as_uuid=True)),
    sa.Column("nova_balance_after", sa.Integer),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("failure_reason", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", _TS, nullable=False, server_default=sa.func.now()),
    sa.Column("settled_at", _TS),
)

exclusive_offers = sa.Table(
    "exclusive_offers",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("merchant_id", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("daily_cap", sa.Integer, nullable=False),
    sa.Column("session_cap", sa.Integer, nullable=False),
    sa.Column("eligibility", sa.Text, nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("created_at", _TS, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", _TS, nullable=False, server_default=sa.func.now()),
)

exclusive_sessions = sa.Table(
    "exclusive_sessions",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("driver_id", sa.Text, nullable=False),
    sa.Column("merchant_id", sa.Text, nullable=False),
    sa.Column("charger_id", sa.Text, nullable=False),
    sa.Column("offer_id", sa.Text),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("idempotency_key", pg.UUID(as_uuid=True)),
    sa.Column("lat", sa.Float, nullable=False),
    sa.Column("lng", sa.Float, nullable=False),
    sa.Column("accuracy_m", sa.Float, nullable=False),
    sa.Column("distance_m", sa.Float, nullable=False),
    sa.Column("intent", sa.Text, nullable=False),
    sa.Column("party_size", sa.Integer, nullable=False),
    sa.Column("needs_power_outlet", sa.Boolean, nullable=False),
    sa.Column("is_to_go", sa.Boolean, nullable=False),
    sa.Column("activated_at", _TS, nullable=False, server_default=sa.func.now()),
    sa.Column("expires_at", _TS, nullable=False),
    sa.Column("ended_at", _TS),
    sa.Column("feedback", pg.JSONB),
    sa.Column("cancel_reason", sa.Text),
    sa.Column("canceled_by", sa.Text),
    sa.Column("arrival_code", sa.Text),
    sa.Column("checked_in_at", _TS),
    sa.Column("check_in_order_number", sa.Text),
    sa.Column("check_in_order_total_cents", sa.Integer),
)

verified_visits = sa.Table(
    "verified_visits",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("exclusive_session_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("merchant_id", sa.Text, nullable=False),
    sa.Column("driver_id", sa.Text, nullable=False),
    sa.Column("visit_date", sa.Date, nullable=False),
    sa.Column("visit_number", sa.Integer, nullable=False),
    sa.Column("verification_code", sa.Text, nullable=False),
    sa.Column("lat", sa.Float, nullable=False),
    sa.Column("lng", sa.Float, nullable=False),
    sa.Column("verified_at", _TS, nullable=False, server_default=sa.func.now()),
)

favorites = sa.Table(
    "favorites",
    metadata,
    sa.Column("driver_id", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, primary_key=True),  # "merchant" or "charger"
    sa.Column("target_id", sa.Text, primary_key=True),
    sa.Column("created_at", _TS, nullable=False, server_default=sa.func.now()),
)

amenity_votes = sa.Table(
    "amenity_votes",
    metadata,
    sa.Column("merchant_id", sa.Text, primary_key=True),
    sa.Column("amenity", sa.Text, primary_key=True),  # "bathroom" or "wifi"
    sa.Column("driver_id", sa.Text, primary_key=True),
    sa.Column("vote", sa.SmallInteger, nullable=False),  # +1 up, -1 down
    sa.Column("voted_at", _TS, nullable=False, server_default=sa.func.now()),
)


merchant_claims = sa.Table(
    "merchant_claims",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("merchant_id", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("created_at", _TS, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", _TS, nullable=False, server_default=sa.func.now()),
)


async def square_connected(conn: AsyncConnection, merchant_id: str) -> bool:
    """The store has a Square connection (the portal and the catalog show it)."""
    connected = (
        await conn.execute(
            sa.select(square_connections.c.merchant_id).where(square_connections.c.merchant_id == merchant_id)
        )
    ).first()
    return connected is not None


async def nearest_charger_link(conn: AsyncConnection, merchant_id: str) -> Any:
    """The store's linked charger with the shortest walk (its QR checkout and preview show it), or None."""
    return (
        await conn.execute(
            sa.select(charger_links)
            .where(charger_links.c.merchant_id == merchant_id)
            .order_by(charger_links.c.walk_distance_m, charger_links.c.charger_id)
            .limit(1)
        )
    ).first()
