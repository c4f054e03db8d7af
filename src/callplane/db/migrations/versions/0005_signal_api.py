"""signal api: submitted-signal identity and details, pending submissions

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 18:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("call_signals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("partner_unique_id", sa.String(length=255), server_default="", nullable=False))
        batch_op.add_column(sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("revenue", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "signal_submissions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("organization_id", sa.String(length=36), nullable=True),
        sa.Column("search", sa.JSON(), nullable=False),
        sa.Column("signals", sa.JSON(), nullable=False),
        sa.Column("custom_data", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("call_id", sa.String(length=36), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_signal_submissions_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signal_submissions")),
    )
    with op.batch_alter_table("signal_submissions", schema=None) as batch_op:
        batch_op.create_index("ix_signal_submissions_account_status", ["account_id", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("signal_submissions", schema=None) as batch_op:
        batch_op.drop_index("ix_signal_submissions_account_status")
    op.drop_table("signal_submissions")
    with op.batch_alter_table("call_signals", schema=None) as batch_op:
        batch_op.drop_column("updated_at")
        batch_op.drop_column("revenue")
        batch_op.drop_column("occurred_at")
        batch_op.drop_column("partner_unique_id")
