"""What a worker process needs to transcribe calls: the engine, loaded once and lazily, and threads to run it.

The model is loaded on the first call a worker transcribes, inside one of these threads, never at import or
start-up: a process that only fetches recordings, or an API process, never pays for it, and a process that
forks its workers (uvicorn) forks before any model exists (CTranslate2 deadlocks in a child forked after).
ASR (and, through `run_in_thread`, the pipeline's signal matching) runs in a thread pool of ``concurrency``
threads, so the event loop keeps serving requests and renewing job leases while a call decodes; each call's
channels run in the engine's own threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from callplane.core.transcripts.engine import AsrEngine, AsrSettings
from callplane.core.transcripts.schemas import Transcript

log = logging.getLogger("callplane.transcription")
T = TypeVar("T")


def _registry_engine(settings: AsrSettings) -> AsrEngine:
    # Imported here: faster-whisper pulls in CTranslate2 and onnxruntime, which a process that never
    # transcribes should not load.
    from callplane.core.transcripts.whisper import shared_engine

    return shared_engine(settings)


@dataclass
class TranscriptionRuntime:
    """One per worker process. ``engine_factory`` builds the engine on first use (default: faster-whisper)."""

    asr: AsrSettings
    # The sentence embedder of this process's signal detection ("minilm", "hashed" or "off"), configured with the
    # rest of the transcribe stage; the pipeline hands it to core.signals.detection.SignalDetector.
    embedder_kind: str = "minilm"
    concurrency: int = 1  # calls transcribed at once by this process
    engine_factory: Callable[[AsrSettings], AsrEngine] = _registry_engine
    _executor: ThreadPoolExecutor = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _engine: AsrEngine | None = field(init=False, default=None)
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

    async def run_in_thread(self, work: Callable[[], T]) -> T:
        """Run blocking work (decoding, matching) in this process's transcription threads."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def transcribe(self, audio: Path, language: str) -> Transcript:
        return await self.run_in_thread(lambda: self.engine().transcribe_channels(audio, language))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
