"""ledger: accounts, immutable transfers and entries, idempotency keys, and post_transfer()

Revision ID: 0002
Revises: 0001

post_transfer() is the whole of one movement of value, run server-side in one statement (so in one
transaction and one round trip): idempotency check, accounts created on first use, both account rows
locked in id order (no deadlocks between transfers), the balance check under the lock, the transfer,
both balance updates and both entries. Refusals (insufficient balance, a reservation already settled…)
are returned rather than raised, so the idempotency row that remembers them commits with them.
"""

import re

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE TABLE accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type smallint NOT NULL,
    owner_id text NOT NULL,
    currency smallint NOT NULL,
    balance bigint NOT NULL DEFAULT 0,
    debits_total bigint NOT NULL DEFAULT 0,
    credits_total bigint NOT NULL DEFAULT 0,
    -- Only the external-funding account (money entering or leaving the system) may go below zero.
    may_go_negative boolean NOT NULL DEFAULT false,
    opened_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_ref_unique UNIQUE (type, owner_id, currency),
    CONSTRAINT accounts_non_negative CHECK (may_go_negative OR balance >= 0)
);

CREATE TABLE transfers (
    id uuid PRIMARY KEY,
    scope text NOT NULL,
    idempotency_key text NOT NULL,
    kind smallint NOT NULL,
    phase smallint NOT NULL,
    currency smallint NOT NULL,
    amount bigint NOT NULL CONSTRAINT transfers_amount_positive CHECK (amount > 0),
    from_account_id bigint NOT NULL REFERENCES accounts (id),
    to_account_id bigint NOT NULL REFERENCES accounts (id),
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    reversal_of uuid REFERENCES transfers (id),
    reversed_amount bigint NOT NULL DEFAULT 0,
    -- RESERVE rows: where POST sends the money, and whether the reservation is open/posted/voided.
    pending_to_account_id bigint REFERENCES accounts (id),
    reservation_state smallint,
    -- POST and VOID rows: the reservation they settle.
    reservation_id uuid REFERENCES transfers (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT transfers_two_accounts CHECK (from_account_id <> to_account_id),
    CONSTRAINT transfers_reversal_bounded CHECK (reversed_amount BETWEEN 0 AND amount)
);
CREATE UNIQUE INDEX transfers_scope_key ON transfers (scope, idempotency_key);
CREATE INDEX transfers_reversal_of ON transfers (reversal_of) WHERE reversal_of IS NOT NULL;
CREATE INDEX transfers_from ON transfers (from_account_id, created_at DESC);
CREATE INDEX transfers_to ON transfers (to_account_id, created_at DESC);

CREATE TABLE entries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transfer_id uuid NOT NULL REFERENCES transfers (id),
    account_id bigint NOT NULL REFERENCES accounts (id),
    amount bigint NOT NULL,  -- signed: a credit is positive, a debit negative
    balance_after bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX entries_account ON entries (account_id, id DESC);
CREATE INDEX entries_transfer ON entries (transfer_id);

CREATE TABLE idempotency_keys (
    scope text NOT NULL,
    key text NOT NULL,
    request_hash bytea NOT NULL,
    transfer_id uuid REFERENCES transfers (id),
    error_reason text,
    error_metadata jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

CREATE FUNCTION ensure_account(p_type smallint, p_owner text, p_currency smallint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    SELECT id INTO v_id FROM accounts WHERE type = p_type AND owner_id = p_owner AND currency = p_currency;
    IF v_id IS NULL THEN
        INSERT INTO accounts (type, owner_id, currency, may_go_negative)
        VALUES (p_type, p_owner, p_currency, p_type = 7)
        ON CONFLICT ON CONSTRAINT accounts_ref_unique DO NOTHING
        RETURNING id INTO v_id;
        IF v_id IS NULL THEN
            SELECT id INTO v_id FROM accounts WHERE type = p_type AND owner_id = p_owner AND currency = p_currency;
        END IF;
    END IF;
    RETURN v_id;
END;
$$;

CREATE FUNCTION post_transfer(
    p_scope text,
    p_key text,
    p_hash bytea,
    p_id uuid,                    -- NULL: the database picks a random id
    p_kind smallint,
    p_phase smallint,
    p_currency smallint,
    p_amount bigint,              -- NULL with p_reversal_of: whatever is left of the original
    p_from_type smallint, p_from_owner text,
    p_to_type smallint, p_to_owner text,
    p_metadata jsonb,
    p_up_to_available boolean,    -- move min(p_amount, balance) instead of refusing
    p_reversal_of uuid,
    p_pending_to_type smallint, p_pending_to_owner text,  -- RESERVE: the destination of the later POST
    p_reservation_id uuid,        -- POST/VOID: the reservation settled
    p_reservation_state smallint  -- POST/VOID: its state afterwards (2 posted, 3 voided)
) RETURNS TABLE (
    transfer_id uuid, amount bigint, from_balance bigint, to_balance bigint,
    replayed boolean, error_reason text, error_metadata jsonb, created_at timestamptz
)
LANGUAGE plpgsql AS $$
DECLARE
    v_existing idempotency_keys%ROWTYPE;
    v_first_type smallint; v_first_owner text; v_second_type smallint; v_second_owner text;
    v_from_id bigint; v_to_id bigint; v_pending_id bigint;
    v_from accounts%ROWTYPE;
    v_original transfers%ROWTYPE;
    v_amount bigint := p_amount;
    v_from_balance bigint; v_to_balance bigint;
    v_error text; v_error_metadata jsonb;
    v_id uuid := COALESCE(p_id, gen_random_uuid());
BEGIN
    -- 1. Idempotency: a concurrent duplicate waits here for the first attempt to commit.
    INSERT INTO idempotency_keys (scope, key, request_hash) VALUES (p_scope, p_key, p_hash)
    ON CONFLICT (scope, key) DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO v_existing FROM idempotency_keys k WHERE k.scope = p_scope AND k.key = p_key;
        IF v_existing.request_hash <> p_hash THEN
            RETURN QUERY SELECT NULL::uuid, NULL::bigint, NULL::bigint, NULL::bigint, false,
                'IDEMPOTENCY_KEY_REUSED'::text, '{}'::jsonb, NULL::timestamptz;
            RETURN;
        END IF;
        IF v_existing.transfer_id IS NOT NULL THEN
            RETURN QUERY SELECT t.id, t.amount,
                (SELECT e.balance_after FROM entries e WHERE e.transfer_id = t.id AND e.account_id = t.from_account_id),
                (SELECT e.balance_after FROM entries e WHERE e.transfer_id = t.id AND e.account_id = t.to_account_id),
                true, NULL::text, NULL::jsonb, t.created_at
            FROM transfers t WHERE t.id = v_existing.transfer_id;
            RETURN;
        END IF;
        RETURN QUERY SELECT NULL::uuid, NULL::bigint, NULL::bigint, NULL::bigint, true,
            v_existing.error_reason, v_existing.error_metadata, NULL::timestamptz;
        RETURN;
    END IF;

    -- 2. Accounts. The credited account is created on first use (in a fixed order, so two first uses
    --    cannot deadlock); a debited account must exist already, unless it is external funding (money
    --    entering the system), so a typo in an owner id cannot open an empty account and write a refusal.
    SELECT a.id INTO v_from_id FROM accounts a
    WHERE a.type = p_from_type AND a.owner_id = p_from_owner AND a.currency = p_currency;
    IF v_from_id IS NULL AND p_from_type <> 7 THEN
        v_error := 'ACCOUNT_NOT_FOUND';
        UPDATE idempotency_keys k SET error_reason = v_error, error_metadata = '{}'::jsonb
        WHERE k.scope = p_scope AND k.key = p_key;
        RETURN QUERY SELECT NULL::uuid, NULL::bigint, NULL::bigint, NULL::bigint, false, v_error, '{}'::jsonb,
            NULL::timestamptz;
        RETURN;
    END IF;
    IF (p_from_type, p_from_owner) <= (p_to_type, p_to_owner) THEN
        v_from_id := ensure_account(p_from_type, p_from_owner, p_currency);
        v_to_id := ensure_account(p_to_type, p_to_owner, p_currency);
    ELSE
        v_to_id := ensure_account(p_to_type, p_to_owner, p_currency);
        v_from_id := ensure_account(p_from_type, p_from_owner, p_currency);
    END IF;
    IF p_pending_to_type IS NOT NULL THEN
        v_pending_id := ensure_account(p_pending_to_type, p_pending_to_owner, p_currency);
    END IF;

    -- 3. Both rows locked in id order: concurrent transfers over the same accounts serialize.
    PERFORM 1 FROM accounts a WHERE a.id IN (v_from_id, v_to_id) ORDER BY a.id FOR UPDATE;
    SELECT * INTO v_from FROM accounts a WHERE a.id = v_from_id;

    -- 4. What the transfer settles or reverses, locked too.
    IF p_reservation_id IS NOT NULL THEN
        SELECT * INTO v_original FROM transfers t WHERE t.id = p_reservation_id FOR UPDATE;
        IF v_original.reservation_state IS DISTINCT FROM 1 THEN
            v_error := 'TRANSFER_NOT_RESERVED';
            v_error_metadata := jsonb_build_object('reservation_state', v_original.reservation_state);
        ELSE
            v_amount := v_original.amount;
        END IF;
    ELSIF p_reversal_of IS NOT NULL THEN
        SELECT * INTO v_original FROM transfers t WHERE t.id = p_reversal_of FOR UPDATE;
        IF v_amount IS NULL THEN
            v_amount := v_original.amount - v_original.reversed_amount;
        END IF;
        IF v_original.reversed_amount >= v_original.amount THEN
            v_error := 'TRANSFER_ALREADY_REVERSED';
            v_error_metadata := jsonb_build_object('reversal_transfer_id', (
                SELECT t.id FROM transfers t WHERE t.reversal_of = p_reversal_of ORDER BY t.created_at DESC, t.id LIMIT 1
            )::text);
        ELSIF v_original.reversed_amount + v_amount > v_original.amount THEN
            v_error := 'REVERSAL_EXCEEDS_TRANSFER';
            v_error_metadata := jsonb_build_object('remaining', v_original.amount - v_original.reversed_amount);
        END IF;
    END IF;

    -- 5. The balance check, under the lock.
    IF v_error IS NULL THEN
        IF p_up_to_available AND NOT v_from.may_go_negative THEN
            v_amount := LEAST(v_amount, v_from.balance);
        END IF;
        IF v_amount <= 0 OR (NOT v_from.may_go_negative AND v_from.balance < v_amount) THEN
            v_error := 'INSUFFICIENT_BALANCE';
            v_error_metadata := jsonb_build_object('balance', v_from.balance::text, 'amount', COALESCE(p_amount, v_amount)::text);
        END IF;
    END IF;

    IF v_error IS NOT NULL THEN
        -- Remembered: the same key and request get the same refusal, even after the balance changed.
        UPDATE idempotency_keys k SET error_reason = v_error, error_metadata = v_error_metadata
        WHERE k.scope = p_scope AND k.key = p_key;
        RETURN QUERY SELECT NULL::uuid, NULL::bigint, v_from.balance, NULL::bigint, false, v_error, v_error_metadata,
            NULL::timestamptz;
        RETURN;
    END IF;

    -- 6. The movement itself: one transfer, two balance updates, two entries.
    INSERT INTO transfers (id, scope, idempotency_key, kind, phase, currency, amount, from_account_id,
                           to_account_id, metadata, reversal_of, pending_to_account_id, reservation_state,
                           reservation_id)
    VALUES (v_id, p_scope, p_key, p_kind, p_phase, p_currency, v_amount, v_from_id, v_to_id, p_metadata,
            p_reversal_of, v_pending_id, CASE WHEN p_phase = 2 THEN 1::smallint END, p_reservation_id);
    UPDATE accounts a SET balance = a.balance - v_amount, debits_total = a.debits_total + v_amount, updated_at = now()
    WHERE a.id = v_from_id RETURNING a.balance INTO v_from_balance;
    UPDATE accounts a SET balance = a.balance + v_amount, credits_total = a.credits_total + v_amount, updated_at = now()
    WHERE a.id = v_to_id RETURNING a.balance INTO v_to_balance;
    INSERT INTO entries (transfer_id, account_id, amount, balance_after)
    VALUES (v_id, v_from_id, -v_amount, v_from_balance), (v_id, v_to_id, v_amount, v_to_balance);
    IF p_reservation_id IS NOT NULL THEN
        UPDATE transfers t SET reservation_state = p_reservation_state WHERE t.id = p_reservation_id;
    ELSIF p_reversal_of IS NOT NULL THEN
        UPDATE transfers t SET reversed_amount = t.reversed_amount + v_amount WHERE t.id = p_reversal_of;
    END IF;
    UPDATE idempotency_keys k SET transfer_id = v_id WHERE k.scope = p_scope AND k.key = p_key;
    RETURN QUERY SELECT v_id, v_amount, v_from_balance, v_to_balance, false, NULL::text, NULL::jsonb, now();
END;
$$;
"""


def upgrade() -> None:
    # One statement per execute: asyncpg prepares each, and a prepared statement holds one command.
    for statement in re.split(r"\n(?=CREATE )", SCHEMA.strip()):
        op.execute(statement)


def downgrade() -> None:
    for statement in (
        "DROP FUNCTION post_transfer",
        "DROP FUNCTION ensure_account",
        "DROP TABLE idempotency_keys",
        "DROP TABLE entries",
        "DROP TABLE transfers",
        "DROP TABLE accounts",
    ):
        op.execute(statement)
