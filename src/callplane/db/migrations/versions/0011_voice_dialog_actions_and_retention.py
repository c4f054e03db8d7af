"""voice dialog actions and retention

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23 00:45:00

Reserved so that work on several features can add its tables in a fixed order; filled in by that feature.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("voice_recordings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dialog_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("composed", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_index(batch_op.f("ix_voice_recordings_dialog_id"), ["dialog_id"], unique=False)
    with op.batch_alter_table("voice_calls", schema=None) as batch_op:
        batch_op.create_index("ix_voice_calls_ended_at", ["ended_at"], unique=False)
    with op.batch_alter_table("voice_dialogs", schema=None) as batch_op:
        batch_op.create_index("ix_voice_dialogs_ended_at", ["ended_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("voice_dialogs", schema=None) as batch_op:
        batch_op.drop_index("ix_voice_dialogs_ended_at")
    with op.batch_alter_table("voice_calls", schema=None) as batch_op:
        batch_op.drop_index("ix_voice_calls_ended_at")
    with op.batch_alter_table("voice_recordings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_voice_recordings_dialog_id"))
        batch_op.drop_column("composed")
        batch_op.drop_column("dialog_id")
