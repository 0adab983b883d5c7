"""merchants audit log: the append-only audit_log table (services/common/audit.py)

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from services.common.audit import create_audit_log, drop_audit_log

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_log(op)


def downgrade() -> None:
    drop_audit_log(op)
