"""ledger: merchant fee periods, accrued by every REDEMPTION transfer in the transfer's own transaction

Revision ID: 0004
Revises: 0003

A trigger on transfers does the accrual, so no code path can post a redemption without its fee: the
merchant (the owner of the credited MERCHANT_NOVA account) owes 15 % of the Nova redeemed, rounded half-up
per redemption, in the calendar month (UTC) of the transfer. A period that is no longer ACCRUING (invoiced
or paid) takes no more: the fee goes to the next month that is still open, so an invoice never changes
after it was sent and no fee is lost. The period row is locked (FOR UPDATE) before its status is read, so
an accrual and a concurrent close serialize. One accrual row per transfer keeps the period sums auditable
(Σ accruals = the period's totals, checked by services.ledger.invariants).

The rate lives here and in services.ledger.domain.MERCHANT_FEE_BPS; a test holds them equal.
"""

import re

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE TABLE merchant_fee_periods (
    merchant_id text NOT NULL,
    period_start date NOT NULL,
    nova_redeemed bigint NOT NULL DEFAULT 0,
    fee_cents bigint NOT NULL DEFAULT 0,
    redemption_count integer NOT NULL DEFAULT 0,
    status smallint NOT NULL DEFAULT 1,  -- FeePeriodStatus: 1 accruing, 2 invoiced, 3 paid
    invoiced_at timestamptz,
    paid_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, period_start),
    CONSTRAINT merchant_fee_periods_month CHECK (extract(day FROM period_start) = 1),
    CONSTRAINT merchant_fee_periods_status CHECK (status IN (1, 2, 3))
);

CREATE TABLE merchant_fee_accruals (
    transfer_id uuid PRIMARY KEY REFERENCES transfers (id),
    merchant_id text NOT NULL,
    period_start date NOT NULL,
    nova_redeemed bigint NOT NULL,
    fee_cents bigint NOT NULL,
    FOREIGN KEY (merchant_id, period_start) REFERENCES merchant_fee_periods (merchant_id, period_start)
);

CREATE FUNCTION accrue_merchant_fee() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_merchant text;
    v_period date := date_trunc('month', NEW.created_at AT TIME ZONE 'UTC')::date;
    v_status smallint;
    v_fee bigint := (NEW.amount * 1500 + 5000) / 10000;  -- 15 %, half-up, in integers
BEGIN
    SELECT a.owner_id INTO v_merchant FROM accounts a WHERE a.id = NEW.to_account_id;
    LOOP
        INSERT INTO merchant_fee_periods (merchant_id, period_start) VALUES (v_merchant, v_period)
        ON CONFLICT DO NOTHING;
        SELECT p.status INTO v_status FROM merchant_fee_periods p
        WHERE p.merchant_id = v_merchant AND p.period_start = v_period FOR UPDATE;
        EXIT WHEN v_status = 1;
        v_period := (v_period + interval '1 month')::date;
    END LOOP;
    UPDATE merchant_fee_periods p
    SET nova_redeemed = p.nova_redeemed + NEW.amount, fee_cents = p.fee_cents + v_fee,
        redemption_count = p.redemption_count + 1, updated_at = now()
    WHERE p.merchant_id = v_merchant AND p.period_start = v_period;
    INSERT INTO merchant_fee_accruals (transfer_id, merchant_id, period_start, nova_redeemed, fee_cents)
    VALUES (NEW.id, v_merchant, v_period, NEW.amount, v_fee);
    RETURN NULL;
END;
$$;

CREATE TRIGGER transfers_accrue_merchant_fee AFTER INSERT ON transfers
FOR EACH ROW WHEN (NEW.kind = 5) EXECUTE FUNCTION accrue_merchant_fee();
"""


def upgrade() -> None:
    for statement in re.split(r"\n(?=CREATE )", SCHEMA.strip()):
        op.execute(statement)


def downgrade() -> None:
    for statement in (
        "DROP TRIGGER transfers_accrue_merchant_fee ON transfers",
        "DROP FUNCTION accrue_merchant_fee",
        "DROP TABLE merchant_fee_accruals",
        "DROP TABLE merchant_fee_periods",
    ):
        op.execute(statement)
