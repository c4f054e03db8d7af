"""contact center public ids per tenant

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 03:00:00

Calls and menus get a per-tenant `public_id` (what the contact-center API shows; one global sequence told every
tenant the platform's volume) and a counter row per tenant and kind. Existing rows are numbered 1, 2, ... per
tenant in the order they were created, and the counters start after them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = (("cc_calls", "call"), ("cc_menus", "menu"))


def upgrade() -> None:
    op.create_table(
        "cc_public_id_counters",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("last_value", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_cc_public_id_counters_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "kind", name=op.f("pk_cc_public_id_counters")),
    )
    for table, kind in _KINDS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("public_id", sa.BigInteger(), nullable=True))
        # Window functions and UPDATE ... FROM: PostgreSQL, and SQLite from 3.33. Table names are the constants above.
        op.execute(
            f"UPDATE {table} SET public_id = numbered.n FROM ("  # noqa: S608
            f"SELECT id, row_number() OVER (PARTITION BY account_id ORDER BY id) AS n FROM {table}"
            f") AS numbered WHERE {table}.id = numbered.id"
        )
        op.execute(
            f"INSERT INTO cc_public_id_counters (account_id, kind, last_value) "  # noqa: S608
            f"SELECT account_id, '{kind}', MAX(public_id) FROM {table} GROUP BY account_id"
        )
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("public_id", existing_type=sa.BigInteger(), nullable=False)
            batch_op.create_unique_constraint(
                batch_op.f(f"uq_{table}_account_id_public_id"), ["account_id", "public_id"]
            )


def downgrade() -> None:
    for table, _ in _KINDS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f"uq_{table}_account_id_public_id"), type_="unique")
            batch_op.drop_column("public_id")
    op.drop_table("cc_public_id_counters")
