"""media stream configs

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 10:25:00

Where an account's media streams go (/calls/1/media-stream-configs): a ws/wss URL, the sample rate and optional
HTTP Basic credentials (the password encrypted with the SecretBox).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "voice_media_stream_configs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("sample_rate", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=True),
        sa.Column("password_encrypted", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_voice_media_stream_configs_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voice_media_stream_configs")),
    )
    op.create_index(
        "ix_voice_media_stream_configs_account_created", "voice_media_stream_configs", ["account_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_voice_media_stream_configs_account_created", table_name="voice_media_stream_configs")
    op.drop_table("voice_media_stream_configs")
