"""s3 access configs

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 06:30:00

Per-account direct S3 access to a customer's own bucket (Invoca's "Direct Recording Access"), beside SFTP's.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "s3_access_configs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("bucket", sa.String(length=255), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=True),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("endpoint_url", sa.Text(), nullable=True),
        sa.Column("access_key_id", sa.String(length=255), nullable=False),
        sa.Column("secret_access_key_ciphertext", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_s3_access_configs_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_s3_access_configs")),
        sa.UniqueConstraint("account_id", name=op.f("uq_s3_access_configs_account_id")),
    )


def downgrade() -> None:
    op.drop_table("s3_access_configs")
