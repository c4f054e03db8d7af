"""What a worker process needs to transcribe calls: the engine, loaded once and lazily, and threads to run it.

The model is loaded on the first call a worker transcribes, inside one of these threads, never at import or
start-up: a process that only fetches recordings, or an API process, never pays for it, and a process that
forks its workers (uvicorn) forks before any model exists (CTranslate2 deadlocks in a child forked after).
ASR and signal matching run in a thread pool of ``concurrency`` threads, so the event loop keeps serving
requests and renewing job leases while a call decodes; each call's channels run in the engine's own threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from callplane.core.signals.matching import (
    SentenceEmbedder,
    SignalDefinition,
    SignalDetection,
    detect_signals,
)
from callplane.core.transcripts.engine import AsrEngine, AsrSettings
from callplane.core.transcripts.schemas import Transcript

log = logging.getLogger("callplane.transcription")
T = TypeVar("T")

HASHED_THRESHOLD = 0.6  # the lexical embedder's example threshold (docs/transcription.md)


def _registry_engine(settings: AsrSettings) -> AsrEngine:
    # Imported here: faster-whisper pulls in CTranslate2 and onnxruntime, which a process that never
    # transcribes should not load.
    from callplane.core.transcripts.whisper import shared_engine

    return shared_engine(settings)


@dataclass
class TranscriptionRuntime:
    """One per worker process. ``engine_factory`` builds the engine on first use (default: faster-whisper)."""

    asr: AsrSettings
    embedder_kind: str = "minilm"  # "minilm", "hashed" or "off"
    concurrency: int = 1  # calls transcribed at once by this process
    engine_factory: Callable[[AsrSettings], AsrEngine] = _registry_engine
    _executor: ThreadPoolExecutor = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _engine: AsrEngine | None = field(init=False, default=None)
    _embedder: tuple[SentenceEmbedder | None, float] | None = field(init=False, default=None)
    load_s: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=max(1, self.concurrency), thread_name_prefix="transcribe")

    def engine(self) -> AsrEngine:
        """The engine, loaded on first use (blocking: call from a worker thread)."""
        with self._lock:
            if self._engine is None:
                started = time.perf_counter()
                self._engine = self.engine_factory(self.asr)
                self.load_s = time.perf_counter() - started
                log.info("speech-to-text model loaded", extra={"fields": {"load_s": round(self.load_s, 2)}})
            return self._engine

    def embedder(self) -> tuple[SentenceEmbedder | None, float]:
        """The sentence embedder for example sentences and its threshold, loaded once (blocking)."""
        with self._lock:
            if self._embedder is None:
                self._embedder = _load_embedder(self.embedder_kind)
            return self._embedder

    async def _in_thread(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def transcribe(self, audio: Path, language: str) -> Transcript:
        return await self._in_thread(lambda: self.engine().transcribe_channels(audio, language))

    async def detect(self, rules: Sequence[SignalDefinition], transcript: Transcript) -> list[SignalDetection]:
        def work() -> list[SignalDetection]:
            needs_embedder = any(rule.examples for rule in rules)
            embedder, threshold = self.embedder() if needs_embedder else (None, HASHED_THRESHOLD)
            return detect_signals(rules, transcript, embedder=embedder, example_threshold=threshold)

        return await self._in_thread(work)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _load_embedder(kind: str) -> tuple[SentenceEmbedder | None, float]:
    """The configured embedder and its tuned threshold (core/signals/embedding.py)."""
    from callplane.core.signals.embedding import example_threshold, load_sentence_embedder

    return load_sentence_embedder(kind), example_threshold(kind)
