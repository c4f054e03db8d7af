"""contact center

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23 00:45:00

Agents, menus (queues), outbound numbers, CRM tickets, end users, contact-center calls and their participants.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cc_crm_tickets",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("ticket_id", sa.String(length=255), nullable=False),
        sa.Column("out_contact_id", sa.String(length=255), nullable=False),
        sa.Column("number_e164", sa.String(length=20), nullable=False),
        sa.Column("ticket_url", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_cc_crm_tickets_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cc_crm_tickets")),
        sa.UniqueConstraint("account_id", "ticket_id", name=op.f("uq_cc_crm_tickets_account_id_ticket_id")),
    )
    op.create_table(
        "cc_end_users",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("identifier", sa.String(length=255), nullable=True),
        sa.Column("number_e164", sa.String(length=20), nullable=True),
        sa.Column("out_contact_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_cc_end_users_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cc_end_users")),
    )
    op.create_index("ix_cc_end_users_account_contact", "cc_end_users", ["account_id", "out_contact_id"], unique=False)
    op.create_index("ix_cc_end_users_account_number", "cc_end_users", ["account_id", "number_e164"], unique=False)
    op.create_table(
        "cc_agents",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("first_name", sa.String(length=128), nullable=False),
        sa.Column("last_name", sa.String(length=128), nullable=False),
        sa.Column("agent_number", sa.String(length=64), nullable=True),
        sa.Column("avatar_url", sa.Text(), nullable=True),
        sa.Column("endpoint_type", sa.String(length=8), nullable=False),
        sa.Column("endpoint_user", sa.String(length=255), nullable=False),
        sa.Column("endpoint_host", sa.String(length=255), nullable=True),
        sa.Column("trunk_id", sa.String(length=36), nullable=True),
        sa.Column("can_place_calls", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_idle_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_cc_agents_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["trunk_id"],
            ["voice_sip_trunks.id"],
            name=op.f("fk_cc_agents_trunk_id_voice_sip_trunks"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cc_agents")),
        sa.UniqueConstraint("account_id", "email", name=op.f("uq_cc_agents_account_id_email")),
    )
    op.create_table(
        "cc_outbound_numbers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("number_e164", sa.String(length=20), nullable=False),
        sa.Column("trunk_id", sa.String(length=36), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_cc_outbound_numbers_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["trunk_id"],
            ["voice_sip_trunks.id"],
            name=op.f("fk_cc_outbound_numbers_trunk_id_voice_sip_trunks"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cc_outbound_numbers")),
        sa.UniqueConstraint("account_id", "number_e164", name=op.f("uq_cc_outbound_numbers_account_id_number_e164")),
    )
    op.create_table(
        "cc_menus",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("parent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("menu_type", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("output_msg", sa.Text(), nullable=True),
        sa.Column("hidden", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("outbound_number_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_cc_menus_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["outbound_number_id"],
            ["cc_outbound_numbers.id"],
            name=op.f("fk_cc_menus_outbound_number_id_cc_outbound_numbers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["cc_menus.id"], name=op.f("fk_cc_menus_parent_id_cc_menus"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cc_menus")),
    )
    op.create_index(op.f("ix_cc_menus_account_id"), "cc_menus", ["account_id"], unique=False)
    op.create_table(
        "cc_calls",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("core_call_id", sa.String(length=36), nullable=False),
        sa.Column("parent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("call_type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lang", sa.String(length=8), nullable=False),
        sa.Column("agent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("menu_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("end_user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("end_user_e164", sa.String(length=20), nullable=False),
        sa.Column("outbound_number_e164", sa.String(length=20), nullable=True),
        sa.Column("outbound_trunk_id", sa.String(length=36), nullable=True),
        sa.Column("out_ticket_id", sa.String(length=255), nullable=True),
        sa.Column("out_ticket_url", sa.Text(), nullable=True),
        sa.Column("recording_permission", sa.String(length=48), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fail_reason", sa.String(length=48), nullable=False),
        sa.Column("fail_details", sa.Text(), nullable=True),
        sa.Column("disconnected_by", sa.String(length=48), nullable=False),
        sa.Column("verified_customer", sa.Boolean(), nullable=False),
        sa.Column("bad_actor", sa.Boolean(), nullable=False),
        sa.Column("repeat_customer", sa.Boolean(), nullable=False),
        sa.Column("legs_started", sa.Boolean(), nullable=False),
        sa.Column("agent_leg_id", sa.String(length=36), nullable=True),
        sa.Column("end_user_leg_id", sa.String(length=36), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("extras", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_cc_calls_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["cc_agents.id"], name=op.f("fk_cc_calls_agent_id_cc_agents"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["core_call_id"], ["calls.id"], name=op.f("fk_cc_calls_core_call_id_calls"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["end_user_id"], ["cc_end_users.id"], name=op.f("fk_cc_calls_end_user_id_cc_end_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["menu_id"], ["cc_menus.id"], name=op.f("fk_cc_calls_menu_id_cc_menus"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["cc_calls.id"], name=op.f("fk_cc_calls_parent_id_cc_calls"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cc_calls")),
        sa.UniqueConstraint("core_call_id", name=op.f("uq_cc_calls_core_call_id")),
    )
    op.create_index("ix_cc_calls_account_created", "cc_calls", ["account_id", "created_at", "id"], unique=False)
    op.create_index(op.f("ix_cc_calls_agent_leg_id"), "cc_calls", ["agent_leg_id"], unique=False)
    op.create_index(op.f("ix_cc_calls_end_user_leg_id"), "cc_calls", ["end_user_leg_id"], unique=False)
    op.create_index("ix_cc_calls_menu_status", "cc_calls", ["menu_id", "status"], unique=False)
    op.create_index("ix_cc_calls_status_scheduled", "cc_calls", ["status", "scheduled_at"], unique=False)
    op.create_table(
        "cc_menu_agents",
        sa.Column("menu_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("agent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["cc_agents.id"], name=op.f("fk_cc_menu_agents_agent_id_cc_agents"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["menu_id"], ["cc_menus.id"], name=op.f("fk_cc_menu_agents_menu_id_cc_menus"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("menu_id", "agent_id", name=op.f("pk_cc_menu_agents")),
    )
    op.create_table(
        "cc_participants",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("agent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("end_user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fail_reason", sa.String(length=48), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["cc_agents.id"], name=op.f("fk_cc_participants_agent_id_cc_agents"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["call_id"], ["cc_calls.id"], name=op.f("fk_cc_participants_call_id_cc_calls"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["end_user_id"],
            ["cc_end_users.id"],
            name=op.f("fk_cc_participants_end_user_id_cc_end_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cc_participants")),
    )
    op.create_index(op.f("ix_cc_participants_call_id"), "cc_participants", ["call_id"], unique=False)
    op.create_index("ix_cc_participants_status", "cc_participants", ["status"], unique=False)


def downgrade() -> None:
    op.drop_table("cc_participants")
    op.drop_table("cc_menu_agents")
    op.drop_table("cc_calls")
    op.drop_table("cc_menus")
    op.drop_table("cc_outbound_numbers")
    op.drop_table("cc_agents")
    op.drop_table("cc_end_users")
    op.drop_table("cc_crm_tickets")
