"""Operator features: audit log, scheduled rollouts, per-device maintenance windows.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.String(32), nullable=False),
        sa.Column("actor_role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(16), nullable=False),
        sa.Column("target_id", sa.String(140), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_target", "audit_log", ["target_type", "target_id"])
    with op.batch_alter_table("rollouts") as b:
        b.add_column(sa.Column("start_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("devices") as b:
        b.add_column(sa.Column("maintenance_windows", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as b:
        b.drop_column("maintenance_windows")
    with op.batch_alter_table("rollouts") as b:
        b.drop_column("start_at")
    op.drop_index("ix_audit_target", "audit_log")
    op.drop_table("audit_log")
