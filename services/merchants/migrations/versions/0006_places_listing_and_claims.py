"""merchants: the Google listing of a store (rating, business status) and claims of stores from the funnel

Revision ID: 0006
Revises: 0005

The funnel creates stores from Google Places; their rating, rating count and business status are Google's,
refreshed whenever the funnel resolves the place again (photos and hours already have columns). A claim is a
request, carried by a valid preview link, to own an unowned store for a business email, PENDING until the
claim sign-in verifies that email; one per store and email (the user who asked, when signed in).
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE merchants ADD COLUMN rating double precision CHECK (rating BETWEEN 0 AND 5)")
    op.execute("ALTER TABLE merchants ADD COLUMN user_rating_count integer NOT NULL DEFAULT 0")
    op.execute("ALTER TABLE merchants ADD COLUMN business_status text NOT NULL DEFAULT ''")
    op.execute(
        """CREATE TABLE merchant_claims (
    id uuid PRIMARY KEY,
    merchant_id text NOT NULL REFERENCES merchants (id),
    user_id text,
    email text NOT NULL,
    status smallint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, email)
)"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE merchant_claims")
    op.execute("ALTER TABLE merchants DROP COLUMN business_status")
    op.execute("ALTER TABLE merchants DROP COLUMN user_rating_count")
    op.execute("ALTER TABLE merchants DROP COLUMN rating")
