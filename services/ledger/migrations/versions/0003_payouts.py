"""ledger: drivers' Stripe Express accounts, payouts, and the Stripe events already handled

Revision ID: 0003
Revises: 0002
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
        "stripe_accounts",
        sa.Column("driver_id", sa.Text, primary_key=True),
        sa.Column("stripe_account_id", sa.Text, nullable=False, unique=True),
        sa.Column("details_submitted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("payouts_enabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("charges_enabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("transfers_active", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "payouts",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("driver_id", sa.Text, nullable=False),
        sa.Column("request_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("amount_cents", sa.Integer, sa.CheckConstraint("amount_cents > 0"), nullable=False),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column("stripe_account_id", sa.Text, nullable=False),
        sa.Column("reservation_transfer_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("stripe_transfer_id", sa.Text),
        sa.Column("failure_reason", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("paid_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("driver_id", "request_id", name="payouts_driver_request_unique"),
    )
    op.create_index("payouts_driver_created", "payouts", ["driver_id", sa.text("created_at DESC")])
    # Reconciliation scans only the payouts whose Stripe answer was lost.
    op.create_index("payouts_unknown", "payouts", ["updated_at"], postgresql_where=sa.text("status = 5"))
    op.create_table(
        "stripe_events",
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("stripe_events")
    op.drop_index("payouts_unknown", table_name="payouts")
    op.drop_index("payouts_driver_created", table_name="payouts")
    op.drop_table("payouts")
    op.drop_table("stripe_accounts")
