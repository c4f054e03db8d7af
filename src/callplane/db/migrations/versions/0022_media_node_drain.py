"""media node drain

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 09:55:00

An operator asks a media node to drain (admin API or `callplane media-drain`): the node answers 503 to OPTIONS and
to new INVITEs, new outbound calls go elsewhere, its live calls finish, then it exits (docs/voice.md "Deployment").
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("voice_media_nodes") as batch:
        batch.add_column(sa.Column("drain_requested_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("voice_media_nodes") as batch:
        batch.drop_column("drain_requested_at")
