"""Live speech-to-text without a call: the energy VAD on the committed test calls, the streaming transcriber and
speech capture on the real default model, frames fed as a call's audio tap feeds them (20 ms, 8 kHz int16).

Decodes run inline (`submit` runs the job at once) so that which interims are taken does not depend on the
machine's speed; the live plane submits them to its decode threads instead (tests/live/test_speech.py).
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from callplane.core.transcripts import AsrSettings
from callplane.core.transcripts.capture import (
    CapturedSpeech,
    CaptureEnd,
    CaptureSettings,
    SpeechCapture,
    match_key_phrase,
    words_of,
)
from callplane.core.transcripts.streaming import (
    FRAME_SAMPLES,
    LiveAsr,
    LiveResult,
    ResultKind,
    StreamingTranscriber,
    UtteranceCutter,
    frame_dbfs,
)
from callplane.testing.speech_calls import read_references
from callplane.testing.wer import word_error_rate
from tests.transcripts import speech

pytestmark = pytest.mark.xdist_group("asr")

TESTSET = Path(__file__).parent / "testset"
REFERENCES = {reference.name: reference for reference in read_references(TESTSET / "references.json")}
Pcm = npt.NDArray[np.int16]
ANSWER = "I would like to talk to someone in billing about my last invoice."


@functools.cache
def channels_8k(name: str) -> Pcm:
    """A test call's two channels as 8 kHz int16, shaped (2, samples)."""
    with av.open(str(TESTSET / REFERENCES[name].audio)) as container:
        resampler = av.AudioResampler(format="s16p", layout="stereo", rate=8000)
        frames = []
        for frame in container.decode(container.streams.audio[0]):
            frames += [part.to_ndarray() for part in resampler.resample(frame)]
        frames += [part.to_ndarray() for part in resampler.resample(None)]
    return np.concatenate(frames, axis=1).astype(np.int16)


def frames_of(samples: Pcm, tail_s: float = 1.0) -> list[Pcm]:
    padded = np.concatenate([samples, np.zeros(int(tail_s * 8000) + (-len(samples) % FRAME_SAMPLES), np.int16)])
    return [padded[at : at + FRAME_SAMPLES] for at in range(0, len(padded) - FRAME_SAMPLES + 1, FRAME_SAMPLES)]


def inline(job: Callable[[], None]) -> None:
    job()


@pytest.fixture(scope="module")
def live_asr(models_dir: Path) -> Iterator[LiveAsr]:
    speech.engine(models_dir)  # the shared model, built once per test process
    asr = LiveAsr(AsrSettings(data_dir=models_dir))
    yield asr
    asr.close()


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("noise_dbfs", [None, -45.0])
def test_the_vad_cuts_one_utterance_per_turn_at_its_edges(name: str, noise_dbfs: float | None) -> None:
    reference = REFERENCES[name]
    rng = np.random.default_rng(7)
    for channel, speaker in enumerate(("caller", "agent")):
        samples = channels_8k(name)[channel].astype(np.float64)
        if noise_dbfs is not None:  # steady line noise: the floor is learnt, speech still stands above it
            samples += rng.normal(0.0, 32768 * 10 ** (noise_dbfs / 20), len(samples))
        cutter = UtteranceCutter()
        cut = [u for f in frames_of(np.clip(samples, -32768, 32767).astype(np.int16)) if (u := cutter.feed(f))]
        turns = [turn for turn in reference.turns if turn.speaker == speaker]
        assert len(cut) == len(turns), (speaker, [(u.start_s, u.end_s) for u in cut])
        for utterance, turn in zip(cut, turns, strict=True):
            # The reference spans include the synthesiser's own lead-in and trailing silence (up to 0.45 s).
            assert turn.start_s - 0.1 <= utterance.start_s <= turn.start_s + 0.6
            assert turn.end_s - 0.6 <= utterance.end_s <= turn.end_s + 0.1


def test_frame_levels() -> None:
    assert frame_dbfs(np.zeros(FRAME_SAMPLES, np.int16)) == -100.0
    sine = (32767 * np.sin(2 * np.pi * 1000 * np.arange(FRAME_SAMPLES) / 8000)).astype(np.int16)
    assert abs(frame_dbfs(sine)) < 0.1  # a full-scale sine is 0 dBFS


def test_key_phrases_match_whole_words_in_order_ignoring_case_accents_and_punctuation() -> None:
    assert words_of("Billing, please! Ça va?") == ["billing", "please", "ca", "va"]
    assert match_key_phrase("I'd like to talk to Billing.", ["billing"]) == "billing"
    assert match_key_phrase("Technical support, please", ["billing", "Technical Support"]) == "Technical Support"
    assert match_key_phrase("support technical", ["technical support"]) is None
    assert match_key_phrase("rebilling", ["billing"]) is None
    # of two, the one heard first; the request's spelling is reported
    assert match_key_phrase("sales then billing", ["billing", "Sales"]) == "Sales"
    assert match_key_phrase("anything", []) is None


@pytest.mark.parametrize("name", ["en_us_cancel", "en_gb_delivery"])
def test_streaming_complete_results_follow_the_turns(live_asr: LiveAsr, name: str) -> None:
    reference = REFERENCES[name]
    for channel, speaker in enumerate(("caller", "agent")):
        results: list[LiveResult] = []
        stream = StreamingTranscriber(
            decode=live_asr.decoder(reference.language), submit=inline, on_result=results.append, interim_every_s=2.0
        )
        for frame in frames_of(channels_8k(name)[channel]):
            stream.write(frame)
        complete = [result for result in results if result.kind is ResultKind.COMPLETE]
        interims = [result for result in results if result.kind is ResultKind.INTERIM]
        turns = [turn for turn in reference.turns if turn.speaker == speaker]
        assert len(complete) == len(turns)
        assert [r.start_s for r in complete] == sorted(r.start_s for r in complete)
        assert interims and all(0 < r.confidence <= 1 for r in results)
        for result, turn in zip(complete, turns, strict=True):
            assert turn.start_s - 0.1 <= result.start_s and result.end_s <= turn.end_s + 0.1
        # Per channel of one call: 8-24 words, so one word is 4-12 points (the set's gate is in test_testset.py).
        assert word_error_rate(reference.text_of(speaker), " ".join(r.text for r in complete)) <= 0.5


def flite_8k(text: str, out: Path) -> Pcm:
    """`text` spoken by CMU Flite's slt voice (far less robotic than espeak), as 8 kHz int16."""
    raw = out.with_suffix(".raw.wav")
    subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(raw)], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-b", "16", "-c", "1", str(out), "norm", "-3"], check=True)
    with av.open(str(out)) as container:
        return np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]).astype(np.int16)


@pytest.fixture(scope="module")
def answer(tmp_path_factory: pytest.TempPathFactory) -> Pcm:
    """A caller's answer to an IVR prompt."""
    return flite_8k(ANSWER, tmp_path_factory.mktemp("answer") / "answer.wav")


def captured(
    live_asr: LiveAsr, settings: CaptureSettings, audio: Pcm, *, hangup_after_s: float | None = None
) -> CapturedSpeech:
    outcomes: list[CapturedSpeech] = []
    capture = SpeechCapture(settings=settings, decode=live_asr.decoder("en-US"), submit=inline, on_done=outcomes.append)
    for index, frame in enumerate(frames_of(audio, tail_s=40.0)):
        if hangup_after_s is not None and index * 0.02 >= hangup_after_s:
            outcome = capture.hangup()
            assert outcome is not None
            outcomes.append(outcome)
        if outcomes:
            break
        capture.write(frame)
    assert len(outcomes) == 1 and capture.done
    return outcomes[0]


def test_a_key_phrase_ends_the_capture_before_the_answer_does(live_asr: LiveAsr, answer: Pcm) -> None:
    lead = np.zeros(8000, np.int16)
    settings = CaptureSettings(timeout_s=30, max_silence_s=2, key_phrases=("sales", "Billing"))
    outcome = captured(live_asr, settings, np.concatenate([lead, answer]))
    assert outcome.reason is CaptureEnd.KEY_PHRASE and outcome.matched_key_phrase == "Billing"
    assert "billing" in words_of(outcome.text) and "invoice" not in words_of(outcome.text)
    assert 0 < outcome.confidence <= 1


def test_without_terminating_the_capture_ends_on_silence_and_keeps_the_phrase(live_asr: LiveAsr, answer: Pcm) -> None:
    settings = CaptureSettings(timeout_s=30, max_silence_s=2, key_phrases=("billing",), terminate_on_key_phrase=False)
    outcome = captured(live_asr, settings, answer)
    assert outcome.reason is CaptureEnd.SILENCE and outcome.matched_key_phrase == "billing"
    assert word_error_rate(ANSWER, outcome.text) <= 0.25


def test_the_timeout_ends_a_capture_with_or_without_speech(live_asr: LiveAsr, answer: Pcm) -> None:
    quiet = captured(live_asr, CaptureSettings(timeout_s=2, max_silence_s=1), np.zeros(8000, np.int16))
    assert quiet == CapturedSpeech(text="", matched_key_phrase=None, confidence=0.0, reason=CaptureEnd.TIMEOUT)
    cut = captured(live_asr, CaptureSettings(timeout_s=2, max_silence_s=1), answer)
    assert cut.reason is CaptureEnd.TIMEOUT and words_of(cut.text)[:2] == ["i", "would"]


def test_a_hangup_reports_what_was_heard(live_asr: LiveAsr, answer: Pcm) -> None:
    silence = np.zeros(8000, np.int16)
    outcome = captured(
        live_asr,
        CaptureSettings(timeout_s=30, max_silence_s=5),
        np.concatenate([answer, silence, answer]),
        hangup_after_s=len(answer) / 8000 + 1.0,
    )
    assert outcome.reason is CaptureEnd.HANGUP and "invoice" in words_of(outcome.text)
