"""accounts: the audit log (role changes move into it) and feature flags

role_changes was the audit of one action; its rows become audit_log entries ("user.roles.set") and the table
goes. feature_flags keeps the value of each toggled flag per environment; a flag never toggled holds its
default from services/common/flags.py.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from services.common.audit import create_audit_log, drop_audit_log

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_log(op)
    op.execute(
        """
        INSERT INTO audit_log (occurred_at, actor, action, target, reason, request_id, details)
        SELECT c.created_at, c.actor_public_id, 'user.roles.set', 'user:' || u.public_id, c.reason, '',
               jsonb_build_object('old_roles', array_to_string(c.old_roles, ','),
                                  'new_roles', array_to_string(c.new_roles, ','))
        FROM role_changes c JOIN users u ON u.id = c.user_id
        ORDER BY c.id
        """
    )
    op.drop_table("role_changes")
    op.create_table(
        "feature_flags",
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("environment", "name"),
    )


def downgrade() -> None:
    op.drop_table("feature_flags")
    op.create_table(
        "role_changes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("actor_public_id", sa.Text(), nullable=False),
        sa.Column("old_roles", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column("new_roles", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    drop_audit_log(op)
