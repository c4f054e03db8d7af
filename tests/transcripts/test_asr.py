"""The real engine on real speech: whisper-base from the registry packages, espeak-ng voices at 8 kHz."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from callplane.core.transcripts import (
    Speaker,
    Transcript,
    TranscriptFormat,
    UnsupportedAudio,
    UnsupportedLanguage,
    merge_turns,
    render,
    transcript_from_dict,
    transcript_to_dict,
)
from callplane.core.transcripts.whisper import FasterWhisperEngine
from tests.transcripts import speech

pytestmark = pytest.mark.xdist_group("asr")  # one worker loads the model once


def test_each_speaker_gets_their_own_words(call_transcript: Transcript) -> None:
    caller, agent = call_transcript.channels
    assert (caller.channel, caller.speaker, agent.channel, agent.speaker) == (0, Speaker.CALLER, 1, Speaker.AGENT)
    assert {"cancel", "hello"} <= speech.words_of(caller.text)
    assert {"certainly", "help"} <= speech.words_of(agent.text)
    assert "cancel" not in speech.words_of(agent.text)
    assert "certainly" not in speech.words_of(caller.text)
    assert call_transcript.complete and call_transcript.language == "en-US"


def test_words_carry_times_and_confidences(call: speech.StereoCall, call_transcript: Transcript) -> None:
    caller, agent = call_transcript.channels
    for channel in (caller, agent):
        for segment in channel.segments:
            assert 0.0 < segment.confidence <= 1.0
            assert segment.words and all(0.0 <= w.probability <= 1.0 for w in segment.words)
            assert all(w.start_s <= w.end_s for w in segment.words)
            assert segment.start_s == segment.words[0].start_s
    # Whisper's word times are approximate (the evaluation saw up to 0.42 s); the order is what matters.
    assert caller.segments[0].start_s < call.agent_start_s <= agent.segments[0].start_s + 0.5
    assert caller.segments[-1].end_s <= agent.segments[0].start_s


def test_merged_conversation_is_in_time_order(call_transcript: Transcript) -> None:
    turns = merge_turns(call_transcript)
    assert [turn.speaker for turn in turns] == [Speaker.CALLER, Speaker.AGENT]
    conversation = render(call_transcript, TranscriptFormat.CALLER_AGENT_CONVERSATION).splitlines()
    assert conversation[0].startswith("Caller: ") and "cancel" in conversation[0].casefold()
    assert conversation[1].startswith("Agent: ") and "certainly" in conversation[1].casefold()
    assert "certainly" not in render(call_transcript, TranscriptFormat.CALLER).casefold()


def test_json_form_round_trips(call_transcript: Transcript) -> None:
    data = json.loads(json.dumps(transcript_to_dict(call_transcript)))
    assert [t["speaker"] for t in data["turns"]] == ["caller", "agent"]
    assert transcript_to_dict(transcript_from_dict(data)) == data


def test_silence_and_noise_give_no_text(asr: FasterWhisperEngine) -> None:
    rng = np.random.default_rng(7)
    hiss = (rng.standard_normal((2, 8000 * 6)) * 10 ** (-35 / 20)).astype(np.float32)  # -35 dBFS white noise
    hiss[1] = 0.0  # the agent leg is digital silence
    result = asr.transcribe_channels(hiss, "en-US", sample_rate=8000)
    assert [channel.text for channel in result.channels] == ["", ""]
    assert result.complete and merge_turns(result) == []


def test_one_silent_leg_in_a_stereo_call(asr: FasterWhisperEngine, tmp_path: Path) -> None:
    caller = speech.say("Good morning, I have a question about my account.", "en-gb", tmp_path / "c.wav")
    call = tmp_path / "one-sided.wav"
    speech._run("sox", str(caller), "-c", "2", str(call), "remix", "1", "0")  # agent channel all zeros
    result = asr.transcribe_channels(call, "en-GB", budget_s=speech.UNBOUNDED_S)
    assert {"morning", "question", "account"} & speech.words_of(result.channels[0].text)
    assert result.channels[1].segments == ()
    assert [turn.speaker for turn in merge_turns(result)] == [Speaker.CALLER]


@pytest.mark.parametrize(
    ("language", "voice", "sentence", "expected", "at_least"),
    [
        ("en-GB", "en-gb", "Good morning, I have a question about my account.", {"morning", "question", "account"}, 2),
        ("es-ES", "es", "Quiero cancelar mi cuenta, por favor.", {"cancelar", "cuenta", "favor"}, 2),
        # whisper-base on robotic French is weak ("Je vous remercie beaucoup."): one key word is the bar.
        ("fr-FR", "fr-fr", "Bonjour madame, merci beaucoup.", {"merci", "remercie", "beaucoup"}, 1),
    ],
)
def test_languages(
    asr: FasterWhisperEngine,
    tmp_path: Path,
    language: str,
    voice: str,
    sentence: str,
    expected: set[str],
    at_least: int,
) -> None:
    clip = speech.say(sentence, voice, tmp_path / "clip.wav")
    result = asr.transcribe_channels(clip, language, budget_s=speech.UNBOUNDED_S)
    (only,) = result.channels
    assert only.speaker is None and result.language == language
    heard = speech.words_of(only.text)
    assert len(expected & heard) >= at_least, only.text  # espeak is robotic: lenient on purpose


def test_mono_array_at_8khz(asr: FasterWhisperEngine, tmp_path: Path) -> None:
    import wave

    clip = speech.say("Hello, I would like to cancel my subscription please.", "en-us", tmp_path / "m.wav")
    with wave.open(str(clip)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    result = asr.transcribe_channels(pcm, "en-US", sample_rate=8000, budget_s=speech.UNBOUNDED_S)
    assert "cancel" in speech.words_of(result.channels[0].text)
    assert render(result, TranscriptFormat.CALLER) == ""  # mono has no speakers


def test_time_budget_stops_and_marks_partial(asr: FasterWhisperEngine, call: speech.StereoCall) -> None:
    result = asr.transcribe_channels(call.path, "en-US", budget_s=0.0)
    assert not result.complete
    assert all(c.stopped_reason == "time budget exceeded" for c in result.channels)
    assert len(result.channels[0].segments) <= 1  # stopped after the first segment it got


def test_refuses_what_it_cannot_do(asr: FasterWhisperEngine, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedLanguage):
        asr.transcribe_channels(np.zeros(1600, dtype=np.float32), "xx-YY")
    with pytest.raises(UnsupportedAudio):
        asr.transcribe_channels(np.zeros((3, 1600), dtype=np.float32), "en-US")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not audio at all" * 100)
    with pytest.raises(UnsupportedAudio):
        asr.transcribe_channels(garbage, "en-US")
