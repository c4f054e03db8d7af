"""trace context on jobs and deliveries

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 06:05:00

A job and a webhook delivery keep the W3C traceparent of the span that wrote them, so the worker that runs the
job and the one that sends the delivery continue the API request's trace (observability/tracing.py). Null when
tracing is off, and for rows written before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("jobs", "deliveries"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("trace_context", sa.String(length=64), nullable=True))


def downgrade() -> None:
    for table in ("jobs", "deliveries"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("trace_context")
