"""Search a tenant's calls: the database finds the matching calls, newest first; each gets its matches located.

Results are ordered like the call list (received_at, id descending), not by relevance: a search narrows the call
log, and the same cursor pages both. ``offset`` is there for page-numbered screens (the console).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Text, and_, cast, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.calls import service as calls
from callplane.core.calls.models import Call
from callplane.core.search.index import planned_call_matches
from callplane.core.search.query import SearchQuery, parse_query
from callplane.core.search.snippets import MAX_MATCHES, Match, details_document, json_values, transcript_document
from callplane.core.transcripts.models import CallTranscript, TranscriptStatus
from callplane.errors import InvalidInput

MAX_LIMIT = 500


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A matching call, where it matched (up to snippets.MAX_MATCHES, in order) and how often."""

    call: Call
    matches: tuple[Match, ...]
    match_count: int

    @property
    def first_second(self) -> float | None:
        """When the first transcript match was said (seconds into the recording); None for a details-only match."""
        return next((match.start_s for match in self.matches if match.start_s is not None), None)

    def to_dict(self) -> dict[str, Any]:
        return {"match_count": self.match_count, "matches": [match.to_dict() for match in self.matches]}


@dataclass(frozen=True, slots=True)
class SearchPage:
    hits: list[SearchHit]
    has_more: bool
    next_cursor: str | None  # for the next page by cursor (None when there is none)


async def search_calls(
    session: AsyncSession,
    *,
    account_id: str,
    query: str | SearchQuery,
    limit: int = 50,
    offset: int = 0,
    cursor: str | None = None,
    filters: calls.CallFilters | None = None,
    organization_scope: frozenset[str] | None = None,
) -> SearchPage:
    """One page of the account's calls matching ``query``, newest first, each with its matches.

    ``query`` is a search box's text (see query.py) or an already parsed one; InvalidSearch (an InvalidInput) when
    it cannot be searched for. ``organization_scope`` narrows to those organizations (a scoped token); ``filters``
    are the call list's. Page with ``cursor`` (the previous page's ``next_cursor``) or ``offset``, not both.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise InvalidInput("offset must not be negative")
    if cursor and offset:
        raise InvalidInput("page with cursor or offset, not both")
    parsed = parse_query(query) if isinstance(query, str) else query
    statement = select(Call).where(await planned_call_matches(session, parsed, account_id=account_id))
    if organization_scope is not None:
        statement = statement.where(Call.organization_id.in_(organization_scope))
    if filters is not None:
        statement = calls.filter_calls(statement, account_id=account_id, filters=filters)
    if cursor:
        received_at, call_id = calls.decode_cursor(cursor)
        statement = statement.where(
            or_(Call.received_at < received_at, and_(Call.received_at == received_at, Call.id < call_id))
        )
    statement = statement.order_by(Call.received_at.desc(), Call.id.desc()).offset(offset).limit(limit + 1)
    found = list(await session.scalars(statement))
    has_more = len(found) > limit
    page = found[:limit]
    hits = await find_matches(session, page, parsed)
    return SearchPage(
        hits=hits, has_more=has_more, next_cursor=calls.encode_cursor(page[-1]) if has_more and page else None
    )


async def find_matches(session: AsyncSession, found: Sequence[Call], query: SearchQuery) -> list[SearchHit]:
    """Locate ``query`` in each call's transcript (then its details): times, speakers, snippets. Order is kept.

    For calls some other query selected (with ``call_matches``), e.g. a screen with its own filters.
    """
    stored: dict[str, str] = {}
    if found:
        # The JSON as its text, decoded here by orjson: a page's transcripts (~7 KB each) decode in a third of the
        # time the json module takes, the biggest part of a search's own CPU after the database's.
        rows = await session.execute(
            select(CallTranscript.call_id, cast(CallTranscript.transcript, Text)).where(
                CallTranscript.call_id.in_([call.id for call in found]),
                CallTranscript.status == TranscriptStatus.COMPLETED,
            )
        )
        stored = {call_id: text for call_id, text in rows if text is not None}
    hits = []
    for call in found:
        said, said_count = transcript_document(decode_stored(stored.get(call.id))).matches(query)
        details, details_count = details_document(call_details(call)).matches(query)
        matches = (said + details)[:MAX_MATCHES]
        hits.append(SearchHit(call=call, matches=tuple(matches), match_count=said_count + details_count))
    return hits


def decode_stored(text: str | None) -> Any:
    """A stored transcript's JSON text as Python values, as the json module reads it (an empty one for none)."""
    if text is None:
        return {}
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # what orjson refuses but the json module wrote (NaN, on SQLite)
        return json.loads(text)


def call_details(call: Call) -> list[str | None]:
    """The details migration 0016 indexes after the transcript, in the same order."""
    return [
        call.external_id,
        call.from_e164,
        call.to_e164,
        call.contact_e164,
        *json_values(call.agent),
        *json_values(call.customer),
        *json_values(call.call_metadata),
    ]
