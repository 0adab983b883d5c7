"""incentives: campaigns, the grants they pay, and the evaluation of each ended charging session

Revision ID: 0002
Revises: 0001

Statuses and kinds are the proto enum numbers (smallint), as in the ledger. The invariants the service
relies on are constraints here, so that no code path can break them: spent never above budget, the
session count never above max_sessions, one live grant per charging session.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("created_by_user_id", sa.Text, nullable=False),
        sa.Column("create_request_id", pg.UUID(as_uuid=True)),
        sa.Column("sponsor_name", sa.Text, nullable=False),
        sa.Column("sponsor_email", sa.Text, nullable=False, server_default=""),
        sa.Column("sponsor_logo_url", sa.Text, nullable=False, server_default=""),
        sa.Column("sponsor_type", sa.Text, nullable=False, server_default=""),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("campaign_type", sa.Text, nullable=False, server_default="custom"),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("reward_kind", sa.SmallInteger, nullable=False),
        sa.Column(
            "cost_per_session_cents", sa.Integer, sa.CheckConstraint("cost_per_session_cents > 0"), nullable=False
        ),
        sa.Column("gross_funding_cents", sa.BigInteger, sa.CheckConstraint("gross_funding_cents > 0"), nullable=False),
        sa.Column("platform_fee_cents", sa.BigInteger, sa.CheckConstraint("platform_fee_cents >= 0"), nullable=False),
        sa.Column("budget_cents", sa.BigInteger, nullable=False),
        sa.Column("spent_cents", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("max_sessions", sa.Integer),
        sa.Column("sessions_granted", sa.Integer, nullable=False, server_default="0"),
        sa.Column("start_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_date", sa.DateTime(timezone=True)),
        sa.Column("time_zone", sa.Text, nullable=False),
        sa.Column("rules", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("cap_per_day", sa.Integer),
        sa.Column("cap_per_campaign", sa.Integer),
        sa.Column("cap_per_charger", sa.Integer),
        sa.Column("funding_status", sa.SmallInteger, nullable=False),
        sa.Column("checkout_session_id", sa.Text),
        sa.Column("checkout_url", sa.Text),
        sa.Column("checkout_expires_at", sa.DateTime(timezone=True)),
        sa.Column("checkout_request_id", pg.UUID(as_uuid=True)),
        sa.Column("funded_at", sa.DateTime(timezone=True)),
        sa.Column("pause_reason", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("spent_cents >= 0 AND spent_cents <= budget_cents", name="campaigns_spend_within_budget"),
        sa.CheckConstraint(
            "sessions_granted >= 0 AND (max_sessions IS NULL OR sessions_granted <= max_sessions)",
            name="campaigns_sessions_within_max",
        ),
        sa.CheckConstraint("end_date IS NULL OR end_date > start_date", name="campaigns_end_after_start"),
        sa.UniqueConstraint("created_by_user_id", "create_request_id", name="campaigns_create_request_unique"),
        sa.UniqueConstraint("checkout_session_id", name="campaigns_checkout_session_unique"),
    )
    # Each process keeps the active campaigns in memory and reloads those changed since it last looked, by
    # updated_at. A trigger rather than every UPDATE remembering to set it: a change the index does not see
    # would leave a paused campaign listed as a candidate (its grant UPDATE still checks the status, but the
    # answer's reasons would be stale).
    op.create_index("campaigns_updated", "campaigns", ["updated_at"])
    op.execute(
        """
        CREATE FUNCTION campaigns_touch() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.updated_at := now();
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER campaigns_touch BEFORE UPDATE ON campaigns FOR EACH ROW EXECUTE FUNCTION campaigns_touch()"
    )
    op.create_index("campaigns_owner_created", "campaigns", ["created_by_user_id", sa.text("created_at DESC")])
    op.create_index("campaigns_created", "campaigns", [sa.text("created_at DESC"), "id"])

    op.create_table(
        "grants",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("session_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("end_sequence", sa.Integer, nullable=False),
        sa.Column("campaign_id", pg.UUID(as_uuid=True), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("driver_id", sa.Text, nullable=False),
        sa.Column("amount_cents", sa.Integer, sa.CheckConstraint("amount_cents > 0"), nullable=False),
        sa.Column("reward_kind", sa.SmallInteger, nullable=False),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column("charger_id", sa.Text, nullable=False, server_default=""),
        sa.Column("duration_minutes", sa.Integer, nullable=False),
        sa.Column("session_start", sa.DateTime(timezone=True), nullable=False),
        # The session's calendar day in the campaign's time zone: what the per-day cap counts.
        sa.Column("campaign_local_day", sa.Date, nullable=False),
        sa.Column("ledger_transfer_id", pg.UUID(as_uuid=True)),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("clawed_back_at", sa.DateTime(timezone=True)),
        sa.Column("clawback_reason", sa.Text, nullable=False, server_default=""),
        sa.Column("clawback_request_id", pg.UUID(as_uuid=True)),
        sa.Column("clawed_back_by", sa.Text),
    )
    # At most one grant per charging session that has not been clawed back: no stacking, no double grant.
    op.create_index(
        "grants_one_live_per_session",
        "grants",
        ["session_id"],
        unique=True,
        postgresql_where=sa.text("status <> 3"),
    )
    op.create_index("grants_session", "grants", ["session_id"])
    op.create_index("grants_campaign_created", "grants", ["campaign_id", sa.text("created_at DESC"), "id"])
    op.create_index(
        "grants_driver_campaign_live", "grants", ["driver_id", "campaign_id"], postgresql_where=sa.text("status <> 3")
    )

    op.create_table(
        "evaluations",
        sa.Column("session_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("end_sequence", sa.Integer, nullable=False),
        sa.Column("driver_id", sa.Text, nullable=False),
        # The EndedSession as received (serialized proto): the idempotency check and the dry runs' input.
        sa.Column("snapshot", sa.LargeBinary, nullable=False),
        sa.Column("outcome", sa.SmallInteger, nullable=False),
        sa.Column("grant_id", pg.UUID(as_uuid=True), sa.ForeignKey("grants.id")),
        # The EvaluateSessionResponse answered, replayed to a repeat.
        sa.Column("response", sa.LargeBinary, nullable=False),
        # +5 for a session that earned no grant (DOMAIN, Reputation); a grant's points come from the grant.
        sa.Column("base_points", sa.Integer, nullable=False, server_default="0"),
        sa.Column("session_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("session_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_minutes", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("session_id", "end_sequence"),
    )
    op.create_index("evaluations_driver_end", "evaluations", ["driver_id", sa.text("session_end DESC")])
    op.create_index("evaluations_end", "evaluations", ["session_end"])


def downgrade() -> None:
    op.drop_table("evaluations")
    op.drop_table("grants")
    op.drop_table("campaigns")
    op.execute("DROP FUNCTION campaigns_touch()")
