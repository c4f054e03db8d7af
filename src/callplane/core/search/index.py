"""The database side of search: which calls match a query, on the index migration 0016 keeps.

The index is maintained by triggers, so nothing here writes. It is not an ORM model (it is an index, not data):
the schema comparison skips its tables by name (``is_search_index_table``).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, String, bindparam, cast, column, literal_column, select, table
from sqlalchemy.dialects.postgresql import TSQUERY

from callplane.core.calls.models import Call
from callplane.core.search.query import SearchQuery

SEARCH_TABLE = "call_search"

# PostgreSQL: one row per call with its tsvector (GIN-indexed).
_POSTGRES = table(SEARCH_TABLE, column("call_id"), column("account_id"), column("document"))
# SQLite: the FTS5 table (its own name is the column MATCH applies to) and its call_id, stored unindexed.
_FTS5 = table(SEARCH_TABLE, column("call_id"))


def is_search_index_table(name: str) -> bool:
    """The index's tables: call_search, SQLite's call_search_rows and FTS5's shadow tables (call_search_data...)."""
    return name == SEARCH_TABLE or name.startswith(f"{SEARCH_TABLE}_")


def matching_call_ids(query: SearchQuery, *, dialect: str, account_id: str | None) -> Select[tuple[str]]:
    """The ids of the calls whose transcript or details match every term of ``query``."""
    if dialect == "postgresql":
        tsquery = cast(bindparam("search_tsquery", query.postgres_tsquery(), type_=String), TSQUERY)
        statement = select(_POSTGRES.c.call_id).where(_POSTGRES.c.document.op("@@")(tsquery))
        if account_id is not None:
            statement = statement.where(_POSTGRES.c.account_id == account_id)
        return statement
    if dialect == "sqlite":
        match = bindparam("search_match", query.fts5_match(), type_=String)
        return select(_FTS5.c.call_id).where(literal_column(SEARCH_TABLE).op("MATCH")(match))
    raise NotImplementedError(f"search on {dialect}")


def call_matches(query: SearchQuery, *, dialect: str, account_id: str | None) -> ColumnElement[bool]:
    """A condition on `calls` to add to any select of Call (its own tenant scope and filters still apply)."""
    return Call.id.in_(matching_call_ids(query, dialect=dialect, account_id=account_id))
