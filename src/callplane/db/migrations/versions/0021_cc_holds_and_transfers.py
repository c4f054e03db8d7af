"""contact-center holds and transfers

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 09:45:00

A call and its participants keep their hold time (the end user hears music while held), and each transfer of a
live call to another agent or queue is a row (the CCAI call object's `transfers[]`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    for table in ("cc_calls", "cc_participants"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("hold_started_at", sa.DateTime(timezone=True), nullable=True))
            batch.add_column(sa.Column("hold_ms", sa.Integer(), nullable=True))
    op.create_table(
        "cc_transfers",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("call_id", BIG_ID, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("fail_reason", sa.String(length=48), nullable=False),
        sa.Column("from_agent_id", BIG_ID, nullable=True),
        sa.Column("to_agent_id", BIG_ID, nullable=True),
        sa.Column("from_menu_id", BIG_ID, nullable=True),
        sa.Column("to_menu_id", BIG_ID, nullable=True),
        sa.Column("target_leg_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"], ["cc_calls.id"], name=op.f("fk_cc_transfers_call_id_cc_calls"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["from_agent_id"],
            ["cc_agents.id"],
            name=op.f("fk_cc_transfers_from_agent_id_cc_agents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["to_agent_id"], ["cc_agents.id"], name=op.f("fk_cc_transfers_to_agent_id_cc_agents"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["from_menu_id"], ["cc_menus.id"], name=op.f("fk_cc_transfers_from_menu_id_cc_menus"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["to_menu_id"], ["cc_menus.id"], name=op.f("fk_cc_transfers_to_menu_id_cc_menus"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cc_transfers")),
    )
    op.create_index(op.f("ix_cc_transfers_call_id"), "cc_transfers", ["call_id"], unique=False)


def downgrade() -> None:
    op.drop_table("cc_transfers")
    for table in ("cc_calls", "cc_participants"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("hold_ms")
            batch.drop_column("hold_started_at")
