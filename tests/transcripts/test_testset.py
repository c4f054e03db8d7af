"""The committed test set through the real default model: word error rate per channel and speaker order.

The calls (tests/transcripts/testset/: 8 kHz stereo MP3 through a telephone channel, caller left, agent right;
English spoken by CMU Flite voices, Spanish and French by espeak-ng) are synthetic speech: whisper-base scores
12.8 % (agent) and 6.8 % (caller) WER over the set with both channels packed into one window (14.9 % and
17.6 % decoded apart), 0-46 % per call and channel (docs/transcription.md), against about 2 % on a natural
voice (shared/spec/asr-evaluation.md). Two gates:

* over the whole set, per channel, at most 20 % (the issue's goal is 15 %, met; the margin is for other CPUs'
  int8 kernels, which can change a few words): catches drift of a few words;
* per call and channel at most 80 %: a swapped, lost or wrongly-languaged channel scores about 100 %. The
  calls are 8-24 words a channel, so one word moves a call's figure by 4-12 points; on an Intel Xeon's int8
  kernels fr_fr_name's agent (13 words) scored 77 % (0-46 % on AMD EPYC), so 65 % was a gate on the CPU model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from callplane.core.transcripts import AsrSettings, Speaker, Transcript, merge_turns
from callplane.core.transcripts.whisper import FasterWhisperEngine, shared_engine
from callplane.testing.speech_calls import CallReference, read_references
from callplane.testing.wer import edit_distance, normalize_words, word_error_rate
from tests.transcripts import speech

pytestmark = pytest.mark.xdist_group("asr")  # one worker loads the model once

TESTSET = Path(__file__).parent / "testset"
REFERENCES = read_references(TESTSET / "references.json")
MAX_CHANNEL_WER = 0.80  # one call, one channel
MAX_POOLED_WER = 0.20  # all calls' words of one channel


@pytest.fixture(scope="module")
def transcripts(asr: FasterWhisperEngine) -> dict[str, Transcript]:
    return {
        ref.name: asr.transcribe_channels(TESTSET / ref.audio, ref.language, budget_s=speech.UNBOUNDED_S)
        for ref in REFERENCES
    }


def test_the_test_set_is_small_stereo_and_covers_the_languages() -> None:
    assert {reference.language for reference in REFERENCES} == {"en-US", "en-GB", "es-ES", "fr-FR"}
    assert sum((TESTSET / reference.audio).stat().st_size for reference in REFERENCES) < 400_000
    for reference in REFERENCES:
        assert {turn.speaker for turn in reference.turns} == {"caller", "agent"}


def test_numbers_are_compared_as_digits() -> None:
    assert normalize_words("Sure, it is two two eight four.") == ["sure", "it", "is", "2284"]
    assert word_error_rate("it is two two eight four", "It is 2284.") == 0.0
    assert word_error_rate("es el cuatro cinco seis siete", "Es el 4567", "es") == 0.0
    assert word_error_rate("two thousand two hundred and eighty four", "2,284") == 0.0


@pytest.mark.parametrize("reference", REFERENCES, ids=[reference.name for reference in REFERENCES])
def test_each_channel_is_transcribed_in_the_call_language_in_speaker_order(
    transcripts: dict[str, Transcript], reference: CallReference
) -> None:
    transcript = transcripts[reference.name]
    assert transcript.language == reference.language and transcript.complete
    assert [channel.speaker for channel in transcript.channels] == [Speaker.CALLER, Speaker.AGENT]
    language = reference.language.split("-")[0]
    for channel in transcript.channels:
        assert channel.speaker is not None
        said = reference.text_of(channel.speaker.value)
        error_rate = word_error_rate(said, channel.text, language)
        assert error_rate <= MAX_CHANNEL_WER, (channel.speaker, error_rate, channel.text)
    # Each turn lands on its own speaker, in the order spoken.
    assert [turn.speaker.value for turn in merge_turns(transcript) if turn.speaker] == reference.speaker_order


def test_word_error_rate_over_the_set_per_channel(transcripts: dict[str, Transcript]) -> None:
    errors = {"caller": 0, "agent": 0}
    words = {"caller": 0, "agent": 0}
    for reference in REFERENCES:
        language = reference.language.split("-")[0]
        for channel in transcripts[reference.name].channels:
            assert channel.speaker is not None
            said = normalize_words(reference.text_of(channel.speaker.value), language)
            errors[channel.speaker.value] += edit_distance(said, normalize_words(channel.text, language))
            words[channel.speaker.value] += len(said)
    rates = {speaker: errors[speaker] / words[speaker] for speaker in errors}
    assert all(rate <= MAX_POOLED_WER for rate in rates.values()), rates


def test_every_word_is_timed_inside_a_turn_of_its_speaker(transcripts: dict[str, Transcript]) -> None:
    # The VAD's speech is decoded back to back; the times must come back in recording time, word by word.
    _assert_words_inside_turns(transcripts, REFERENCES)


def test_an_onset_lead_keeps_times_order_and_words(models_dir: Path) -> None:
    # Each VAD span started 1 s early (docs/transcription.md): Whisper puts a turn's first word at the start of
    # that lead unless it is moved to where its sound starts (es_es_cancel's "Hola" came 1.4 s early).
    engine = shared_engine(AsrSettings(data_dir=models_dir, vad_onset_pad_s=1.0))
    chosen = [reference for reference in REFERENCES if reference.name in ("en_us_cancel", "es_es_cancel")]
    transcripts = {
        ref.name: engine.transcribe_channels(TESTSET / ref.audio, ref.language, budget_s=speech.UNBOUNDED_S)
        for ref in chosen
    }
    _assert_words_inside_turns(transcripts, chosen)
    for reference in chosen:
        transcript = transcripts[reference.name]
        assert [turn.speaker.value for turn in merge_turns(transcript) if turn.speaker] == reference.speaker_order
    assert "cancelar" in transcripts["es_es_cancel"].channels[0].text


def _assert_words_inside_turns(transcripts: dict[str, Transcript], references: list[CallReference]) -> None:
    for reference in references:
        for channel in transcripts[reference.name].channels:
            assert channel.speaker is not None
            turns = [turn for turn in reference.turns if turn.speaker == channel.speaker.value]
            for segment in channel.segments:
                for word in segment.words:
                    assert any(
                        turn.start_s - 0.5 <= word.start_s <= word.end_s <= turn.end_s + 0.5 for turn in turns
                    ), (reference.name, channel.speaker, word)
