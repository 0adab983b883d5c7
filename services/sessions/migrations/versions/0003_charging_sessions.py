"""sessions: vehicle connections (tokens encrypted), charging sessions, EV verification codes

Revision ID: 0003
Revises: 0002

Statuses, sources and reasons are the proto enum numbers (smallint). The rules the state machine relies on are
constraints here: one active session per driver and vehicle, one live EV code per driver and merchant.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vehicle_connections",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("driver_id", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),  # "tesla" or "smartcar"
        sa.Column("account_id", sa.Text, nullable=False, server_default=""),
        sa.Column("vehicle_id", sa.Text),  # the selected vehicle; NULL until chosen
        sa.Column("vin", sa.Text),
        sa.Column("vehicles", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        # AES-256-GCM, bound to the connection id (services/sessions/tokens.py).
        sa.Column("access_token", sa.LargeBinary, nullable=False),
        sa.Column("refresh_token", sa.LargeBinary, nullable=False),
        sa.Column("access_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("telemetry_enabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index(
        "vehicle_connections_one_active",
        "vehicle_connections",
        ["driver_id", "provider"],
        unique=True,
        postgresql_where=sa.text("active"),
    )
    op.create_index("vehicle_connections_vin", "vehicle_connections", ["vin"], postgresql_where=sa.text("active"))

    op.create_table(
        "oauth_states",
        sa.Column("state", sa.Text, primary_key=True),
        sa.Column("driver_id", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("code_verifier", sa.LargeBinary, nullable=False),  # encrypted like the tokens
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
    )

    op.create_table(
        "charging_sessions",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("driver_id", sa.Text, nullable=False),
        sa.Column("vehicle_id", sa.Text, nullable=False),
        sa.Column("source", sa.SmallInteger, nullable=False),
        sa.Column("session_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("session_end", sa.DateTime(timezone=True)),
        sa.Column("duration_minutes", sa.Integer),
        sa.Column("charger_id", sa.Text, nullable=False, server_default=""),
        sa.Column("charger_name", sa.Text, nullable=False, server_default=""),
        sa.Column("charger_network", sa.Text, nullable=False, server_default=""),
        sa.Column("zone_id", sa.Text, nullable=False, server_default=""),
        sa.Column("connector_type", sa.Text, nullable=False, server_default=""),
        sa.Column("power_kw", sa.Float),
        sa.Column("max_power_kw", sa.Float),
        sa.Column("kwh_delivered", sa.Float),
        sa.Column("verified", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("lat", sa.Float),
        sa.Column("lng", sa.Float),
        sa.Column("battery_start_pct", sa.SmallInteger),
        sa.Column("battery_end_pct", sa.SmallInteger),
        sa.Column("quality_score", sa.SmallInteger),
        sa.Column("ended_reason", sa.SmallInteger),
        sa.Column("location_trail", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("last_telemetry_at", sa.DateTime(timezone=True), nullable=False),
        # 1 for the first end; +1 each time the session is reopened and ended again (incentives' idempotency key
        # is session id + end sequence).
        sa.Column("end_sequence", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "session_end IS NULL OR session_end >= session_start", name="charging_sessions_end_after_start"
        ),
        sa.CheckConstraint(
            "(session_end IS NULL) = (ended_reason IS NULL)", name="charging_sessions_ended_with_reason"
        ),
    )
    # One active session per driver and vehicle, whatever the path (poll, telemetry, webhook) or the replica.
    op.create_index(
        "charging_sessions_one_active",
        "charging_sessions",
        ["driver_id", "vehicle_id"],
        unique=True,
        postgresql_where=sa.text("session_end IS NULL"),
    )
    op.create_index("charging_sessions_driver_start", "charging_sessions", ["driver_id", sa.text("session_start DESC")])
    # A charger's activity (GetCharger: sessions of the last 30 days).
    op.create_index("charging_sessions_charger_end", "charging_sessions", ["charger_id", "session_end"])
    # Stale cleanup scans only the active sessions, oldest telemetry first.
    op.create_index(
        "charging_sessions_active_telemetry",
        "charging_sessions",
        ["last_telemetry_at"],
        postgresql_where=sa.text("session_end IS NULL"),
    )

    op.create_table(
        "ev_codes",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("code", sa.Text, nullable=False, unique=True),
        sa.Column("driver_id", sa.Text, nullable=False),
        sa.Column("merchant_place_id", sa.Text, nullable=False, server_default=""),
        sa.Column("merchant_name", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.Text, nullable=False),  # active, redeemed or expired (the app's words)
        sa.Column("vehicle_id", sa.Text, nullable=False, server_default=""),
        sa.Column("battery_level", sa.SmallInteger),
        sa.Column("charge_rate_kw", sa.Float),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redeemed_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ev_codes_driver_created", "ev_codes", ["driver_id", sa.text("created_at DESC")])
    # One active code per driver and merchant (an expired one is marked expired before a new one is issued).
    op.create_index(
        "ev_codes_one_active",
        "ev_codes",
        ["driver_id", "merchant_place_id"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
    )


def downgrade() -> None:
    op.drop_table("ev_codes")
    op.drop_table("charging_sessions")
    op.drop_table("oauth_states")
    op.drop_table("vehicle_connections")
