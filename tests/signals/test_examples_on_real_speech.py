"""A signal defined only by example sentences, on real speech: espeak-ng audio, the real Whisper model, MiniLM.

The caller never says any example's words in order ("cancel my account", "terminate my plan"), so only
sentence similarity can find it; the unrelated call must not fire.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from callplane.core.signals import SignalDefinition, SignalDetection, detect_signals
from callplane.core.signals.embedding import example_threshold, load_sentence_embedder
from callplane.core.transcripts import Speaker, Transcript
from tests.transcripts import speech

pytestmark = pytest.mark.xdist_group("asr")

CANCELLATION = SignalDefinition.from_config(
    name="Cancellation", examples=["Please cancel my account", "I'd like to terminate my plan"]
)
AGENT_SAYS = "Certainly, I can help you with that."


def _detect(
    directory: Path, caller_says: str, models_dir: Path
) -> tuple[speech.StereoCall, Transcript, SignalDetection]:
    directory.mkdir(exist_ok=True)
    call = speech.stereo_call(directory, caller=caller_says, agent=AGENT_SAYS)
    transcript = speech.transcribed(call.path, "en-US", models_dir)
    (detection,) = detect_signals(
        [CANCELLATION],
        transcript,
        embedder=load_sentence_embedder("minilm"),
        example_threshold=example_threshold("minilm"),
    )
    return call, transcript, detection


def test_cancellation_fires_from_examples_only(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> None:
    call, _, detection = _detect(
        tmp_path_factory.getbasetemp() / "cancel-call", "I want to cancel my subscription.", models_dir
    )
    stored = detection.to_dict()  # what the transcribe stage keeps as the signal's evidence
    assert stored["detected"] is True
    (evidence,) = stored["evidence"]
    assert evidence["speaker"] == Speaker.CALLER.value
    # Whisper hears espeak's "subscription" as "subcribation" at 8 kHz; the sentence still means cancelling.
    assert evidence["words"].casefold().startswith("i want to cancel")
    assert evidence["rule"] == "example: Please cancel my account"
    assert example_threshold("minilm") <= evidence["score"] <= 1.0
    assert call.caller_start_s - 0.5 <= evidence["start_s"] < evidence["end_s"] <= call.agent_start_s


def test_an_unrelated_call_does_not_fire(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> None:
    _, transcript, detection = _detect(
        tmp_path_factory.getbasetemp() / "hours-call", "What time do you open on Saturday?", models_dir
    )
    heard = " ".join(segment.text for channel in transcript.channels for segment in channel.segments)
    assert "saturday" in heard.casefold()  # the call was heard; it just is not a cancellation
    assert not detection.detected
