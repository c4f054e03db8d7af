"""Signal phrase and example matching, value parsing; and one run on a real transcript."""

from __future__ import annotations

import pytest

from callplane.core.signals import (
    HashedBagOfWordsEmbedder,
    InvalidSignalDefinition,
    InvalidSignalValue,
    SignalDefinition,
    detect_signals,
    match_examples,
    match_phrases,
    parse_signal_value,
)
from callplane.core.transcripts import ChannelTranscript, Segment, Speaker, Transcript, Word


def said(text: str, start: float) -> Segment:
    words = tuple(Word(w, start + i * 0.4, start + i * 0.4 + 0.3, 0.9) for i, w in enumerate(text.split()))
    return Segment(
        text=text, start_s=start, end_s=words[-1].end_s, confidence=0.9, no_speech_probability=0.0, words=words
    )


CALL = Transcript(
    language="en-US",
    duration_s=30.0,
    channels=(
        ChannelTranscript(
            0,
            Speaker.CALLER,
            (
                said("Hi, I'd like to CANCEL my subscription.", 1.0),
                said("Don't renew it, okay? Cancel-ation now.", 12.0),
            ),
            30.0,
        ),
        ChannelTranscript(
            1,
            Speaker.AGENT,
            (said("I can cancel that for you.", 5.0), said("Would you like a free trial of premium instead?", 8.0)),
            30.0,
        ),
    ),
)


def definition(**phrases: list[str]) -> SignalDefinition:
    return SignalDefinition.from_config(name="Cancellation", phrases=phrases)


def test_phrase_is_case_and_punctuation_insensitive_with_evidence() -> None:
    result = match_phrases(definition(caller=["cancel my subscription"]), CALL)
    assert result.detected and result.name == "Cancellation"
    (evidence,) = result.evidence
    assert evidence.speaker is Speaker.CALLER and evidence.words == "CANCEL my subscription."
    assert (evidence.start_s, evidence.end_s) == (2.6, 3.7) and evidence.rule == "cancel my subscription"


def test_phrases_are_per_speaker() -> None:
    assert not match_phrases(definition(agent=["cancel my subscription"]), CALL).detected
    agent_only = match_phrases(definition(agent=["cancel"]), CALL)
    assert [(e.speaker, e.start_s) for e in agent_only.evidence] == [(Speaker.AGENT, 5.8)]
    anyone = match_phrases(definition(any=["cancel"]), CALL)
    assert [e.speaker for e in anyone.evidence] == [Speaker.CALLER, Speaker.AGENT, Speaker.CALLER]


def test_word_boundaries_and_prefixes() -> None:
    assert not match_phrases(definition(any=["cancel my sub"]), CALL).detected
    assert not match_phrases(definition(any=["prem"]), CALL).detected
    assert match_phrases(definition(any=["prem*"]), CALL).evidence[0].words == "premium"
    assert match_phrases(definition(any=["free trial"]), CALL).evidence[0].words == "free trial"
    # Apostrophes join and hyphens split, the same way on both sides.
    assert match_phrases(definition(caller=["dont renew"]), CALL).detected
    assert match_phrases(definition(caller=["don't renew it"]), CALL).detected
    hyphen = match_phrases(definition(caller=["cancel ation"]), CALL)
    assert hyphen.evidence[0].words == "Cancel-ation"  # one word split into two tokens is reported once


def test_mono_applies_every_phrase() -> None:
    mono = Transcript(
        language="en-US", duration_s=10.0, channels=(ChannelTranscript(0, None, (said("I will cancel", 0.0),), 10.0),)
    )
    result = match_phrases(definition(agent=["cancel"]), mono)
    assert result.detected and result.evidence[0].speaker is None


def test_bad_definitions_are_refused() -> None:
    with pytest.raises(InvalidSignalDefinition):
        SignalDefinition.from_config(name="  ")
    with pytest.raises(InvalidSignalDefinition, match="supervisor"):
        SignalDefinition.from_config(name="x", phrases={"supervisor": ["hi"]})
    with pytest.raises(InvalidSignalDefinition):
        SignalDefinition.from_config(name="x", phrases={"caller": ["?!"]})
    with pytest.raises(InvalidSignalDefinition):
        SignalDefinition.from_config(name="x", phrases={"caller": "cancel"})  # type: ignore[dict-item]


def test_examples_match_turns_by_similarity() -> None:
    sale = SignalDefinition.from_config(name="Upsell", examples=["would you like to try premium free"])
    result = match_examples(sale, CALL, HashedBagOfWordsEmbedder(), threshold=0.4)
    assert [e.speaker for e in result.evidence] == [Speaker.AGENT]
    assert result.evidence[0].rule.startswith("example: ") and 0.4 <= result.evidence[0].score <= 1.0
    assert not match_examples(sale, CALL, HashedBagOfWordsEmbedder(), threshold=0.95).detected


def test_detect_signals_combines_rules() -> None:
    definitions = [
        SignalDefinition.from_config(name="Cancellation", phrases={"caller": ["cancel*"]}),
        SignalDefinition.from_config(name="Sale", phrases={"agent": ["your order is confirmed"]}),
        SignalDefinition.from_config(name="Upsell", examples=["would you like a free trial of premium"]),
    ]
    results = {r.name: r for r in detect_signals(definitions, CALL, embedder=HashedBagOfWordsEmbedder())}
    assert results["Cancellation"].detected and len(results["Cancellation"].evidence) == 2
    assert not results["Sale"].detected and results["Sale"].evidence == ()
    assert results["Upsell"].detected
    assert results["Cancellation"].to_dict()["evidence"][0] == {
        "speaker": "caller",
        "start_s": 2.6,
        "end_s": 2.9,
        "words": "CANCEL",
        "rule": "cancel*",
        "score": 1.0,
    }
    # Without an embedder only phrases count.
    assert not {r.name: r for r in detect_signals(definitions, CALL)}["Upsell"].detected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, True),
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("true", True),
        ("TRUE", True),
        (" False ", False),
        ("1", True),
        ("0", False),
        ("Yes", True),
        ("NO", False),
    ],
)
def test_signal_values(value: object, expected: bool) -> None:
    assert parse_signal_value(value) is expected


@pytest.mark.parametrize("value", ["", "maybe", "y", "2", 2, -1, 1.0, [], {}])
def test_invalid_signal_values(value: object) -> None:
    with pytest.raises(InvalidSignalValue, match="true, false, 1, 0, yes or no"):
        parse_signal_value(value)
