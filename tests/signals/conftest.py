"""Signals are also checked on a real transcript: same model and call as the ASR tests (one load per process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from callplane.core.transcripts import Transcript
from callplane.core.transcripts.whisper import FasterWhisperEngine
from tests.transcripts import speech


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "asr-models"


@pytest.fixture(scope="session")
def asr(models_dir: Path) -> FasterWhisperEngine:
    return speech.engine(models_dir)


@pytest.fixture(scope="session")
def call(tmp_path_factory: pytest.TempPathFactory) -> speech.StereoCall:
    directory = tmp_path_factory.getbasetemp() / "stereo-call"
    directory.mkdir(exist_ok=True)
    return speech.stereo_call(directory)


@pytest.fixture(scope="session")
def call_transcript(call: speech.StereoCall, models_dir: Path) -> Transcript:
    return speech.transcribed(call.path, "en-US", models_dir)
