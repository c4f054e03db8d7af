"""The database side of search: which calls match a query, on the index migration 0016 keeps.

The index is maintained by triggers, so nothing here writes. It is not an ORM model (it is an index, not data):
the schema comparison skips its tables by name (``is_search_index_table``).

Results are a page of calls newest first, which asks two different things of the database depending on how many
calls match, and neither planner can tell which from its statistics (SQLite has none on FTS5 or our tables;
PostgreSQL's estimate for a phrase or two words of 1 in 100 calls sends it walking thousands of calls), so
``planned_call_matches`` decides from a bounded probe of the index:

- a few matches (up to ``SELECTIVE_MATCHES``): start from them and sort them. PostgreSQL gets the probe's call
  ids as one array parameter (``id = ANY(...)``: one statement text whatever their number, nothing to render per
  id, and a plan that starts from them even when generic); SQLite goes FTS5 -> call_search_rows -> calls by key,
  the account compared with a unary ``+`` so it cannot walk the account's calls instead;
- many: walk the account's calls newest first, checking each (PostgreSQL: the tsvector by key; SQLite: FTS5 by
  rowid, a seek in its doclists) until the page is full: what a LIKE scan does well, without reading the text.
"""

from __future__ import annotations

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    any_,
    bindparam,
    cast,
    column,
    exists,
    literal,
    literal_column,
    select,
    table,
)
from sqlalchemy.dialects.postgresql import ARRAY, TSQUERY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BindParameter, UnaryExpression

from callplane.core.calls.models import Call
from callplane.core.search.query import SearchQuery

SEARCH_TABLE = "call_search"
SELECTIVE_MATCHES = 2000

# PostgreSQL: one row per call with its tsvector (GIN-indexed).
_POSTGRES = table(SEARCH_TABLE, column("call_id"), column("account_id"), column("document"))
# SQLite: the FTS5 table (its own name is the column MATCH applies to) and the call id <-> FTS5 rowid map.
_FTS5 = table(SEARCH_TABLE, column("rowid"))
_ROWS = table("call_search_rows", column("id"), column("call_id"))


def is_search_index_table(name: str) -> bool:
    """The index's tables: call_search, SQLite's call_search_rows and FTS5's shadow tables (call_search_data...)."""
    return name == SEARCH_TABLE or name.startswith(f"{SEARCH_TABLE}_")


def dialect_of(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _fts5_match(query: SearchQuery) -> ColumnElement[bool]:
    return literal_column(SEARCH_TABLE).op("MATCH")(bindparam("search_match", query.fts5_match(), type_=String))


def _fts5_rowids(query: SearchQuery) -> Select[tuple[int]]:
    return select(_FTS5.c.rowid).where(_fts5_match(query))


def call_matches(query: SearchQuery, *, dialect: str, account_id: str | None) -> ColumnElement[bool]:
    """A plain condition on `calls`: the call matches every term of ``query`` (``account_id`` narrows the index
    lookup on PostgreSQL; the caller's own statement still scopes the tenant). Correct on both databases; on
    SQLite the plan is SQLite's guess, so a page of newest calls is faster through ``planned_call_matches``."""
    if dialect == "postgresql":
        return Call.id.in_(_postgres_matching(query, account_id))
    if dialect == "sqlite":
        return Call.id.in_(select(_ROWS.c.call_id).where(_ROWS.c.id.in_(_fts5_rowids(query))))
    raise NotImplementedError(f"search on {dialect}")


def _postgres_matching(query: SearchQuery, account_id: str | None) -> Select[tuple[str]]:
    # Values go into the SQL text as literals (escaped by the dialect), not as parameters: a prepared statement
    # run a few times switches to a generic plan, which cannot tell a word in every call from a word in none (the
    # probe went from 3 ms to 80 ms at its sixth run) and so would take one plan for both.
    tsquery = cast(_literal("search_tsquery", query.postgres_tsquery()), TSQUERY)
    matching = select(_POSTGRES.c.call_id).where(_POSTGRES.c.document.op("@@")(tsquery))
    if account_id is None:
        return matching
    return matching.where(_POSTGRES.c.account_id == _literal("search_account_id", account_id))


def _literal(name: str, value: str) -> BindParameter[str]:
    return bindparam(name, value, type_=String, literal_execute=True)


async def planned_call_matches(
    session: AsyncSession, query: SearchQuery, *, account_id: str | None
) -> ColumnElement[bool]:
    """The calls of ``account_id`` (None: every account) matching every term of ``query``, written so the database
    takes the right plan for a page of newest calls (see the module docstring); add it to any select of Call."""
    dialect = dialect_of(session)
    if dialect == "postgresql":
        probe = _postgres_matching(query, account_id).limit(literal_column(str(SELECTIVE_MATCHES + 1)))
        found = list(await session.scalars(probe))
        # Few: the page is those calls, by key. Many: the planner walks the account's calls newest first.
        few = len(found) <= SELECTIVE_MATCHES
        matching = (
            Call.id == any_(bindparam("search_call_ids", found, type_=ARRAY(String)))
            if few
            else Call.id.in_(_postgres_matching(query, account_id))
        )
        return matching if account_id is None else and_(Call.account_id == account_id, matching)
    if dialect != "sqlite":
        raise NotImplementedError(f"search on {dialect}")
    fts5_probe = select(literal(1)).select_from(_FTS5).where(_fts5_match(query)).limit(SELECTIVE_MATCHES + 1)
    if len((await session.execute(fts5_probe)).all()) <= SELECTIVE_MATCHES:
        by_key = call_matches(query, dialect=dialect, account_id=account_id)
        if account_id is None:
            return by_key
        account: ColumnElement[str] = Call.__table__.c.account_id
        not_by_index = UnaryExpression(account, operator=operators.custom_op("+"), type_=account.type)
        return and_(not_by_index == account_id, by_key)
    rowid_of_call = select(_ROWS.c.id).where(_ROWS.c.call_id == Call.id).correlate(Call).scalar_subquery()
    each = exists(select(literal(1)).select_from(_FTS5).where(_fts5_match(query), _FTS5.c.rowid == rowid_of_call))
    return each if account_id is None else and_(Call.account_id == account_id, each)
