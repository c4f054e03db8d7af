"""The faster-whisper (CTranslate2) implementation of ``AsrEngine``.

One model per process, loaded once, shared by threads: CTranslate2 releases the GIL and ``num_workers``
lets that many decodes run at once, so the two channels of a call are decoded in parallel, each with
``cpu_threads`` threads. Never fork a process after the model is loaded (CTranslate2 deadlocks in the
child); use threads, or the ``spawn`` start method with one model per process.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from faster_whisper import WhisperModel

from callplane.core.transcripts.audio import WHISPER_RATE, as_channels, decode_file
from callplane.core.transcripts.engine import AsrSettings, AudioInput, whisper_language
from callplane.core.transcripts.errors import ModelUnavailable, TranscriptionFailed
from callplane.core.transcripts.guards import (
    GuardLimits,
    collapse_loops,
    drop_reason,
    drop_repeated_segments,
    loudest_window_dbfs,
)
from callplane.core.transcripts.model import resolve_model_path
from callplane.core.transcripts.schemas import STEREO_SPEAKERS, ChannelTranscript, Segment, Transcript, Word

log = logging.getLogger(__name__)


def _probability(logprob: float) -> float:
    return max(0.0, min(1.0, math.exp(logprob)))


class FasterWhisperEngine:
    """Whisper through faster-whisper: guarded, time-budgeted, one decode per channel."""

    def __init__(self, settings: AsrSettings) -> None:
        self.settings = settings
        path = resolve_model_path(model_path=settings.model_path, data_dir=settings.data_dir)
        self._model_path = path
        started = time.perf_counter()
        try:
            self._model = WhisperModel(
                str(path),
                device=settings.device,
                compute_type=settings.resolved_compute_type(),
                cpu_threads=settings.cpu_threads,
                num_workers=settings.num_workers,
                local_files_only=True,  # a directory, never the Hub
            )
        except (RuntimeError, ValueError, OSError) as error:
            raise ModelUnavailable(f"cannot load the speech-to-text model from {path}: {error}") from error
        self.load_s = time.perf_counter() - started
        self._languages = frozenset(self._model.supported_languages)
        self._limits = GuardLimits(
            compression_ratio_threshold=settings.compression_ratio_threshold,
            log_prob_threshold=settings.log_prob_threshold,
            no_speech_threshold=settings.no_speech_threshold,
            min_segment_confidence=settings.min_segment_confidence,
            max_repeats=settings.max_repeats,
        )
        self._pool = ThreadPoolExecutor(max_workers=max(1, settings.num_workers), thread_name_prefix="asr")

    @property
    def model_name(self) -> str:
        return self._model_path.name

    def close(self) -> None:
        """Stop the channel threads (the model itself is freed with the object)."""
        self._pool.shutdown(wait=True)

    def transcribe_channels(
        self,
        audio: AudioInput,
        language: str,
        *,
        sample_rate: int = WHISPER_RATE,
        budget_s: float | None = None,
    ) -> Transcript:
        """Transcribe each channel on its own thread; see ``AsrEngine.transcribe_channels``."""
        code = whisper_language(language, known=self._languages)
        started = time.perf_counter()
        channels = decode_file(audio) if isinstance(audio, str | Path) else as_channels(audio, sample_rate)
        duration_s = channels.shape[1] / WHISPER_RATE
        speakers = STEREO_SPEAKERS if channels.shape[0] == 2 else (None,)
        futures = [
            self._pool.submit(self._transcribe_channel, index, speaker, channels[index], code, budget_s)
            for index, speaker in enumerate(speakers)
        ]
        results = tuple(future.result() for future in futures)
        return Transcript(
            language=language,
            channels=results,
            duration_s=duration_s,
            model=self.model_name,
            elapsed_s=time.perf_counter() - started,
        )

    def _decode(self, samples: npt.NDArray[np.float32], code: str) -> Iterable[Any]:
        s = self.settings
        segments, _info = self._model.transcribe(
            samples,
            language=code,
            task="transcribe",
            beam_size=s.beam_size,
            temperature=list(s.temperatures),
            compression_ratio_threshold=s.compression_ratio_threshold,
            log_prob_threshold=s.log_prob_threshold,
            no_speech_threshold=s.no_speech_threshold,
            # Each window decoded on its own: conditioning on earlier text is what lets one loop run on.
            condition_on_previous_text=False,
            word_timestamps=True,
            hallucination_silence_threshold=s.hallucination_silence_s,
            vad_filter=True,
            vad_parameters={"threshold": s.vad_threshold, "min_silence_duration_ms": s.vad_min_silence_ms},
        )
        result: Iterable[Any] = segments  # a lazy generator: decoding happens while it is iterated
        return result

    def _transcribe_channel(
        self,
        index: int,
        speaker: Any,
        samples: npt.NDArray[np.float32],
        code: str,
        budget_s: float | None,
    ) -> ChannelTranscript:
        duration_s = samples.shape[0] / WHISPER_RATE
        if loudest_window_dbfs(samples, WHISPER_RATE) < self._limits.silence_dbfs:
            return ChannelTranscript(channel=index, speaker=speaker, segments=(), duration_s=duration_s)
        deadline = time.monotonic() + (budget_s if budget_s is not None else self.settings.budget_s(duration_s))
        kept: list[Segment] = []
        dropped = 0
        complete, reason = True, None
        try:
            for raw in self._decode(samples, code):
                segment, why = self._guarded(raw, samples)
                if segment is None:
                    dropped += 1
                    log.debug("asr channel %d dropped segment at %.1fs (%s)", index, raw.start, why)
                else:
                    kept.append(segment)
                # Checked between segments: one window's decode is bounded (max 448 tokens), a call is not.
                if time.monotonic() > deadline:
                    complete, reason = False, "time budget exceeded"
                    break
        except RuntimeError as error:  # CTranslate2 reports its failures as RuntimeError
            raise TranscriptionFailed(f"channel {index}: {error}") from error
        kept, repeated = drop_repeated_segments(kept, self.settings.max_repeats)
        if not complete:
            log.warning(
                "asr channel %d stopped at %.1fs of %.1fs: %s",
                index,
                kept[-1].end_s if kept else 0.0,
                duration_s,
                reason,
            )
        return ChannelTranscript(
            channel=index,
            speaker=speaker,
            segments=tuple(kept),
            duration_s=duration_s,
            complete=complete,
            stopped_reason=reason,
            dropped_segments=dropped + repeated,
        )

    def _guarded(self, raw: Any, samples: npt.NDArray[np.float32]) -> tuple[Segment | None, str | None]:
        """Convert one faster-whisper segment, or say why it is dropped."""
        raw_words = [w for w in (raw.words or ()) if w.word.strip()]
        kept, looped = collapse_loops([w.word for w in raw_words], self.settings.max_repeats)
        if looped:
            log.debug("asr collapsed a repetition loop in the segment at %.1fs", raw.start)
        raw_words = [raw_words[i] for i in kept]
        words = tuple(
            Word(
                text=w.word.strip(),
                start_s=round(float(w.start), 3),
                end_s=round(float(w.end), 3),
                probability=float(w.probability),
            )
            for w in raw_words
        )
        # Whisper's word strings carry their own leading spaces ("n'" + "ai" in French must not be split).
        text = "".join(w.word for w in raw_words).strip() if words else raw.text.strip()
        start_s = words[0].start_s if words else float(raw.start)
        end_s = words[-1].end_s if words else float(raw.end)
        segment = Segment(
            text=text,
            start_s=round(start_s, 3),
            end_s=round(end_s, 3),
            confidence=_probability(raw.avg_logprob),
            no_speech_probability=float(raw.no_speech_prob),
            words=words,
        )
        why = drop_reason(
            segment,
            compression_ratio=float(raw.compression_ratio),
            avg_logprob=float(raw.avg_logprob),
            limits=self._limits,
            level_dbfs=loudest_window_dbfs(samples, WHISPER_RATE, start_s, end_s),
        )
        return (None, why) if why else (segment, None)


_shared_lock = threading.Lock()
_shared: dict[AsrSettings, FasterWhisperEngine] = {}


def shared_engine(settings: AsrSettings) -> FasterWhisperEngine:
    """One engine per settings per process: the model is loaded on first use and kept."""
    with _shared_lock:
        engine = _shared.get(settings)
        if engine is None:
            engine = _shared[settings] = FasterWhisperEngine(settings)
        return engine
