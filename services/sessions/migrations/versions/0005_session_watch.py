"""sessions: the session watcher's schedule and leases on charging_sessions_active

Revision ID: 0005
Revises: 0004

Every active session has one row in `charging_sessions_active` (kept by triggers, migration 0004). The watcher
(services/sessions/watching.py) reads the vehicle of each one on a schedule, so the row carries it:

- `watch_at`: when the session is next due for a server-side read. Every reading applied to the session (poll,
  watcher, push) moves it to the reading's time + the watch interval, so a session the app polls is not read
  again by the watcher, and one nobody polls is read every interval.
- `watch_lease`: the claim of the replica reading it now. A claim sets `watch_at` to the lease's end in the same
  statement (`FOR UPDATE SKIP LOCKED`): other replicas skip the row until then, and a replica that dies with the
  lease leaves a row that falls due again when the lease ends — nothing is forgotten, nothing read twice.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "charging_sessions_active",
        sa.Column("watch_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.add_column("charging_sessions_active", sa.Column("watch_lease", pg.UUID(as_uuid=True)))
    op.create_index("charging_sessions_active_watch_at", "charging_sessions_active", ["watch_at"])


def downgrade() -> None:
    op.drop_index("charging_sessions_active_watch_at", table_name="charging_sessions_active")
    op.drop_column("charging_sessions_active", "watch_lease")
    op.drop_column("charging_sessions_active", "watch_at")
