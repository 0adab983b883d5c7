"""incentives: one checkout at a time, FAILED grants, refunded budget

Revision ID: 0004
Revises: 0003

- `campaigns.checkout_attempt` numbers the Stripe Checkout sessions a campaign has opened (the idempotency key
  of the one being opened) and `checkout_claimed_at` says that a caller is opening it now: concurrent calls wait
  for that one instead of opening a second payable session (services/incentives/funding.py).
- `campaigns.refunded_cents`: budget returned to the sponsor (cancel, or what an ended campaign had left);
  grants may spend budget - spent - refunded.
- Grant status 4 (FAILED): the ledger refused the credit for good. Like a clawed-back grant it does not count
  toward caps, reputation or the one-grant-per-session rule, so evaluate_session() and the partial indexes
  treat statuses 3 and 4 alike.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_DEAD = "status NOT IN (3, 4)"


def _rewrite_evaluate_session(old: str, new: str) -> None:
    """evaluate_session() as it is installed, with its live-grant test rewritten (the body stays 0003's)."""
    bind = op.get_bind()
    definition = bind.execute(sa.text("SELECT pg_get_functiondef('evaluate_session'::regproc)")).scalar_one()
    assert old in definition, "evaluate_session() no longer tests live grants as expected"
    bind.exec_driver_sql(definition.replace(old, new))


def upgrade() -> None:
    op.add_column("campaigns", sa.Column("checkout_attempt", sa.Integer, nullable=False, server_default="0"))
    op.add_column("campaigns", sa.Column("checkout_claimed_at", sa.DateTime(timezone=True)))
    op.add_column("campaigns", sa.Column("refunded_cents", sa.BigInteger, nullable=False, server_default="0"))
    op.create_check_constraint(
        "campaigns_refund_within_remaining",
        "campaigns",
        "refunded_cents >= 0 AND spent_cents + refunded_cents <= budget_cents",
    )
    op.drop_index("grants_one_live_per_session", "grants")
    op.create_index(
        "grants_one_live_per_session", "grants", ["session_id"], unique=True, postgresql_where=sa.text(_DEAD)
    )
    op.drop_index("grants_driver_campaign_live", "grants")
    op.create_index(
        "grants_driver_campaign_live", "grants", ["driver_id", "campaign_id"], postgresql_where=sa.text(_DEAD)
    )
    op.create_index("grants_pending", "grants", ["created_at"], postgresql_where=sa.text("status = 1"))
    _rewrite_evaluate_session("g.status <> 3", "g.status NOT IN (3, 4)")


def downgrade() -> None:
    _rewrite_evaluate_session("g.status NOT IN (3, 4)", "g.status <> 3")
    op.drop_index("grants_pending", "grants")
    for name, columns, unique in (
        ("grants_one_live_per_session", ["session_id"], True),
        ("grants_driver_campaign_live", ["driver_id", "campaign_id"], False),
    ):
        op.drop_index(name, "grants")
        op.create_index(name, "grants", columns, unique=unique, postgresql_where=sa.text("status <> 3"))
    op.drop_constraint("campaigns_refund_within_remaining", "campaigns")
    op.drop_column("campaigns", "refunded_cents")
    op.drop_column("campaigns", "checkout_claimed_at")
    op.drop_column("campaigns", "checkout_attempt")
