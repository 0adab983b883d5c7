"""sessions audit log: the append-only audit_log table (services/common/audit.py)

Revision ID: 0006
Revises: 0005
"""

from alembic import op

from services.common.audit import create_audit_log, drop_audit_log

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_log(op)


def downgrade() -> None:
    drop_audit_log(op)
