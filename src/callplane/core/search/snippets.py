"""Where a query matched inside one call: the second it was said, who said it, and a highlighted snippet.

The database says which calls match; this finds the words again in the stored transcript, with the same word rule
(query.WORD: letters and digits, anything else between them), so a match carries the start of the recognised word
it begins with (the turn's start when the transcript has no word timings). Snippets are plain-text fragments;
``Match.snippet_html`` escapes every fragment and marks the matched ones with <mark>, so a transcript saying
<script> renders as text.
"""

from __future__ import annotations

import html
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter, itemgetter
from typing import Any, Literal

from callplane.core.search.query import MAX_QUERY_CHARS, SearchQuery, Term

CONTEXT_CHARS = 60  # shown on each side of a match, cut at a word
MAX_MATCHES = 5  # per call; ``SearchHit.match_count`` still counts them all

Source = Literal["transcript", "details"]


@dataclass(frozen=True, slots=True)
class Fragment:
    """A piece of snippet text; ``highlighted`` when it is (part of) what matched."""

    text: str
    highlighted: bool


@dataclass(frozen=True, slots=True)
class Match:
    """One place a query term matched: in the transcript (with times and speaker) or in the call's details."""

    source: Source
    start_s: float | None
    end_s: float | None
    speaker: str | None
    fragments: tuple[Fragment, ...]

    @property
    def snippet_html(self) -> str:
        """The snippet, HTML-escaped, with each matched part inside <mark>…</mark>: safe to render as is."""
        return "".join(
            f"<mark>{html.escape(part.text)}</mark>" if part.highlighted else html.escape(part.text)
            for part in self.fragments
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "speaker": self.speaker,
            "snippet": self.snippet_html,
        }


@lru_cache(maxsize=256)
def term_pattern(term: Term) -> re.Pattern[str]:
    """The term's words in a row, any case, separated by anything that is not a letter or digit (query.WORD)."""
    body = r"[\W_]+".join(re.escape(word) for word in term.words)
    end = r"[^\W_]*" if term.prefix else r"(?![^\W_])"  # a prefix marks the whole word it begins
    return re.compile(rf"(?<![^\W_]){body}{end}", re.IGNORECASE)


Piece = tuple[float | None, float | None, str]  # (start_s, end_s, text): a recognised word, or a whole turn


@dataclass(frozen=True, slots=True)
class _Block:
    start: int  # offset in the document's text
    end: int
    speaker: str | None
    pieces: Sequence[Piece]  # their texts joined by single spaces are the block's text

    def piece_at(self, offset: int) -> Piece:
        """The piece ``offset`` falls in (the space after a piece, or the newline after the block, is that piece's).

        Walked only for the few matches shown, so building a document stores no per-piece offsets.
        """
        position = self.start
        for piece in self.pieces[:-1]:
            position += len(piece[2]) + 1
            if offset < position:
                return piece
        return self.pieces[-1]


class _Document:
    """Blocks of text (turns, or the details) joined by newlines, each with its timed pieces.

    A piece is a recognised word, or a whole turn when the transcript has no word timings.
    """

    def __init__(self, source: Source) -> None:
        self.source: Source = source
        self.parts: list[str] = []
        self.length = 0
        self.blocks: list[_Block] = []

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add_block(self, pieces: Sequence[Piece], speaker: str | None) -> None:
        if self.parts:
            self.parts.append("\n")
            self.length += 1
        start = self.length
        joined = " ".join(map(itemgetter(2), pieces))
        self.parts.append(joined)
        self.length += len(joined)
        self.blocks.append(_Block(start, self.length, speaker, pieces))

    def _block_at(self, offset: int) -> _Block:
        return self.blocks[bisect_right(self.blocks, offset, key=attrgetter("start")) - 1]

    def matches(self, query: SearchQuery) -> tuple[list[Match], int]:
        """Up to MAX_MATCHES snippets in document order (an occurrence already in a snippet adds none) and the
        number of occurrences of every term."""
        if not self.blocks:
            return [], 0
        text = self.text
        spans = sorted({found.span() for term in query.terms for found in term_pattern(term).finditer(text)})
        shown: list[Match] = []
        shown_until = -1
        for start, end in spans:
            if len(shown) == MAX_MATCHES:
                break
            if start < shown_until:
                continue
            match, shown_until = self._match(text, start, end, spans)
            shown.append(match)
        return shown, len(spans)

    def _match(self, text: str, start: int, end: int, spans: list[tuple[int, int]]) -> tuple[Match, int]:
        block = self._block_at(start)
        cut_start = max(block.start, start - CONTEXT_CHARS)
        if cut_start > block.start:  # begin at a word
            cut_start = min(start, text.find(" ", cut_start) + 1 or start)
        cut_end = min(block.end, max(end, start + 1) + CONTEXT_CHARS)
        if cut_end < block.end:  # end at a word
            space = text.rfind(" ", end, cut_end)
            cut_end = space if space > end else cut_end
        fragments: list[Fragment] = []
        if cut_start > block.start:
            fragments.append(Fragment("… ", False))
        position = cut_start
        nearby = spans[bisect_left(spans, (cut_start - MAX_QUERY_CHARS * 4, 0)) : bisect_right(spans, (cut_end, 0))]
        for mark_start, mark_end in nearby:
            mark_start, mark_end = max(mark_start, position), min(mark_end, cut_end)
            if mark_end <= mark_start:
                continue
            if mark_start > position:
                fragments.append(Fragment(text[position:mark_start], False))
            fragments.append(Fragment(text[mark_start:mark_end], True))
            position = mark_end
        if position < cut_end:
            fragments.append(Fragment(text[position:cut_end], False))
        if cut_end < block.end:
            fragments.append(Fragment(" …", False))
        first = block.piece_at(start)
        last = self._block_at(end - 1).piece_at(end - 1)  # a phrase may run on into the next turn
        match = Match(
            source=self.source, start_s=first[0], end_s=last[1], speaker=block.speaker, fragments=tuple(fragments)
        )
        return match, cut_end


def transcript_document(stored: dict[str, Any]) -> _Document:
    """A stored transcript (``transcript_to_dict``'s shape) as its turns, each with its words' times.

    The turns are stored merged; a turn's words are its speaker's next words up to the turn's end (turns of one
    speaker are in time order and do not overlap), so no merge is redone here. A row not in that shape gives an
    empty document: the database still finds the call, shown without a transcript snippet.
    """
    try:
        return _transcript_document(stored)
    except (KeyError, TypeError, ValueError, AttributeError):
        return _Document("transcript")


def _transcript_document(stored: dict[str, Any]) -> _Document:
    document = _Document("transcript")
    said: dict[str | None, list[tuple[float, float, str]]] = {}
    for channel in stored.get("channels") or ():
        pool = said.setdefault(channel["speaker"], [])
        for segment in channel["segments"]:
            pool += [(float(word["start_s"]), float(word["end_s"]), str(word["text"])) for word in segment["words"]]
    for pool in said.values():
        pool.sort(key=itemgetter(0))
    taken = dict.fromkeys(said, 0)
    for turn in stored.get("turns") or ():
        speaker, until = turn["speaker"], float(turn["end_s"])
        pool, first = said.get(speaker, []), taken.get(speaker, 0)
        last = bisect_right(pool, until, lo=first, key=itemgetter(0))  # the words said by the turn's end
        taken[speaker] = last
        pieces = pool[first:last] if last > first else [(float(turn["start_s"]), until, str(turn["text"]))]
        document.add_block(pieces, speaker)
    return document


def json_values(value: Any) -> Iterable[str]:
    """String and number leaves of a JSON value, in order (what migration 0016 indexes of agent/customer/metadata)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from json_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_values(item)
    elif isinstance(value, str):
        yield value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)


def details_document(parts: Iterable[str | None]) -> _Document:
    """The call's details as one block (external id, numbers, agent, customer and metadata values)."""
    document = _Document("details")
    document.add_block([(None, None, part) for part in parts if part], None)
    return document
