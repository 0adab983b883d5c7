"""ledger: the Stripe payments behind campaign budgets, their refunds, and the events that need a person

Revision ID: 0005
Revises: 0004

- `campaign_payments`: one row per booked checkout (written with its funding transfers): the PaymentIntent a
  refund goes against, and the amounts. The reconciliation compares it with Stripe.
- `payment_refunds`: one row per Stripe refund the ledger owes, written in the transaction of its ledger
  reversals; the outbox sends it to Stripe keyed by the row id and `stripe_refund_id` records Stripe's answer.
- `budget_refunds`: the idempotency record of RefundCampaignBudget (scope + key → what it returned).
- `payment_issues`: signed Stripe events and deliveries the ledger could not apply (ListPaymentIssues).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaign_payments",
        sa.Column("checkout_session_id", sa.Text, primary_key=True),
        sa.Column("campaign_id", sa.Text, nullable=False),
        sa.Column("payment_intent_id", sa.Text),
        sa.Column("currency", sa.SmallInteger, nullable=False),
        sa.Column("gross_cents", sa.BigInteger, sa.CheckConstraint("gross_cents > 0"), nullable=False),
        sa.Column("fee_cents", sa.BigInteger, nullable=False),
        sa.Column("net_cents", sa.BigInteger, nullable=False),
        sa.Column("booked_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("campaign_payments_campaign", "campaign_payments", ["campaign_id", "booked_at"])
    op.create_table(
        "payment_refunds",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "checkout_session_id",
            sa.Text,
            sa.ForeignKey("campaign_payments.checkout_session_id"),
            nullable=False,
        ),
        sa.Column("payment_intent_id", sa.Text, nullable=False),
        sa.Column("amount_cents", sa.BigInteger, sa.CheckConstraint("amount_cents > 0"), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("stripe_refund_id", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("refunded_at", sa.DateTime(timezone=True)),
    )
    op.create_index("payment_refunds_checkout", "payment_refunds", ["checkout_session_id"])
    op.create_table(
        "budget_refunds",
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("idempotency_key", sa.Text, primary_key=True),
        sa.Column("campaign_id", sa.Text, nullable=False),
        sa.Column("requested_cents", sa.BigInteger, nullable=False),
        sa.Column("refunded_cents", sa.BigInteger, nullable=False),
        sa.Column("stripe_refunded_cents", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "payment_issues",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("object_id", sa.Text, nullable=False, server_default=""),
        sa.Column("problem", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("event_id", "event_type", name="payment_issues_event_unique"),
    )


def downgrade() -> None:
    op.drop_table("payment_issues")
    op.drop_table("budget_refunds")
    op.drop_table("payment_refunds")
    op.drop_table("campaign_payments")
