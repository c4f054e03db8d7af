"""The faster-whisper (CTranslate2) implementation of ``AsrEngine``.

One model per process, loaded once, shared by threads: CTranslate2 releases the GIL and ``num_workers``
lets that many decodes run at once, each with ``cpu_threads`` threads. A call's channels are decoded in
parallel, or packed together into one decode when their speech fits one Whisper window. Never fork a
process after the model is loaded (CTranslate2 deadlocks in the child); use threads, or the ``spawn`` start
method with one model per process.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
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


@dataclasses.dataclass(frozen=True, slots=True)
class _ChannelSpeech:
    """One channel's speech as the VAD keeps it: spans in samples, and the leads added before their starts.

    Silero marks a turn's start late on telephone audio (up to 2 s in a 5-minute call, docs/transcription.md),
    but its ends on time, so only the starts get the extra ``onset_pad_s``.
    """

    channel: int
    samples: npt.NDArray[np.float32]
    spans: tuple[tuple[int, int], ...]
    leads: tuple[tuple[float, float], ...]  # (from, to) seconds of recording time added before a chunk


def _channel_speech(
    channel: int, samples: npt.NDArray[np.float32], options: VadOptions, onset_pad_s: float
) -> _ChannelSpeech:
    lead = int(onset_pad_s * WHISPER_RATE)
    spans: list[list[int]] = []
    leads: list[tuple[float, float]] = []
    for chunk in get_speech_timestamps(samples, options):
        start = max(0, int(chunk["start"]) - lead)
        if start < int(chunk["start"]):
            leads.append((start / WHISPER_RATE, int(chunk["start"]) / WHISPER_RATE))
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], int(chunk["end"]))
        else:
            spans.append([start, int(chunk["end"])])
    return _ChannelSpeech(channel, samples, tuple((start, end) for start, end in spans), tuple(leads))


@dataclasses.dataclass(frozen=True, slots=True)
class _Span:
    channel: int
    start: int  # samples of the recording
    end: int


def _windows(speech: Sequence[_ChannelSpeech], window_s: float, gap_s: float) -> list[list[_Span]]:
    """The decodes to run: every channel's spans on their own, or all channels' spans packed together.

    Whisper encodes a whole 30 s window however little speech it holds, so a short call's two channels decoded
    apart cost two encodes for one window's worth of speech. Packed, the spans of all channels go in time order
    into decodes of at most ``window_s`` seconds (a span longer than that gets one of its own, which Whisper
    windows as usual). Packing is used when it needs no more windows than the channels alone: in a long call
    each channel already fills its windows, and the gaps between speakers would only add some.
    """
    alone = [[_Span(part.channel, start, end) for start, end in part.spans] for part in speech]
    if window_s <= 0 or len(speech) < 2:
        return alone
    gap, limit = int(gap_s * WHISPER_RATE), int(window_s * WHISPER_RATE)
    packed: list[list[_Span]] = []
    length = 0
    for span in sorted((span for spans in alone for span in spans), key=lambda span: (span.start, span.channel)):
        added = span.end - span.start + (gap if packed and packed[-1][-1].channel != span.channel else 0)
        if packed and length + added <= limit:
            packed[-1].append(span)
            length += added
        else:
            packed.append([span])
            length = span.end - span.start

    def count(windows: list[list[_Span]]) -> int:  # Whisper windows, ignoring the gaps (at most one window)
        return sum(math.ceil(sum(span.end - span.start for span in window) / limit) for window in windows)

    return packed if count(packed) <= count(alone) else alone


class _Packing:
    """Speech spans laid back to back for one decode, and the way back to each word's channel and time.

    Spans of one channel follow each other directly, as faster-whisper's own VAD path does; between spans of
    different channels goes ``gap_s`` of silence so that the two speakers' words do not run together. Times in
    the decoded audio map back word by word through the span the word's middle falls in (the nearest one for a
    word inside a gap), so no word stretches across a cut and each word goes to the channel it was heard on.
    Whisper puts a turn's first word at the start of the audio it is given, so a word that starts inside an
    added onset lead is moved to where its sound starts (the first 10 ms within 25 dB of the word's loudest).
    """

    FRAME = WHISPER_RATE // 100

    def __init__(self, spans: Sequence[_Span], speech: dict[int, _ChannelSpeech], gap_s: float) -> None:
        self.spans = list(spans)
        self._speech = speech
        self._gap = int(gap_s * WHISPER_RATE)
        self._starts: list[float] = []  # seconds, in the decoded audio
        self._ends: list[float] = []
        position = 0
        for index, span in enumerate(self.spans):
            if index and span.channel != self.spans[index - 1].channel:
                position += self._gap
            self._starts.append(position / WHISPER_RATE)
            position += span.end - span.start
            self._ends.append(position / WHISPER_RATE)

    @property
    def channels(self) -> list[int]:
        return sorted({span.channel for span in self.spans})

    def only(self, channel: int) -> _Packing:
        """The same spans of one channel alone."""
        return _Packing([span for span in self.spans if span.channel == channel], self._speech, 0.0)

    def samples(self, channel: int) -> npt.NDArray[np.float32]:
        return self._speech[channel].samples

    def audio(self) -> npt.NDArray[np.float32]:
        parts: list[npt.NDArray[np.float32]] = []
        for index, span in enumerate(self.spans):
            if index and span.channel != self.spans[index - 1].channel:
                parts.append(np.zeros(self._gap, dtype=np.float32))
            parts.append(self._speech[span.channel].samples[span.start : span.end])
        return np.concatenate(parts)

    def _span(self, seconds: float) -> int:
        index = max(0, bisect.bisect_right(self._starts, seconds) - 1)
        after = index + 1
        if after < len(self._starts) and seconds - self._ends[index] > self._starts[after] - seconds:
            return after
        return index

    def _original(self, seconds: float, index: int) -> float:
        """Recording time of decoded ``seconds``, kept inside span ``index``: Whisper stretches a word after a
        join back into the gap or the span before, which is not where (or on whose channel) it was said."""
        span = self.spans[index]
        offset = min(max(0.0, seconds - self._starts[index]), (span.end - span.start) / WHISPER_RATE)
        return span.start / WHISPER_RATE + offset

    def _sound_starts(self, speech: _ChannelSpeech, start: float, end: float) -> float:
        """Where a word placed at ``start`` really starts, if ``start`` is inside an added lead."""
        index = bisect.bisect_right(speech.leads, (start, math.inf)) - 1
        if index < 0 or not speech.leads[index][0] <= start < speech.leads[index][1] or end <= start:
            return start
        first, last = int(start * WHISPER_RATE), int(end * WHISPER_RATE)
        frames = speech.samples[first : first + (last - first) // self.FRAME * self.FRAME].reshape(-1, self.FRAME)
        if not len(frames):
            return start
        level = 10 * np.log10(np.mean(np.square(frames, dtype=np.float64), axis=1) + 1e-12)
        onset = int(np.argmax(level >= level.max() - 25.0))
        return round(start + onset * self.FRAME / WHISPER_RATE, 3)

    def restore(self, raw: Any) -> list[tuple[int, Any]]:
        """``raw`` (a faster-whisper segment) as (channel, segment in recording time) pieces: one per run of
        consecutive words heard on the same channel."""
        pieces: list[tuple[int, list[Any]]] = []
        for word in raw.words or ():
            index = self._span((word.start + word.end) / 2)
            channel = self.spans[index].channel
            start, end = self._original(word.start, index), self._original(word.end, index)
            restored = dataclasses.replace(word, start=self._sound_starts(self._speech[channel], start, end), end=end)
            if pieces and pieces[-1][0] == channel:
                pieces[-1][1].append(restored)
            else:
                pieces.append((channel, [restored]))
        if not pieces:
            first, last = self._span(raw.start), self._span(max(raw.start, raw.end - 1e-3))
            start, end = self._original(raw.start, first), self._original(raw.end, last)
            return [(self.spans[first].channel, dataclasses.replace(raw, start=start, end=end))]
        if len(pieces) == 1:
            words = pieces[0][1]
            return [(pieces[0][0], dataclasses.replace(raw, start=words[0].start, end=words[-1].end, words=words))]
        return [
            (
                channel,
                dataclasses.replace(
                    raw, text="".join(w.word for w in words), start=words[0].start, end=words[-1].end, words=words
                ),
            )
            for channel, words in pieces
        ]


# Whisper's decoder holds 448 tokens, the prompt (start, language, task) included.
_MAX_NEW_TOKENS = 440
_WINDOW_S = 30.0  # Whisper decodes its input in windows of at most this long


def max_new_tokens(audio_s: float, per_second: float, floor: int) -> int:
    """Tokens one Whisper window of ``audio_s`` seconds (at most 30) may produce: speech can't need more than
    ``per_second`` (the test set needs 3.2-4.4 tokens per second of speech, timestamps included), and a
    decoding loop is cut there instead of running to Whisper's 448 at every fallback temperature."""
    return min(_MAX_NEW_TOKENS, floor + math.ceil(per_second * min(audio_s, _WINDOW_S)))


class _Temperatures(list[float]):
    """The fallback temperatures, none started past the deadline.

    faster-whisper decodes a window again at the next temperature while a result fails its checks (a loop at
    temperature 0 ran through four sampled fallbacks of 5 hypotheses each: 47 s for a 14 s French call). It
    iterates this list itself, inside one window's decode, so the deadline is checked here: the first
    temperature is always tried, and when the iteration ends early faster-whisper keeps the best result so far.
    """

    def __init__(self, temperatures: Sequence[float], deadline: float) -> None:
        super().__init__(temperatures)
        self._deadline = deadline

    def __iter__(self) -> Iterator[float]:
        for index, temperature in enumerate(list.__iter__(self)):
            if index and time.monotonic() > self._deadline:
                log.info("asr time budget exceeded: no fallback past temperature %.1f", self[index - 1])
                return
            yield temperature


@dataclasses.dataclass(slots=True)
class _Decoded:
    """What one channel's decodes kept, and whether they all finished in time."""

    segments: list[Segment] = dataclasses.field(default_factory=list)
    dropped: int = 0
    complete: bool = True
    stopped_reason: str | None = None


class FasterWhisperEngine:
    """Whisper through faster-whisper: guarded, time-budgeted, channels decoded apart or packed together."""

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

    @property
    def model_path(self) -> Path:
        """The CTranslate2 directory the model was loaded from."""
        return self._model_path

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
        """Transcribe a call's channels; see ``AsrEngine.transcribe_channels``.

        The VAD runs per channel; the speech of all channels is then packed into windows
        (``AsrSettings.pack_window_s``) and the windows are decoded on the worker threads.
        """
        code = whisper_language(language, known=self._languages)
        started = time.perf_counter()
        channels = decode_file(audio) if isinstance(audio, str | Path) else as_channels(audio, sample_rate)
        duration_s = channels.shape[1] / WHISPER_RATE
        speakers = STEREO_SPEAKERS if channels.shape[0] == 2 else (None,)
        s = self.settings
        vad = VadOptions(threshold=s.vad_threshold, min_silence_duration_ms=s.vad_min_silence_ms)
        voiced = [
            index
            for index in range(len(speakers))
            if loudest_window_dbfs(channels[index], WHISPER_RATE) >= self._limits.silence_dbfs
        ]
        speech = {
            part.channel: part
            for part in self._pool.map(
                lambda index: _channel_speech(index, channels[index], vad, s.vad_onset_pad_s), voiced
            )
            if part.spans
        }
        windows = _windows(list(speech.values()), s.pack_window_s, s.pack_gap_s)
        deadline = time.monotonic() + (budget_s if budget_s is not None else s.budget_s(duration_s))
        futures = []
        started_channels: set[int] = set()
        for window in windows:
            # A channel's first window is decoded even past the deadline (one segment, no fallback), so a call
            # with speech never comes back empty; later windows are skipped once it has passed.
            first = bool({span.channel for span in window} - started_channels)
            started_channels |= {span.channel for span in window}
            packing = _Packing(window, speech, s.pack_gap_s)
            futures.append(self._pool.submit(self._decode_window, packing, code, deadline, first))
        decoded = {index: _Decoded() for index in range(len(speakers))}
        for window, future in zip(windows, futures, strict=True):
            pieces, stopped = future.result()
            for channel, segment in pieces:
                if segment is None:
                    decoded[channel].dropped += 1
                else:
                    decoded[channel].segments.append(segment)
            if stopped:
                for channel in {span.channel for span in window}:
                    decoded[channel].complete, decoded[channel].stopped_reason = False, "time budget exceeded"
        return Transcript(
            language=language,
            channels=tuple(
                self._channel(index, speaker, decoded[index], duration_s) for index, speaker in enumerate(speakers)
            ),
            duration_s=duration_s,
            model=self.model_name,
            elapsed_s=time.perf_counter() - started,
        )

    def _decode_window(
        self, packing: _Packing, code: str, deadline: float, first: bool
    ) -> tuple[list[tuple[int, Segment | None]], bool]:
        """Decode one window: each piece guarded (None when dropped), and whether the budget ran out.

        A packed window that lost a whole channel decodes that channel again on its own: a decoding loop that
        the guards drop takes every word of its window, and one speaker's hard audio must not cost the
        other's words (seen with French espeak voices and a 1 s onset lead). What the packed decode kept of
        the other channels stays, whether or not the second decode finishes in time.
        """
        pieces, stopped = self._decode(packing, code, deadline, first)
        heard = {channel for channel, segment in pieces if segment is not None}
        lost = [channel for channel in packing.channels if channel not in heard]
        if len(packing.channels) < 2 or not lost or (stopped and not first):
            return pieces, stopped
        log.info("asr packed window lost channel(s) %s; decoding them apart", lost)
        pieces = [(channel, segment) for channel, segment in pieces if channel in heard]
        for channel in lost:
            more, stopped_alone = self._decode(packing.only(channel), code, deadline, first)
            pieces += more
            stopped = stopped or stopped_alone
        return pieces, stopped

    def _decode(
        self, packing: _Packing, code: str, deadline: float, first: bool = False
    ) -> tuple[list[tuple[int, Segment | None]], bool]:
        """Decode ``packing``'s audio until its end or the deadline, which is checked between segments and
        between fallback temperatures. A ``first`` window always gets its first segment."""
        pieces: list[tuple[int, Segment | None]] = []
        if time.monotonic() > deadline and not first:
            return pieces, True
        s = self.settings
        audio = packing.audio()
        try:
            segments, _info = self._model.transcribe(
                audio,
                language=code,
                task="transcribe",
                beam_size=s.beam_size,
                temperature=_Temperatures(s.temperatures, deadline),
                compression_ratio_threshold=s.compression_ratio_threshold,
                log_prob_threshold=s.log_prob_threshold,
                no_speech_threshold=s.no_speech_threshold,
                # Each window decoded on its own: conditioning on earlier text is what lets one loop run on.
                condition_on_previous_text=False,
                word_timestamps=True,
                hallucination_silence_threshold=s.hallucination_silence_s,
                max_new_tokens=max_new_tokens(len(audio) / WHISPER_RATE, s.max_tokens_per_second, s.min_new_tokens),
                vad_filter=False,  # done per channel before packing
            )
            # A lazy generator: decoding happens while it is iterated.
            for raw in segments:
                for channel, piece in packing.restore(raw):
                    segment, why = self._guarded(piece, packing.samples(channel))
                    if segment is None:
                        log.debug("asr channel %d dropped segment at %.1fs (%s)", channel, piece.start, why)
                    pieces.append((channel, segment))
                if time.monotonic() > deadline:
                    return pieces, True
        except RuntimeError as error:  # CTranslate2 reports its failures as RuntimeError
            channels = sorted({span.channel for span in packing.spans})
            raise TranscriptionFailed(f"channel {', '.join(map(str, channels))}: {error}") from error
        return pieces, False

    def _channel(self, index: int, speaker: Any, decoded: _Decoded, duration_s: float) -> ChannelTranscript:
        kept, repeated = drop_repeated_segments(decoded.segments, self.settings.max_repeats)
        if not decoded.complete:
            log.warning(
                "asr channel %d stopped at %.1fs of %.1fs: %s",
                index,
                kept[-1].end_s if kept else 0.0,
                duration_s,
                decoded.stopped_reason,
            )
        return ChannelTranscript(
            channel=index,
            speaker=speaker,
            segments=tuple(kept),
            duration_s=duration_s,
            complete=decoded.complete,
            stopped_reason=decoded.stopped_reason,
            dropped_segments=decoded.dropped + repeated,
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
