"""Assembling the registry model: joined once, verified, atomic, re-used."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from callplane.core.transcripts import ModelUnavailable, ensure_registry_model, resolve_model_path
from callplane.core.transcripts.model import REGISTRY_MODEL_BIN_SIZE

pytestmark = pytest.mark.xdist_group("asr")


def test_join_once_then_reuse(models_dir: Path) -> None:
    first = ensure_registry_model(models_dir)
    model_bin = first / "model.bin"
    assert model_bin.stat().st_size == REGISTRY_MODEL_BIN_SIZE == 145_217_532
    assert {p.name for p in first.iterdir()} == {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    inode = model_bin.stat().st_ino
    assert ensure_registry_model(models_dir) == first
    assert model_bin.stat().st_ino == inode  # not rebuilt
    assert [p.name for p in models_dir.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_damaged_model_is_rebuilt(tmp_path: Path) -> None:
    target = tmp_path / "whisper-base-ct2"
    target.mkdir()
    (target / "model.bin").write_bytes(b"half a model")
    rebuilt = ensure_registry_model(tmp_path)
    assert rebuilt == target and (target / "model.bin").stat().st_size == REGISTRY_MODEL_BIN_SIZE
    assert (target / "tokenizer.json").is_file()


def test_operator_path(tmp_path: Path, models_dir: Path) -> None:
    registry = ensure_registry_model(models_dir)
    assert resolve_model_path(model_path=registry, data_dir=tmp_path / "unused") == registry
    assert not (tmp_path / "unused").exists()
    partial = tmp_path / "no-tokenizer"
    partial.mkdir()
    os.symlink(registry / "model.bin", partial / "model.bin")
    with pytest.raises(ModelUnavailable, match=r"tokenizer\.json"):
        resolve_model_path(model_path=partial, data_dir=tmp_path)
    with pytest.raises(ModelUnavailable, match=r"model\.bin"):
        resolve_model_path(model_path=tmp_path / "base", data_dir=tmp_path)
