"""Finding a query again in a stored transcript: times, speakers, snippet windows, odd stored shapes."""

from __future__ import annotations

import json
from typing import Any

from callplane.core.search.query import parse_query
from callplane.core.search.service import decode_stored
from callplane.core.search.snippets import MAX_MATCHES, details_document, transcript_document
from callplane.core.transcripts.merge import transcript_to_dict
from callplane.core.transcripts.schemas import Speaker
from tests.search.conftest import Said, transcript_of

LONG = " ".join(f"filler{n}" for n in range(40))


def stored(*turns: Said) -> dict[str, Any]:
    return transcript_to_dict(transcript_of(*turns))


def test_each_match_has_its_own_time_speaker_and_window() -> None:
    document = transcript_document(
        stored(
            Said(Speaker.CALLER, 2.0, f"{LONG} my parcel is late {LONG}"),
            Said(Speaker.AGENT, 40.0, "Which parcel?"),
        )
    )
    matches, count = document.matches(parse_query("parcel"))
    assert count == 2
    first, second = matches
    assert (first.speaker, first.start_s) == ("caller", Said(Speaker.CALLER, 2.0, "").word_start(41))
    assert (second.speaker, second.start_s) == ("agent", 40.5)
    # A long turn is cut around the match, at words, and says so.
    assert first.snippet_html.startswith("… ") and first.snippet_html.endswith(" …")
    assert "my <mark>parcel</mark> is late" in first.snippet_html
    assert second.snippet_html == "Which <mark>parcel</mark>?"


def test_matches_are_capped_but_all_counted() -> None:
    turns = [Said(Speaker.CALLER if n % 2 else Speaker.AGENT, 30.0 * n, f"refund {LONG}") for n in range(9)]
    matches, count = transcript_document(stored(*turns)).matches(parse_query("refund"))
    assert count == 9 and len(matches) == MAX_MATCHES
    assert [match.start_s for match in matches] == [0.0, 30.0, 60.0, 90.0, 120.0]


def test_a_transcript_without_word_timings_gives_the_turn_start() -> None:
    data = stored(Said(Speaker.AGENT, 7.5, "We close at nine tonight."))
    for channel in data["channels"]:
        for segment in channel["segments"]:
            segment["words"] = []
    (match,), _ = transcript_document(data).matches(parse_query('"close at nine"'))
    assert match.start_s == 7.5 and match.speaker == "agent"
    assert match.snippet_html == "We <mark>close at nine</mark> tonight."


def test_a_row_not_in_the_stored_shape_has_no_matches() -> None:
    for odd in ({}, {"turns": "x", "channels": 3}, {"turns": [{"text": "hello"}], "channels": [{}]}):
        assert transcript_document(odd).matches(parse_query("hello")) == ([], 0)


def test_details_are_searched_without_times() -> None:
    (match,), count = details_document(["ext-9", None, "+14155550100", "Gold <tier>"]).matches(parse_query("gold"))
    assert count == 1 and match.start_s is None and match.source == "details"
    assert match.snippet_html == "ext-9 +14155550100 <mark>Gold</mark> &lt;tier&gt;"


def test_stored_text_decodes_as_the_json_module_reads_it() -> None:
    """orjson reads the page's transcripts; what only the json module accepts (SQLite can hold what it wrote: NaN,
    integers beyond 64 bits) is still read, and a missing row is an empty transcript."""
    said = json.dumps(stored(Said(Speaker.CALLER, 1.5, "Héllo, wörld")), ensure_ascii=False)
    assert decode_stored(said) == json.loads(said)
    odd = '{"turns": [], "score": NaN, "big": 123456789012345678901234567890}'
    decoded = decode_stored(odd)
    assert decoded["big"] == 123456789012345678901234567890 and decoded["score"] != decoded["score"]
    assert decode_stored(None) == {}
    assert transcript_document(decode_stored(odd)).matches(parse_query("hello")) == ([], 0)
