"""merchants: drivers' favorites (stores and chargers) and their amenity votes

Revision ID: 0004
Revises: 0003

A driver has a store or a charger among their favorites at most once, and one vote per store and amenity
(+1 up, -1 down), which a new vote replaces.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE TABLE favorites (
    driver_id text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('merchant', 'charger')),
    target_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (driver_id, kind, target_id)
)"""
    )
    op.execute(
        """CREATE TABLE amenity_votes (
    merchant_id text NOT NULL REFERENCES merchants (id),
    amenity text NOT NULL CHECK (amenity IN ('bathroom', 'wifi')),
    driver_id text NOT NULL,
    vote smallint NOT NULL CHECK (vote IN (-1, 1)),
    voted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, amenity, driver_id)
)"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE amenity_votes")
    op.execute("DROP TABLE favorites")
