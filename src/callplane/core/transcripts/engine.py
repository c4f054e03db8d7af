"""The speech-to-text extension point: a Protocol, its settings, and call language → model language.

Settings are a plain dataclass so this package needs nothing from the application; the process builds one
from its own configuration and passes it in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from callplane.core.transcripts.errors import UnsupportedLanguage
from callplane.core.transcripts.schemas import Transcript

AudioInput = str | Path | npt.NDArray[np.float32]

# The ingestion APIs accept these tags; any other tag whose primary subtag Whisper knows also works.
SUPPORTED_LANGUAGES = ("en-US", "en-GB", "es-ES", "fr-FR")
_TAG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")


def whisper_language(tag: str, *, known: frozenset[str] | None = None) -> str:
    """Map an IETF tag (``en-GB``, ``es_ES``, ``fr``) to Whisper's code (``en``, ``es``, ``fr``).

    Whisper models a language, not a region, so the region is dropped. ``known`` is the model's
    language list; a code outside it is refused instead of being silently auto-detected.
    """
    if not isinstance(tag, str) or not _TAG.match(tag.strip()):
        raise UnsupportedLanguage(f"{tag!r} is not a language tag such as 'en-US'")
    code = re.split(r"[-_]", tag.strip())[0].lower()
    if known is not None and code not in known:
        raise UnsupportedLanguage(f"language {tag!r} is not supported by the speech-to-text model")
    return code


@dataclass(frozen=True, slots=True)
class AsrSettings:
    """How the engine is loaded and run. Defaults are the measured ones (docs/transcription.md)."""

    model_path: Path | None = None  # a CTranslate2 Whisper directory; None = registry whisper-base
    data_dir: Path = Path("callplane-data/models")  # where the registry model is assembled once
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    compute_type: str | None = None  # None: int8 on CPU, float16 on CUDA
    cpu_threads: int = 1  # 1 thread per channel beats 2 threads on small CPUs (measured)
    num_workers: int = 2  # concurrent decodes the model allows: one per channel
    beam_size: int = 5
    vad_threshold: float = 0.2  # Silero's 0.5 drops whole 8 kHz turns; 0.3 starts turns late in long calls
    vad_min_silence_ms: int = 500
    pack_window_s: float = 30.0  # speech of both channels packed into decodes this long; 0 = one per channel
    pack_gap_s: float = 0.5  # silence between packed spans of different channels, so speakers do not run together
    vad_onset_pad_s: float = 0.0  # more kept before each VAD start than its 0.4 s pad (1.0: see docs)
    compression_ratio_threshold: float = 2.4  # above this a segment is repetitive text: retried, then dropped
    log_prob_threshold: float = -1.0  # below this a segment is retried at a higher temperature
    no_speech_threshold: float = 0.6  # with a low log-prob, the window is treated as silence
    min_segment_confidence: float = 0.2  # exp(avg log-prob) under which a segment is dropped as noise
    max_repeats: int = 3  # a word or phrase repeated back to back more often than this is a decoding loop
    hallucination_silence_s: float | None = 2.0  # skip silent gaps this long around suspected hallucinations
    max_tokens_per_second: float = 8.0  # per second of a window's audio: the test set needs at most 4.4
    min_new_tokens: int = 16  # ... plus this many, so a short window still has room for its timestamps
    budget_ratio: float = 1.0  # seconds of decoding allowed per second of channel audio ...
    budget_min_s: float = 30.0  # ... but never less than this
    temperatures: tuple[float, ...] = field(default=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0))

    def resolved_compute_type(self) -> str:
        if self.compute_type:
            return self.compute_type
        return "float16" if self.device == "cuda" else "int8"

    def budget_s(self, duration_s: float) -> float:
        """Wall-clock seconds one channel may take before it is stopped and marked partial."""
        return max(self.budget_min_s, duration_s * self.budget_ratio)


class AsrEngine(Protocol):
    """Transcribes a call recording channel by channel. Implementations load their model once."""

    @property
    def model_name(self) -> str: ...

    def transcribe_channels(
        self,
        audio: AudioInput,
        language: str,
        *,
        sample_rate: int = 16_000,
        budget_s: float | None = None,
    ) -> Transcript:
        """Transcribe each channel separately (stereo: caller = 0, agent = 1; mono: one unlabelled track).

        ``audio`` is a file path (any format FFmpeg reads) or float32 samples shaped ``(samples,)`` or
        ``(channels, samples)`` at ``sample_rate``. ``language`` is an IETF tag. ``budget_s`` overrides the
        per-channel time budget from the settings.
        """
        ...
