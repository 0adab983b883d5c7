"""merchants: arrival codes — the 6-character code a driver gives a store's staff to check in an exclusive

Revision ID: 0003
Revises: 0002

A code is unique among ACTIVE sessions (status 1, EXCLUSIVE_STATUS_ACTIVE), so what staff type names one live
session; once a session ends its code may be drawn again. checked_in_at is set once, by the check-in.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE exclusive_sessions ADD COLUMN arrival_code text, ADD COLUMN checked_in_at timestamptz, "
        "ADD COLUMN check_in_order_number text, ADD COLUMN check_in_order_total_cents integer"
    )
    op.execute(
        "CREATE UNIQUE INDEX exclusive_sessions_arrival_code ON exclusive_sessions (arrival_code) "
        "WHERE status = 1 AND arrival_code IS NOT NULL"
    )
    # Ended sessions are found by their code too (a second check-in is "already redeemed", a late one "expired").
    op.execute("CREATE INDEX exclusive_sessions_arrival_code_any ON exclusive_sessions (arrival_code, activated_at)")


def downgrade() -> None:
    op.execute("DROP INDEX exclusive_sessions_arrival_code_any")
    op.execute("DROP INDEX exclusive_sessions_arrival_code")
    op.execute(
        "ALTER TABLE exclusive_sessions DROP COLUMN arrival_code, DROP COLUMN checked_in_at, "
        "DROP COLUMN check_in_order_number, DROP COLUMN check_in_order_total_cents"
    )
