"""azure blob access configs

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 06:40:00

Per-account direct access to a customer's own Azure Blob container (Invoca's "Direct Recording Access"), beside
S3's and SFTP's; the account key or SAS token is stored encrypted.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "azure_blob_access_configs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("storage_account", sa.String(length=255), nullable=False),
        sa.Column("container", sa.String(length=255), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("endpoint_url", sa.Text(), nullable=True),
        sa.Column("credential_kind", sa.String(length=8), nullable=False),
        sa.Column("credential_ciphertext", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_azure_blob_access_configs_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_azure_blob_access_configs")),
        sa.UniqueConstraint("account_id", name=op.f("uq_azure_blob_access_configs_account_id")),
    )


def downgrade() -> None:
    op.drop_table("azure_blob_access_configs")
