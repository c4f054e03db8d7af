"""contact center

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23 00:45:00

Reserved so that work on several features can add its tables in a fixed order; filled in by that feature.
"""

from collections.abc import Sequence

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
