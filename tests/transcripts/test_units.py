"""The pure parts: language tags, guards, merge order and the text formats, on hand-built transcripts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from callplane.core.transcripts import (
    ChannelTranscript,
    Segment,
    Speaker,
    Transcript,
    TranscriptFormat,
    UnsupportedLanguage,
    Word,
    merge_turns,
    render,
    render_text,
    whisper_language,
)
from callplane.core.transcripts.engine import AsrSettings
from callplane.core.transcripts.guards import (
    GuardLimits,
    collapse_loops,
    drop_reason,
    drop_repeated_segments,
    loudest_window_dbfs,
)
from callplane.core.transcripts.whisper import FasterWhisperEngine, _ChannelSpeech, _Packing, _Span, _windows

LIMITS = GuardLimits(
    compression_ratio_threshold=2.4,
    log_prob_threshold=-1.0,
    no_speech_threshold=0.6,
    min_segment_confidence=0.2,
    max_repeats=3,
)


def seg(text: str, start: float, end: float, confidence: float = 0.9, no_speech: float = 0.01) -> Segment:
    words = text.split()
    step = (end - start) / max(1, len(words))
    return Segment(
        text=text,
        start_s=start,
        end_s=end,
        confidence=confidence,
        no_speech_probability=no_speech,
        words=tuple(Word(w, start + i * step, start + (i + 1) * step, 0.9) for i, w in enumerate(words)),
    )


def stereo(caller: list[Segment], agent: list[Segment]) -> Transcript:
    return Transcript(
        language="en-US",
        duration_s=60.0,
        channels=(
            ChannelTranscript(0, Speaker.CALLER, tuple(caller), 60.0),
            ChannelTranscript(1, Speaker.AGENT, tuple(agent), 60.0),
        ),
    )


@pytest.mark.parametrize(
    ("tag", "code"),
    [("en-US", "en"), ("en-GB", "en"), ("es-ES", "es"), ("fr-FR", "fr"), ("FR_fr", "fr"), ("de", "de")],
)
def test_language_tags(tag: str, code: str) -> None:
    assert whisper_language(tag, known=frozenset({"en", "es", "fr", "de"})) == code


@pytest.mark.parametrize("tag", ["", "english", "e", "en-", "xx-YY", "12-34"])
def test_bad_language_tags(tag: str) -> None:
    with pytest.raises(UnsupportedLanguage):
        whisper_language(tag, known=frozenset({"en", "es", "fr"}))


def test_settings_defaults_follow_the_measurements() -> None:
    settings = AsrSettings()
    assert (settings.resolved_compute_type(), settings.cpu_threads, settings.vad_threshold) == ("int8", 1, 0.2)
    assert AsrSettings(device="cuda").resolved_compute_type() == "float16"
    assert settings.budget_s(5.0) == 30.0 and settings.budget_s(600.0) == 600.0


def test_loops_collapse_but_real_repetition_survives() -> None:
    loop = "thank you " * 12 + "goodbye"
    kept, looped = collapse_loops(loop.split(), max_repeats=3)
    assert looped and [loop.split()[i] for i in kept] == ["thank", "you", "goodbye"]
    speech = "no, no, no. I said no".split()
    kept, looped = collapse_loops(speech, max_repeats=3)
    assert not looped and len(kept) == len(speech)
    kept, looped = collapse_loops(["bye"] * 6, max_repeats=3)
    assert looped and kept == [0]


def test_repeated_segments_are_dropped_after_the_limit() -> None:
    segments = [seg("Hello?", i, i + 0.5) for i in range(6)] + [seg("Yes, hi.", 7, 8)]
    kept, dropped = drop_repeated_segments(segments, max_repeats=3)
    assert [s.text for s in kept] == ["Hello?"] * 3 + ["Yes, hi."] and dropped == 3


@pytest.mark.parametrize(
    ("segment", "ratio", "logprob", "level", "reason"),
    [
        (seg("I want to cancel", 0, 1), 1.2, -0.2, -20.0, None),
        (seg("I want to cancel", 0, 1), 1.2, -0.2, -70.0, "silence"),
        (seg("the the the the the", 0, 1), 3.1, -0.2, -20.0, "repetitive"),
        (seg("hmm", 0, 1, no_speech=0.9), 1.0, -1.5, -20.0, "no speech"),
        (seg("mumble", 0, 1, confidence=0.1), 1.0, -2.3, -20.0, "low confidence"),
        (seg("Thanks for watching!", 0, 1, confidence=0.4), 1.0, -0.9, -30.0, "silence phrase"),
        (seg("Thank you for calling", 0, 1, confidence=0.4), 1.0, -0.9, -30.0, None),
        (seg("...", 0, 1), 1.0, -0.2, -20.0, "empty"),
    ],
)
def test_guards(segment: Segment, ratio: float, logprob: float, level: float, reason: str | None) -> None:
    assert drop_reason(segment, compression_ratio=ratio, avg_logprob=logprob, limits=LIMITS, level_dbfs=level) == reason


def test_loudest_window_finds_a_short_word_in_a_long_pause() -> None:
    rate = 16_000
    samples = np.zeros(rate * 10, dtype=np.float32)
    assert loudest_window_dbfs(samples, rate) == -120.0
    samples[rate * 5 : rate * 5 + 2400] = 0.5 * np.sin(np.arange(2400) * 0.3)
    assert loudest_window_dbfs(samples, rate) > -10.0
    assert loudest_window_dbfs(samples, rate, 0.0, 4.0) == -120.0


def test_merge_interleaves_by_time_and_joins_same_speaker() -> None:
    transcript = stereo(
        caller=[seg("Hi, I need help.", 0.5, 1.5), seg("My order is late.", 1.8, 3.0), seg("Thanks!", 9.0, 9.5)],
        agent=[seg("Sure, what is the order number?", 3.4, 5.0), seg("Found it, it ships today.", 6.0, 8.5)],
    )
    turns = merge_turns(transcript)
    assert [(t.speaker, t.text) for t in turns] == [
        (Speaker.CALLER, "Hi, I need help. My order is late."),
        (Speaker.AGENT, "Sure, what is the order number? Found it, it ships today."),
        (Speaker.CALLER, "Thanks!"),
    ]
    assert (turns[0].start_s, turns[0].end_s) == (0.5, 3.0) and len(turns[0].words) == 8
    assert render(transcript, TranscriptFormat.CALLER) == "Hi, I need help. My order is late. Thanks!"
    assert render(transcript, "agent") == "Sure, what is the order number? Found it, it ships today."
    assert render(transcript, TranscriptFormat.CALLER_AGENT_BLOCK) == (
        "Caller: Hi, I need help. My order is late. Thanks!\n"
        "Agent: Sure, what is the order number? Found it, it ships today."
    )
    assert render(transcript, TranscriptFormat.CALLER_AGENT_CONVERSATION) == (
        "Caller: Hi, I need help. My order is late.\n"
        "Agent: Sure, what is the order number? Found it, it ships today.\n"
        "Caller: Thanks!"
    )
    assert render_text(transcript).splitlines()[2] == "[0:09] Caller: Thanks!"


def test_overlapping_speech_orders_by_start_then_channel() -> None:
    transcript = stereo(
        caller=[seg("Wait", 2.0, 2.4)], agent=[seg("So as I was saying", 1.0, 3.0), seg("yes", 2.0, 2.2)]
    )
    assert [t.speaker for t in merge_turns(transcript)] == [Speaker.AGENT, Speaker.CALLER, Speaker.AGENT]


def test_a_segment_spanning_the_other_speakers_turn_is_cut_at_its_pause() -> None:
    # Whisper returned the agent's two questions as one segment; the caller answered in the pause between.
    words = (Word("How", 0.5, 0.7, 0.9), Word("can", 0.7, 0.9, 0.9), Word("I", 0.9, 1.0, 0.9))
    later = (Word("Your", 4.0, 4.2, 0.9), Word("number?", 4.2, 4.8, 0.9))
    spanning = Segment("How can I Your number?", 0.5, 4.8, 0.9, 0.01, words + later)
    transcript = stereo(caller=[seg("I want to cancel", 1.5, 3.2)], agent=[spanning])
    assert [(t.speaker, t.text) for t in merge_turns(transcript)] == [
        (Speaker.AGENT, "How can I"),
        (Speaker.CALLER, "I want to cancel"),
        (Speaker.AGENT, "Your number?"),
    ]


def test_mono_is_one_unlabelled_track_split_at_pauses() -> None:
    mono = Transcript(
        language="en-US",
        duration_s=20.0,
        channels=(
            ChannelTranscript(0, None, (seg("Hello.", 0, 1), seg("Hi there.", 1.5, 2), seg("Bye.", 9, 10)), 20.0),
        ),
    )
    assert [t.text for t in merge_turns(mono)] == ["Hello. Hi there.", "Bye."]
    assert render(mono, TranscriptFormat.CALLER) == render(mono, TranscriptFormat.AGENT) == ""
    expected = "Hello. Hi there.\nBye."
    assert render(mono, TranscriptFormat.CALLER_AGENT_CONVERSATION) == render(mono, "caller_agent_block") == expected


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="transcript"):
        render(stereo([], []), "transcript")


def _speech(channel: int, *spans_s: tuple[float, float]) -> _ChannelSpeech:
    samples = np.zeros(16_000 * 400, dtype=np.float32)
    spans = tuple((int(start * 16_000), int(end * 16_000)) for start, end in spans_s)
    return _ChannelSpeech(channel=channel, samples=samples, spans=spans, leads=())


def test_a_short_calls_channels_are_packed_into_one_window_in_time_order() -> None:
    caller, agent = _speech(0, (4.0, 8.0), (12.0, 15.0)), _speech(1, (0.0, 3.5), (8.5, 11.5))
    (window,) = _windows([caller, agent], window_s=30.0, gap_s=0.5)
    assert [(span.channel, span.start / 16_000) for span in window] == [(1, 0.0), (0, 4.0), (1, 8.5), (0, 12.0)]
    # Off: one decode per channel, as before packing.
    assert [[span.channel for span in w] for w in _windows([caller, agent], 0.0, 0.5)] == [[0, 0], [1, 1]]


def test_a_long_call_keeps_a_decode_per_channel_when_packing_would_add_windows() -> None:
    # 20 alternating 7.5 s turns: 75 s a channel, 3 windows each alone; packed, the gaps leave room for 3 turns a
    # window, so 7 windows.
    caller = _speech(0, *((15.0 * i, 15.0 * i + 7.5) for i in range(10)))
    agent = _speech(1, *((15.0 * i + 7.5, 15.0 * i + 15.0) for i in range(10)))
    assert [len(window) for window in _windows([caller, agent], 30.0, 0.5)] == [10, 10]
    # 7 s turns: 4 fit a window with their gaps, so 5 windows packed against 6 alone.
    caller = _speech(0, *((14.0 * i, 14.0 * i + 7.0) for i in range(10)))
    agent = _speech(1, *((14.0 * i + 7.0, 14.0 * i + 14.0) for i in range(10)))
    assert [len(window) for window in _windows([caller, agent], 30.0, 0.5)] == [4] * 5


@dataclasses.dataclass
class _RawWord:
    start: float
    end: float
    word: str
    probability: float = 0.9


@dataclasses.dataclass
class _RawSegment:
    start: float
    end: float
    text: str
    words: list[_RawWord]


def test_packed_words_go_back_to_their_channel_and_recording_time() -> None:
    speech = {0: _speech(0, (4.0, 8.0)), 1: _speech(1, (0.0, 3.5), (8.5, 11.5))}
    packing = _Packing([_Span(1, 0, 56_000), _Span(0, 64_000, 128_000), _Span(1, 136_000, 184_000)], speech, gap_s=0.5)
    assert packing.audio().shape == (int((3.5 + 0.5 + 4.0 + 0.5 + 3.0) * 16_000),)
    # Decoded time: agent 0-3.5, gap, caller 4.0-8.0, gap, agent 8.5-11.5.
    raw = _RawSegment(
        0.2,
        9.5,
        " Hi there. Hello. Yes.",
        [
            _RawWord(0.2, 1.0, " Hi"),
            _RawWord(1.0, 3.4, " there."),
            _RawWord(3.6, 4.6, " Hello."),  # starts in the gap: kept inside the caller's span
            _RawWord(8.6, 9.5, " Yes."),
        ],
    )
    pieces = packing.restore(raw)
    assert [(channel, piece.text, piece.start, piece.end) for channel, piece in pieces] == [
        (1, " Hi there.", 0.2, 3.4),
        (0, " Hello.", 4.0, 4.6),
        (1, " Yes.", 8.6, 9.5),
    ]


def test_a_packed_window_that_lost_a_channel_decodes_that_channel_again_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The guards dropped every piece of one speaker in the packed decode (a loop): that channel is decoded
    alone for a second chance, and what the packed decode kept of the other speaker stays as it was, even when
    the budget runs out meanwhile (a French call once came back empty that way)."""
    speech = {0: _speech(0, (4.0, 8.0)), 1: _speech(1, (0.0, 3.5))}
    packing = _Packing([_Span(1, 0, 56_000), _Span(0, 64_000, 128_000)], speech, gap_s=0.5)
    said = {0: Segment("Hello.", 4.0, 4.6, 0.9, 0.0), 1: Segment("Hi there.", 0.2, 3.4, 0.9, 0.0)}
    decoded: list[list[int]] = []
    alone_stops = False

    def fake_decode(
        window: _Packing, code: str, deadline: float, first: bool = False
    ) -> tuple[list[tuple[int, Segment | None]], bool]:
        decoded.append(window.channels)
        if len(window.channels) == 2:
            return [(1, said[1]), (0, None)], False  # the caller's piece dropped by a guard
        return [(window.channels[0], said[window.channels[0]])], alone_stops

    engine = FasterWhisperEngine.__new__(FasterWhisperEngine)  # no model: the decode is replaced
    monkeypatch.setattr(engine, "_decode", fake_decode)
    pieces, stopped = engine._decode_window(packing, "en", float("inf"), True)
    assert decoded == [[0, 1], [0]]
    assert not stopped and pieces == [(1, said[1]), (0, said[0])]
    # The second decode ran out of time: the packed decode's words stay, the call is marked stopped.
    decoded.clear()
    alone_stops = True
    assert engine._decode_window(packing, "en", float("inf"), True) == ([(1, said[1]), (0, said[0])], True)
    # A window where both channels were heard is kept as decoded.
    decoded.clear()
    monkeypatch.setattr(
        engine, "_decode", lambda window, code, deadline, first=False: ([(0, said[0]), (1, said[1])], False)
    )
    assert engine._decode_window(packing, "en", float("inf"), False) == ([(0, said[0]), (1, said[1])], False)
