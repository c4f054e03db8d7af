"""CALLPLANE_ASR_* and the transcription settings reach the engine's settings, from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from callplane.core.transcripts import AsrSettings
from callplane.runtime import asr_settings, build_transcription
from callplane.settings import Settings
from callplane.workers.processing import STAGE_NAMES


def test_environment_maps_onto_asr_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {
        "CALLPLANE_DATA_DIR": str(tmp_path),
        "CALLPLANE_ASR_MODEL_PATH": str(tmp_path / "large-v3-turbo"),
        "CALLPLANE_ASR_DEVICE": "cuda",
        "CALLPLANE_ASR_COMPUTE_TYPE": "int8_float16",
        "CALLPLANE_ASR_CPU_THREADS": "4",
        "CALLPLANE_ASR_NUM_WORKERS": "3",
        "CALLPLANE_ASR_BEAM_SIZE": "1",
        "CALLPLANE_ASR_VAD_THRESHOLD": "0.4",
        "CALLPLANE_ASR_PACK_WINDOW_SECONDS": "0",
        "CALLPLANE_ASR_BUDGET_RATIO": "0.5",
        "CALLPLANE_ASR_BUDGET_MIN_SECONDS": "10",
        "CALLPLANE_TRANSCRIPTION_CONCURRENCY": "4",
        "CALLPLANE_SIGNALS_EMBEDDER": "hashed",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    asr = asr_settings(settings)
    assert asr == AsrSettings(
        model_path=tmp_path / "large-v3-turbo",
        data_dir=tmp_path / "models",
        device="cuda",
        compute_type="int8_float16",
        cpu_threads=4,
        num_workers=3,
        beam_size=1,
        vad_threshold=0.4,
        pack_window_s=0.0,
        budget_ratio=0.5,
        budget_min_s=10.0,
    )
    runtime = build_transcription(settings)
    assert runtime is not None and runtime.concurrency == 4 and runtime.embedder_kind == "hashed"
    assert runtime.load_s is None  # nothing is loaded until a call is transcribed
    runtime.close()


def test_defaults_are_the_measured_ones_and_transcription_can_be_turned_off(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, asr_models_dir=tmp_path / "shared-models")
    assert asr_settings(settings) == AsrSettings(data_dir=tmp_path / "shared-models")
    assert settings.signals_embedder == "minilm" and settings.transcription_concurrency == 1
    assert build_transcription(Settings(data_dir=tmp_path, transcription_enabled=False)) is None
    assert STAGE_NAMES == ("recording", "transcribe", "finalize")


def test_unknown_embedder_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLPLANE_SIGNALS_EMBEDDER", "bert")
    with pytest.raises(ValueError, match="signals_embedder"):
        Settings()


def test_worker_refuses_an_unknown_stage() -> None:
    from typer.testing import CliRunner

    from callplane.cli import app

    result = CliRunner().invoke(app, ["worker", "--stage", "transcribe", "--stage", "translate"])
    assert result.exit_code == 2
    assert "unknown stage translate" in result.output


def test_worker_stages_come_from_the_environment_unless_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from callplane.core.recordings.storage import LocalRecordingStorage
    from callplane.core.tenancy.secrets_box import SecretBox
    from callplane.runtime import build_pipeline_worker

    monkeypatch.setenv("CALLPLANE_WORKER_STAGES", '["recording", "finalize"]')
    settings = Settings(data_dir=tmp_path)
    box = SecretBox(settings.effective_secret_key())
    storage = LocalRecordingStorage(tmp_path / "recordings")
    plain = build_pipeline_worker(settings, None, box, storage)  # type: ignore[arg-type]  # no database used here
    assert plain.stages == {"recording", "finalize"} and plain.env.transcription is None  # never loads the model
    given = build_pipeline_worker(settings, None, box, storage, stages=frozenset({"transcribe"}))  # type: ignore[arg-type]
    assert given.stages == {"transcribe"} and given.env.transcription is not None
    given.close()
    monkeypatch.setenv("CALLPLANE_WORKER_STAGES", '["translate"]')
    with pytest.raises(ValueError, match="worker_stages"):
        Settings(data_dir=tmp_path)
