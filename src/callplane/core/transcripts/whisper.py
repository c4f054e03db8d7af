"""The faster-whisper (CTranslate2) implementation of ``AsrEngine``.

One model per process, loaded once, shared by threads: CTranslate2 releases the GIL and ``num_workers``
lets that many decodes run at once, so the two channels of a call are decoded in parallel, each with
``cpu_threads`` threads. Never fork a process after the model is loaded (CTranslate2 deadlocks in the
child); use threads, or the ``spawn`` start method with one model per process.
"""

from __future__ import annotations

import bisect
import dataclasses
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
from faster_whisper.vad import VadOptions, get_speech_timestamps

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


class _SpeechSpans:
    """The speech kept by the VAD, each span started ``onset_pad_s`` early, and the way back to recording time.

    Silero marks a turn's start late on telephone audio (up to 2 s in a 5-minute call, docs/transcription.md),
    but its ends on time, so only the starts get the extra padding. The spans are decoded back to back, as
    faster-whisper's own VAD does; times in the decoded audio map back word by word. Whisper puts a turn's first
    word at the start of the audio it is given, so a word that starts inside the added lead is moved to where
    its sound starts (the first 10 ms within 25 dB of the word's loudest).
    """

    FRAME = WHISPER_RATE // 100

    def __init__(self, samples: npt.NDArray[np.float32], options: VadOptions, onset_pad_s: float) -> None:
        lead = int(onset_pad_s * WHISPER_RATE)
        self._samples = samples
        spans: list[list[int]] = []
        self._leads: list[tuple[float, float]] = []  # (from, to) seconds of recording time added before a chunk
        for chunk in get_speech_timestamps(samples, options):
            start = max(0, int(chunk["start"]) - lead)
            if start < int(chunk["start"]):
                self._leads.append((start / WHISPER_RATE, int(chunk["start"]) / WHISPER_RATE))
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], int(chunk["end"]))
            else:
                spans.append([start, int(chunk["end"])])
        self.spans = [(start, end) for start, end in spans]
        self._decoded_starts: list[float] = []  # seconds, in the decoded audio
        position = 0
        for start, end in self.spans:
            self._decoded_starts.append(position / WHISPER_RATE)
            position += end - start

    def audio(self, samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.concatenate([samples[start:end] for start, end in self.spans])

    def _span(self, seconds: float) -> int:
        return max(0, bisect.bisect_right(self._decoded_starts, seconds) - 1)

    def _original(self, seconds: float, span: int) -> float:
        return self.spans[span][0] / WHISPER_RATE + seconds - self._decoded_starts[span]

    def _sound_starts(self, start: float, end: float) -> float:
        """Where a word placed at ``start`` really starts, if ``start`` is inside an added lead."""
        index = bisect.bisect_right(self._leads, (start, math.inf)) - 1
        if index < 0 or not self._leads[index][0] <= start < self._leads[index][1] or end <= start:
            return start
        first, last = int(start * WHISPER_RATE), int(end * WHISPER_RATE)
        frames = self._samples[first : first + (last - first) // self.FRAME * self.FRAME].reshape(-1, self.FRAME)
        if not len(frames):
            return start
        level = 10 * np.log10(np.mean(np.square(frames, dtype=np.float64), axis=1) + 1e-12)
        onset = int(np.argmax(level >= level.max() - 25.0))
        return round(start + onset * self.FRAME / WHISPER_RATE, 3)

    def restore(self, raw: Any) -> Any:
        """``raw`` (a faster-whisper segment) in recording time. A word is mapped whole through the span of its
        middle (as faster-whisper does), so no word stretches across the silence cut out at a join."""
        words = []
        for word in raw.words or ():
            span = self._span((word.start + word.end) / 2)
            start, end = self._original(word.start, span), self._original(word.end, span)
            words.append(dataclasses.replace(word, start=self._sound_starts(start, end), end=end))
        if words:
            return dataclasses.replace(raw, start=words[0].start, end=words[-1].end, words=words)
        start = self._original(raw.start, self._span(raw.start))
        end = self._original(raw.end, self._span(max(raw.start, raw.end - 1e-3)))
        return dataclasses.replace(raw, start=start, end=end)


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
        vad = VadOptions(threshold=s.vad_threshold, min_silence_duration_ms=s.vad_min_silence_ms)
        speech = _SpeechSpans(samples, vad, s.vad_onset_pad_s)
        if not speech.spans:
            return ()
        segments, _info = self._model.transcribe(
            speech.audio(samples),
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
            vad_filter=False,  # done above
        )
        # A lazy generator: decoding happens while it is iterated.
        return (speech.restore(raw) for raw in segments)

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
