"""Generation telemetry: time to first token (p95) and decode tokens/s per sample, for the
rollout gates of generative packages.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("telemetry") as t:
        t.add_column(sa.Column("ttft_p95_ms", sa.Float(), nullable=True))
        t.add_column(sa.Column("decode_tps", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("telemetry") as t:
        t.drop_column("decode_tps")
        t.drop_column("ttft_p95_ms")
