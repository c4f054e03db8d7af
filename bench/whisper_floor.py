"""The floor every speech-to-text figure is printed beside: plain faster-whisper on the same model and audio.

Its defaults (beam 5, its own thread count), VAD on, the two channels of a stereo call one after the other;
decoding the file is counted. Used by `bench/transcribe.py` and `bench/asr.py`.
"""

from __future__ import annotations

import time
from pathlib import Path

from faster_whisper import WhisperModel
from faster_whisper.audio import decode_audio


class PlainWhisper:
    def __init__(self, model_path: Path, device: str, compute_type: str) -> None:
        self.model = WhisperModel(str(model_path), device=device, compute_type=compute_type, local_files_only=True)

    def warm_up(self, path: Path, language: str) -> None:
        segments, _ = self.model.transcribe(str(path), language=language)
        list(segments)  # first decode allocates (the segments are a lazy generator)

    def transcribe(self, path: Path, language: str) -> tuple[float, float, dict[str, str]]:
        """Wall and CPU seconds for the whole call, and the text heard per speaker (caller left, agent right)."""
        started, cpu_started = time.perf_counter(), time.process_time()
        left, right = decode_audio(str(path), split_stereo=True)
        texts = {}
        for speaker, samples in (("caller", left), ("agent", right)):
            segments, _ = self.model.transcribe(samples, language=language, vad_filter=True)
            texts[speaker] = " ".join(segment.text.strip() for segment in segments)
        return time.perf_counter() - started, time.process_time() - cpu_started, texts
