"""The few statements whose SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite


def insert_ignoring_conflicts(dialect: str, model: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING: the unique index, not a read-then-write, decides who wins a race."""
    if dialect == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing()
    return sqlite.insert(model).on_conflict_do_nothing()
