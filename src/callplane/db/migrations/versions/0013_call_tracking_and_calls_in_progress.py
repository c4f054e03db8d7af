"""call tracking and calls in progress

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-23 00:45:00

Promo numbers, custom data values on networks/advertisers/campaigns/promo numbers, tracked calls.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "promo_numbers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("campaign_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("media_type", sa.String(length=64), nullable=True),
        sa.Column("destination_type", sa.String(length=8), nullable=False),
        sa.Column("destination", sa.String(length=255), nullable=False),
        sa.Column("trunk_id", sa.String(length=36), nullable=True),
        sa.Column("configuration_id", sa.String(length=128), nullable=False),
        sa.Column("record", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_promo_numbers_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_promo_numbers_campaign_id_campaigns"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promo_numbers")),
        sa.UniqueConstraint("number", name=op.f("uq_promo_numbers_number")),
    )
    with op.batch_alter_table("promo_numbers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_promo_numbers_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_promo_numbers_campaign_id"), ["campaign_id"], unique=False)

    op.create_table(
        "custom_data_values",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("owner_type", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("field_id", sa.String(length=36), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_custom_data_values_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["field_id"],
            ["custom_data_fields.id"],
            name=op.f("fk_custom_data_values_field_id_custom_data_fields"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_custom_data_values")),
        sa.UniqueConstraint(
            "owner_type", "owner_id", "field_id", name=op.f("uq_custom_data_values_owner_type_owner_id_field_id")
        ),
    )
    with op.batch_alter_table("custom_data_values", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_custom_data_values_account_id"), ["account_id"], unique=False)

    op.create_table(
        "tracked_calls",
        sa.Column("call_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("transaction_id", sa.String(length=64), nullable=False),
        sa.Column("call_record_id", sa.String(length=64), nullable=False),
        sa.Column("external_unique_id", sa.String(length=255), nullable=True),
        sa.Column("promo_number_id", sa.String(length=36), nullable=True),
        sa.Column("calling_e164", sa.String(length=20), nullable=True),
        sa.Column("called", sa.String(length=64), nullable=True),
        sa.Column("destination", sa.String(length=255), nullable=True),
        sa.Column("destination_e164", sa.String(length=20), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_tracked_calls_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_tracked_calls_call_id_calls"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_tracked_calls")),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_tracked_calls_transaction_id")),
    )
    with op.batch_alter_table("tracked_calls", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tracked_calls_phones", ["account_id", "calling_e164", "destination_e164"], unique=False
        )
        batch_op.create_index("ix_tracked_calls_external_unique", ["account_id", "external_unique_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tracked_calls", schema=None) as batch_op:
        batch_op.drop_index("ix_tracked_calls_external_unique")
        batch_op.drop_index("ix_tracked_calls_phones")
    op.drop_table("tracked_calls")
    with op.batch_alter_table("custom_data_values", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_custom_data_values_account_id"))
    op.drop_table("custom_data_values")
    with op.batch_alter_table("promo_numbers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_promo_numbers_campaign_id"))
        batch_op.drop_index(batch_op.f("ix_promo_numbers_account_id"))
    op.drop_table("promo_numbers")
