"""Full-text search over call transcripts and call details, the same on SQLite (FTS5) and PostgreSQL (tsvector)."""

from callplane.core.search.index import call_matches, is_search_index_table, planned_call_matches
from callplane.core.search.query import MAX_QUERY_CHARS, QUERY_SYNTAX, InvalidSearch, SearchQuery, Term, parse_query
from callplane.core.search.service import SearchHit, SearchPage, find_matches, search_calls
from callplane.core.search.snippets import Fragment, Match

__all__ = [
    "MAX_QUERY_CHARS",
    "QUERY_SYNTAX",
    "Fragment",
    "InvalidSearch",
    "Match",
    "SearchHit",
    "SearchPage",
    "SearchQuery",
    "Term",
    "call_matches",
    "find_matches",
    "is_search_index_table",
    "parse_query",
    "planned_call_matches",
    "search_calls",
]
