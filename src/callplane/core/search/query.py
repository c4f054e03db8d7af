"""What a search box's text means: words that must all appear, "quoted phrases", and `word*` prefixes.

Words are maximal runs of letters and digits, lower-cased, with no stemming and no stop words: the rule both
databases index with (migration 0016), so "3.5" is the phrase 3 5 and "e-mail" the phrase e mail. Everything
else is a separator, so no input is an operator the database could misread: a query is rebuilt from its words
and quoted for each dialect here, never passed through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from callplane.errors import InvalidInput

MAX_QUERY_CHARS = 256
MAX_QUERY_WORDS = 16  # bounds the work one query can ask of the index
MIN_PREFIX_CHARS = 3  # a shorter prefix matches most of the vocabulary: it is searched as a whole word

QUERY_SYNTAX = (
    "Full-text search over transcripts and call details (external id, numbers, agent, customer, metadata): "
    'words that must all appear, "quoted phrases" said in a row, and word* for words beginning so '
    f"(at least {MIN_PREFIX_CHARS} letters). Words are runs of letters and digits, any case; other characters "
    f"only separate them. At most {MAX_QUERY_CHARS} characters and {MAX_QUERY_WORDS} words."
)

WORD = re.compile(r"[^\W_]+")
_PART = re.compile(r'"([^"]*)"?|([^\s"]+)')  # a "quoted phrase" (an unclosed quote runs to the end) or a bare run


class InvalidSearch(InvalidInput):
    """The search query cannot be searched for."""


def words_of(text: str) -> list[str]:
    return [word.lower() for word in WORD.findall(text)]


@dataclass(frozen=True, slots=True)
class Term:
    """Words that must appear in a row; with ``prefix`` the last one matches any word it begins."""

    words: tuple[str, ...]
    prefix: bool = False

    def matches(self, candidate: list[str]) -> bool:
        """Whether ``candidate`` (as many words as the term) is this term."""
        *head, last = self.words
        if candidate[: len(head)] != head:
            return False
        return candidate[-1].startswith(last) if self.prefix else candidate[-1] == last


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A parsed query: every term must match (AND)."""

    text: str
    terms: tuple[Term, ...]

    def postgres_tsquery(self) -> str:
        """tsquery input syntax over the `simple` configuration's lexemes (words are letters and digits only)."""
        return " & ".join(
            f"({' <-> '.join(_tsquery_word(term, i) for i in range(len(term.words)))})" for term in self.terms
        )

    def fts5_match(self) -> str:
        """An FTS5 query: each term a quoted phrase, `*` after it for a prefix."""
        return " AND ".join(f'"{" ".join(term.words)}"{"*" if term.prefix else ""}' for term in self.terms)


def _tsquery_word(term: Term, index: int) -> str:
    word = term.words[index]
    last = index == len(term.words) - 1
    return f"'{word}'{':*' if term.prefix and last else ''}"


def parse_query(text: str) -> SearchQuery:
    """Parse a search box's text; InvalidSearch when it is too long, holds NUL or has no word to search for."""
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidSearch(f"q must be at most {MAX_QUERY_CHARS} characters")
    if "\x00" in text:
        raise InvalidSearch("q must not contain a NUL character")
    terms: list[Term] = []
    for match in _PART.finditer(text):
        phrase, bare = match.groups()
        words = words_of(phrase if phrase is not None else bare)
        if not words:
            continue
        # A bare run such as don't or e-mail is several words in a row, as both databases index it.
        prefix = bare is not None and bare.endswith("*") and len(words[-1]) >= MIN_PREFIX_CHARS
        term = Term(words=tuple(words), prefix=prefix)
        if term not in terms:
            terms.append(term)
    if not terms:
        raise InvalidSearch("q has no word to search for (words are letters and digits)")
    if sum(len(term.words) for term in terms) > MAX_QUERY_WORDS:
        raise InvalidSearch(f"q may hold at most {MAX_QUERY_WORDS} words")
    return SearchQuery(text=text, terms=tuple(terms))
