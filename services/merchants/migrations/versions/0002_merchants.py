"""merchants: stores, QR tokens, Square connections, charger links, redemptions, exclusive offers and visits

Revision ID: 0002
Revises: 0001

What the database itself guarantees:
- a QR token and a Square account belong to one merchant; a charger has at most one primary merchant;
- a redemption is unique per (driver, idempotency key), and a Square order is redeemed at most once (a FAILED
  redemption frees the order: nothing was debited);
- a driver has at most one ACTIVE exclusive session, an exclusive session at most one verified visit, and a
  visit number is unique per merchant and local day (so codes never collide across days — 🐞 in the first
  implementation, where numbers reset daily but codes were globally unique).
"""

import re

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE TABLE merchants (
    id text PRIMARY KEY,
    create_request_id uuid UNIQUE,
    name text NOT NULL,
    category text NOT NULL DEFAULT '',
    lat double precision NOT NULL,
    lng double precision NOT NULL,
    address text NOT NULL DEFAULT '',
    phone text NOT NULL DEFAULT '',
    website text NOT NULL DEFAULT '',
    place_id text,
    time_zone text NOT NULL DEFAULT 'UTC',
    opening_periods jsonb NOT NULL DEFAULT '[]'::jsonb,
    custom_perk_cents integer NOT NULL DEFAULT 0 CHECK (custom_perk_cents >= 0),
    recommended_perk_cents integer NOT NULL DEFAULT 0 CHECK (recommended_perk_cents >= 0),
    average_order_value_cents integer,
    perk_label text NOT NULL DEFAULT '',
    status smallint NOT NULL,
    owner_user_id text,
    zone_slug text NOT NULL DEFAULT '',
    logo_url text NOT NULL DEFAULT '',
    photo_urls jsonb NOT NULL DEFAULT '[]'::jsonb,
    short_code text NOT NULL UNIQUE,
    qr_token text NOT NULL UNIQUE,
    qr_last_used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX merchants_place_id ON merchants (place_id) WHERE place_id IS NOT NULL;
CREATE INDEX merchants_owner ON merchants (owner_user_id, created_at) WHERE owner_user_id IS NOT NULL;

CREATE TABLE square_connections (
    merchant_id text PRIMARY KEY REFERENCES merchants (id),
    square_merchant_id text NOT NULL UNIQUE,
    location_id text NOT NULL,
    access_token bytea NOT NULL,   -- Fernet, key from SQUARE_TOKEN_KEYS
    refresh_token bytea NOT NULL,
    expires_at timestamptz,
    connected_by_user_id text NOT NULL,
    connected_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE square_oauth_states (
    state text PRIMARY KEY,
    user_id text NOT NULL,
    merchant_id text REFERENCES merchants (id),
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);

CREATE TABLE charger_links (
    merchant_id text NOT NULL REFERENCES merchants (id),
    charger_id text NOT NULL,
    charger_name text NOT NULL DEFAULT '',
    charger_address text NOT NULL DEFAULT '',
    charger_network text NOT NULL DEFAULT '',
    charger_lat double precision NOT NULL,
    charger_lng double precision NOT NULL,
    walk_distance_m integer NOT NULL CHECK (walk_distance_m >= 0),
    walk_time_s integer NOT NULL CHECK (walk_time_s >= 0),
    is_primary boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, charger_id)
);
CREATE INDEX charger_links_charger ON charger_links (charger_id);
CREATE UNIQUE INDEX charger_links_one_primary ON charger_links (charger_id) WHERE is_primary;

CREATE TABLE redemptions (
    id uuid PRIMARY KEY,
    merchant_id text NOT NULL REFERENCES merchants (id),
    merchant_name text NOT NULL,
    driver_id text NOT NULL,
    idempotency_key uuid NOT NULL,
    request_hash bytea NOT NULL,
    square_order_id text,
    order_total_cents integer NOT NULL CHECK (order_total_cents > 0),
    -- min(perk, order total): what is asked of the ledger, which moves min(this, the driver's Nova).
    requested_discount_cents integer NOT NULL CHECK (requested_discount_cents > 0),
    discount_cents integer NOT NULL DEFAULT 0 CHECK (discount_cents >= 0),
    merchant_fee_cents integer NOT NULL DEFAULT 0,
    transfer_id uuid,
    nova_balance_after integer,          -- the driver's Nova right after the debit (replays answer it)
    status smallint NOT NULL DEFAULT 1,  -- RedemptionStatus: 1 pending, 2 completed, 3 failed
    failure_reason text,
    attempts integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    settled_at timestamptz,
    CONSTRAINT redemptions_completed_has_transfer CHECK (status <> 2 OR (transfer_id IS NOT NULL AND discount_cents > 0)),
    CONSTRAINT redemptions_driver_key UNIQUE (driver_id, idempotency_key)
);
-- Square order ids are global: once per order, even if its seller's account moved to another store.
CREATE UNIQUE INDEX redemptions_square_order_once ON redemptions (square_order_id)
    WHERE square_order_id IS NOT NULL AND status <> 3;
CREATE INDEX redemptions_merchant ON redemptions (merchant_id, created_at DESC);
CREATE INDEX redemptions_pending ON redemptions (created_at) WHERE status = 1;

CREATE TABLE exclusive_offers (
    id text PRIMARY KEY,
    merchant_id text NOT NULL REFERENCES merchants (id),
    title text NOT NULL,
    description text NOT NULL DEFAULT '',
    daily_cap integer NOT NULL DEFAULT 0,    -- activations per local day; 0: no cap
    session_cap integer NOT NULL DEFAULT 0,  -- ACTIVE sessions at once; 0: no cap
    eligibility text NOT NULL DEFAULT 'charging_only',
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX exclusive_offers_merchant ON exclusive_offers (merchant_id, created_at);

CREATE TABLE exclusive_sessions (
    id uuid PRIMARY KEY,
    driver_id text NOT NULL,
    merchant_id text NOT NULL REFERENCES merchants (id),
    charger_id text NOT NULL,
    offer_id text REFERENCES exclusive_offers (id),
    status smallint NOT NULL DEFAULT 1,  -- ExclusiveStatus: 1 active, 2 completed, 3 expired, 4 canceled
    idempotency_key uuid,
    lat double precision NOT NULL,
    lng double precision NOT NULL,
    accuracy_m double precision NOT NULL DEFAULT 0,
    distance_m double precision NOT NULL,
    intent text NOT NULL DEFAULT '',
    party_size integer NOT NULL DEFAULT 0,
    needs_power_outlet boolean NOT NULL DEFAULT false,
    is_to_go boolean NOT NULL DEFAULT false,
    activated_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    ended_at timestamptz,
    feedback jsonb,
    cancel_reason text,
    canceled_by text
);
CREATE UNIQUE INDEX exclusive_sessions_one_active ON exclusive_sessions (driver_id) WHERE status = 1;
CREATE UNIQUE INDEX exclusive_sessions_driver_key ON exclusive_sessions (driver_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX exclusive_sessions_merchant ON exclusive_sessions (merchant_id, activated_at DESC);
CREATE INDEX exclusive_sessions_active_charger ON exclusive_sessions (charger_id) WHERE status = 1;
CREATE INDEX exclusive_sessions_active_expiry ON exclusive_sessions (expires_at) WHERE status = 1;

CREATE TABLE verified_visits (
    id uuid PRIMARY KEY,
    exclusive_session_id uuid NOT NULL UNIQUE REFERENCES exclusive_sessions (id),
    merchant_id text NOT NULL REFERENCES merchants (id),
    driver_id text NOT NULL,
    visit_date date NOT NULL,      -- the merchant's local day
    visit_number integer NOT NULL,
    verification_code text NOT NULL,
    lat double precision NOT NULL,
    lng double precision NOT NULL,
    verified_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT verified_visits_number UNIQUE (merchant_id, visit_date, visit_number)
);
CREATE INDEX verified_visits_merchant ON verified_visits (merchant_id, verified_at DESC);
"""


def upgrade() -> None:
    for statement in re.split(r"\n(?=CREATE )", SCHEMA.strip()):
        op.execute(statement)


def downgrade() -> None:
    for table in (
        "verified_visits",
        "exclusive_sessions",
        "exclusive_offers",
        "redemptions",
        "charger_links",
        "square_oauth_states",
        "square_connections",
        "merchants",
    ):
        op.execute(f"DROP TABLE {table}")
