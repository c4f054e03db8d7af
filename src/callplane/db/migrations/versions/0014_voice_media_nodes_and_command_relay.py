"""voice media nodes and command relay

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-23 00:45:00

Media nodes' heartbeats and the durable command rows an API process writes for the node carrying a call.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "voice_media_nodes",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("sip_address", sa.String(length=255), nullable=True),
        sa.Column("live_calls", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voice_media_nodes")),
    )
    op.create_table(
        "voice_node_commands",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("command", sa.String(length=64), nullable=False),
        sa.Column("arguments", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voice_node_commands")),
    )
    with op.batch_alter_table("voice_node_commands", schema=None) as batch_op:
        batch_op.create_index("ix_voice_node_commands_node_status", ["node_id", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("voice_node_commands", schema=None) as batch_op:
        batch_op.drop_index("ix_voice_node_commands_node_status")
    op.drop_table("voice_node_commands")
    op.drop_table("voice_media_nodes")
