"""voice conferences

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 09:55:00

Conference rooms, their participants (one row per call session), and the conference a call or a recording file
belongs to.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "voice_conferences",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("configuration_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("max_duration_s", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_voice_conferences_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voice_conferences")),
    )
    op.create_index("ix_voice_conferences_account_state", "voice_conferences", ["account_id", "state"])
    op.create_index("ix_voice_conferences_ended_at", "voice_conferences", ["ended_at"])
    op.create_table(
        "voice_conference_participants",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("conference_id", sa.String(length=36), nullable=False),
        sa.Column("call_id", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("muted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("deaf", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("connect_on_early_media", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("left_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["conference_id"],
            ["voice_conferences.id"],
            name=op.f("fk_voice_conference_participants_conference_id_voice_conferences"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voice_conference_participants")),
    )
    op.create_index(
        "ix_voice_conference_participants_conference", "voice_conference_participants", ["conference_id", "created_at"]
    )
    op.create_index(op.f("ix_voice_conference_participants_call_id"), "voice_conference_participants", ["call_id"])
    with op.batch_alter_table("voice_calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("conference_id", sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f("ix_voice_calls_conference_id"), ["conference_id"], unique=False)
    with op.batch_alter_table("voice_recordings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("conference_id", sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f("ix_voice_recordings_conference_id"), ["conference_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("voice_recordings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_voice_recordings_conference_id"))
        batch_op.drop_column("conference_id")
    with op.batch_alter_table("voice_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_voice_calls_conference_id"))
        batch_op.drop_column("conference_id")
    op.drop_index(op.f("ix_voice_conference_participants_call_id"), table_name="voice_conference_participants")
    op.drop_index("ix_voice_conference_participants_conference", table_name="voice_conference_participants")
    op.drop_table("voice_conference_participants")
    op.drop_index("ix_voice_conferences_ended_at", table_name="voice_conferences")
    op.drop_index("ix_voice_conferences_account_state", table_name="voice_conferences")
    op.drop_table("voice_conferences")
