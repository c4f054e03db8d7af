"""Live speech-to-text: utterances cut from a call's 20 ms frames, decoded off the media clock's thread.

A call's audio arrives as 8 kHz int16 frames of 20 ms from the media engine's clock thread, which must never
wait. `UtteranceCutter` is an energy VAD (numpy, about 10 µs a frame) that follows the line's noise floor and
cuts an utterance after a stretch of silence; `StreamingTranscriber` runs it on that thread and hands each
finished utterance (and, optionally, what has been said so far every second of ongoing speech) to a thread pool
that runs the ASR engine (`LiveAsr`, the process's faster-whisper model, loaded on first use). One call's
decodes run one at a time and in order, so its results come back in the order the words were said; different
calls decode at the same time, up to the pool's size. An interim decode is skipped while the call's previous
decode is still running: interims are best effort, COMPLETE results are never dropped.

Within an utterance, faster-whisper's own Silero VAD (`AsrEngine.transcribe_channels`) trims what the energy
VAD let through, so a cough or a line click decodes to nothing and produces no result.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from callplane.core.transcripts.engine import AsrEngine, AsrSettings
from callplane.core.transcripts.schemas import Transcript

log = logging.getLogger("callplane.transcription.live")

RATE = 8000  # what the media engine's taps deliver
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000
_SILENT_DBFS = -100.0


def frame_dbfs(frame: npt.NDArray[np.int16]) -> float:
    """The frame's RMS level in dB below a full-scale int16 sine's RMS (-100 for digital silence)."""
    if not len(frame):
        return _SILENT_DBFS
    power = float(np.mean(np.square(frame, dtype=np.float64)))
    if power <= 0.0:
        return _SILENT_DBFS
    return max(_SILENT_DBFS, 10.0 * math.log10(power / (32768.0**2 / 2)))


@dataclass(frozen=True, slots=True)
class VadSettings:
    """How utterances are cut. Defaults suit a phone leg (measured on the espeak and Flite test calls)."""

    threshold_db: float = 12.0  # above the noise floor a frame is speech ...
    min_level_dbfs: float = -45.0  # ... and never below this (line hiss, comfort noise)
    hold_db: float = 6.0  # once speaking, frames this much less loud still count as speech
    onset_frames: int = 3  # this many speech frames in a row (60 ms) start an utterance
    min_silence_ms: int = 600  # silence that ends an utterance (pauses between words are shorter)
    pre_roll_ms: int = 300  # audio kept from before the onset (soft starts of words)
    post_roll_ms: int = 200  # silence kept after the last speech frame
    min_speech_ms: int = 200  # a shorter utterance is a click, not speech: dropped
    max_utterance_s: float = 25.0  # a longer one is cut here (Whisper decodes 30 s windows)
    floor_rise_db_per_s: float = 3.0  # the noise floor follows a quieter frame at once, a louder one this fast


@dataclass(frozen=True, slots=True)
class Utterance:
    """A stretch of speech: its samples (pre- and post-roll included) and where it lies on the stream's clock."""

    samples: npt.NDArray[np.int16]
    start_s: float  # first speech frame, seconds since the stream started
    end_s: float  # end of the last speech frame
    ended_at: float  # time.monotonic() when that last speech frame was written
    cut_at: float  # time.monotonic() when the cut was made
    final: bool = True  # False: what has been said so far of an utterance still going on (an interim)


class UtteranceCutter:
    """An energy VAD on 20 ms frames: `feed` returns the utterances it finishes (at most one a frame)."""

    def __init__(self, settings: VadSettings | None = None) -> None:
        self.settings = s = settings or VadSettings()
        self.frames = 0  # frames fed: the stream's clock
        self.floor_db = -60.0
        self._rise = s.floor_rise_db_per_s * FRAME_MS / 1000
        self._pre: deque[npt.NDArray[np.int16]] = deque(maxlen=max(1, s.pre_roll_ms // FRAME_MS))
        self._speech: list[npt.NDArray[np.int16]] = []  # the utterance so far (pre-roll included)
        self._run = 0  # speech frames in a row, before an onset
        self._start_frame = 0
        self._last_speech_frame = 0  # the last speech frame's index + 1
        self._last_speech_at = 0.0
        self._speech_frames = 0
        self.speaking = False

    @property
    def now_s(self) -> float:
        return self.frames * FRAME_MS / 1000

    @property
    def silence_s(self) -> float:
        """Seconds since the last speech frame ended (0 while speaking; the whole stream when none yet)."""
        return (self.frames - self._last_speech_frame) * FRAME_MS / 1000

    @property
    def heard_speech(self) -> bool:
        """Whether an utterance has started on this stream."""
        return self._last_speech_frame > 0

    def _is_speech(self, level: float) -> bool:
        s = self.settings
        threshold = max(s.min_level_dbfs, self.floor_db + s.threshold_db)
        if self.speaking:
            threshold -= s.hold_db
        return level >= threshold

    def _follow_floor(self, level: float) -> None:
        """A minimum tracker: down at once to a quieter frame, up slowly otherwise (speech has quiet frames
        between words, which pull it back), so a line's steady noise is learnt within seconds."""
        if level < self.floor_db:
            self.floor_db = level
        else:
            self.floor_db = min(level, self.floor_db + self._rise)

    def feed(self, frame: npt.NDArray[np.int16], *, now: float | None = None) -> Utterance | None:
        s = self.settings
        written = time.monotonic() if now is None else now
        level = frame_dbfs(frame)
        if self.frames == 0:
            self.floor_db = level  # the line before anyone speaks
        speech = self._is_speech(level)
        self._follow_floor(level)
        self.frames += 1
        if not self.speaking:
            self._run = self._run + 1 if speech else 0
            if self._run < s.onset_frames:
                self._pre.append(frame)
                return None
            self.speaking = True
            self._speech = list(self._pre)
            self._pre.clear()
            self._start_frame = self.frames - self._run
            self._speech_frames = self._run - 1
        self._speech.append(frame)
        if speech:
            self._last_speech_frame = self.frames
            self._last_speech_at = written
            self._speech_frames += 1
        silent_ms = (self.frames - self._last_speech_frame) * FRAME_MS
        if silent_ms >= s.min_silence_ms:
            return self._cut(written)
        if (self.frames - self._start_frame) * FRAME_MS >= s.max_utterance_s * 1000:
            return self._cut(written)
        return None

    def current(self) -> Utterance | None:
        """What has been said so far of the utterance going on (an interim), or None when nobody speaks."""
        if not self.speaking or not self._speech:
            return None
        now = time.monotonic()
        return Utterance(
            samples=np.concatenate(self._speech),
            start_s=self._start_frame * FRAME_MS / 1000,
            end_s=self._last_speech_frame * FRAME_MS / 1000,
            ended_at=self._last_speech_at,
            cut_at=now,
            final=False,
        )

    def speaking_s(self) -> float:
        """How long the utterance going on has lasted (0 when nobody speaks)."""
        return (self.frames - self._start_frame) * FRAME_MS / 1000 if self.speaking else 0.0

    def flush(self, *, now: float | None = None) -> Utterance | None:
        """Cut the utterance going on now (the stream stops), if it holds enough speech."""
        if not self.speaking:
            self._run = 0
            return None
        return self._cut(time.monotonic() if now is None else now)

    def _cut(self, now: float) -> Utterance | None:
        s = self.settings
        keep_after = s.post_roll_ms // FRAME_MS
        trailing = self.frames - self._last_speech_frame
        frames = self._speech[: len(self._speech) - max(0, trailing - keep_after)]
        utterance = Utterance(
            samples=np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16),
            start_s=self._start_frame * FRAME_MS / 1000,
            end_s=self._last_speech_frame * FRAME_MS / 1000,
            ended_at=self._last_speech_at,
            cut_at=now,
        )
        enough = self._speech_frames * FRAME_MS >= s.min_speech_ms
        self.speaking = False
        self._speech = []
        self._run = 0
        self._speech_frames = 0
        return utterance if enough else None


class ResultKind(StrEnum):
    INTERIM = "INTERIM"
    COMPLETE = "COMPLETE"


@dataclass(frozen=True, slots=True)
class Recognition:
    """What the ASR heard in some audio: its text and a confidence in 0..1 (mean word probability)."""

    text: str
    confidence: float


@dataclass(frozen=True, slots=True)
class LiveResult:
    """One transcript of a live stream: an utterance's (COMPLETE) or what has been said so far of one (INTERIM)."""

    kind: ResultKind
    text: str
    confidence: float
    start_s: float  # on the stream's clock (seconds since the transcription started)
    end_s: float
    ended_at: float  # time.monotonic() when the utterance's last speech frame was written
    cut_at: float  # ... when the VAD cut it (or took the interim)
    decoded_at: float  # ... when its decode finished


@dataclass(frozen=True, slots=True)
class LiveTranscript:
    """What a TRANSCRIPTION event of a call carries: one result, placed in wall-clock time."""

    kind: ResultKind
    text: str
    confidence: float
    start: datetime
    end: datetime
    language: str


def recognition_of(transcript: Transcript) -> Recognition:
    """A mono transcript as one text and the mean probability of its words (its segments' without words)."""
    segments = [segment for channel in transcript.channels for segment in channel.segments]
    text = " ".join(segment.text.strip() for segment in segments if segment.text.strip())
    words = [word.probability for segment in segments for word in segment.words]
    scores = words or [segment.confidence for segment in segments]
    confidence = float(np.mean(scores)) if scores else 0.0
    return Recognition(text=text, confidence=round(max(0.0, min(1.0, confidence)), 3))


Decode = Callable[[npt.NDArray[np.int16]], Recognition]
Submit = Callable[[Callable[[], None]], object]


class StreamingTranscriber:
    """One live stream (a call's leg): `write` takes its frames on the media thread; results go to `on_result`
    on a decode thread, in order. `interim_every_s` (None: no interims) is how often what has been said so far
    of a long utterance is decoded."""

    def __init__(
        self,
        *,
        decode: Decode,
        submit: Submit,
        on_result: Callable[[LiveResult], None],
        vad: VadSettings | None = None,
        interim_every_s: float | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.cutter = UtteranceCutter(vad)
        self._decode = decode
        self._submit = submit
        self._on_result = on_result
        self._on_error = on_error
        self.interim_every_s = interim_every_s
        self._next_interim_s = interim_every_s or 0.0
        self._lock = threading.Lock()
        self._jobs: deque[Callable[[], None]] = deque()
        self._running = False
        self.closed = False
        self.pending_complete = 0  # utterances cut but not yet decoded
        self.decodes = 0
        self.decode_s = 0.0  # thread time spent decoding (CPU, for the bench)

    # ---- the media thread -----------------------------------------------------------------------

    def write(self, frame: npt.NDArray[np.int16]) -> None:
        if self.closed:
            return
        utterance = self.cutter.feed(frame)
        if utterance is not None:
            self._queue(utterance)
            self._next_interim_s = self.interim_every_s or 0.0
        elif self.interim_every_s and self.cutter.speaking_s() >= self._next_interim_s:
            self._next_interim_s += self.interim_every_s
            with self._lock:
                busy = self._running or bool(self._jobs)
            if not busy:
                current = self.cutter.current()
                if current is not None:
                    self._queue(current)

    def flush(self) -> None:
        """Cut the utterance going on (the stream stops); its COMPLETE result still comes."""
        utterance = self.cutter.flush()
        if utterance is not None:
            self._queue(utterance)

    def close(self) -> None:
        """No more frames are taken; results already queued still come."""
        self.closed = True

    def after_pending(self, callback: Callable[[], None]) -> None:
        """Call `callback` on a decode thread once every decode queued so far has delivered its result."""
        self._enqueue(callback)

    # ---- decoding -------------------------------------------------------------------------------

    def _queue(self, utterance: Utterance) -> None:
        if utterance.final:
            with self._lock:
                self.pending_complete += 1
        self._enqueue(lambda: self._run_decode(utterance))

    def _enqueue(self, job: Callable[[], None]) -> None:
        with self._lock:
            self._jobs.append(job)
            if self._running:
                return
            self._running = True
        self._submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    self._running = False
                    return
                job = self._jobs.popleft()
            try:
                job()
            except Exception as error:  # one failed decode must not stop the stream's later ones
                log.exception("live transcription job failed")
                if self._on_error is not None:
                    self._on_error(error)

    def _run_decode(self, utterance: Utterance) -> None:
        started = time.thread_time()
        try:
            recognition = self._decode(utterance.samples)
        finally:
            self.decode_s += time.thread_time() - started
            self.decodes += 1
            if utterance.final:
                with self._lock:
                    self.pending_complete -= 1
        if not recognition.text:
            return
        self._on_result(
            LiveResult(
                kind=ResultKind.COMPLETE if utterance.final else ResultKind.INTERIM,
                text=recognition.text,
                confidence=recognition.confidence,
                start_s=round(utterance.start_s, 3),
                end_s=round(utterance.end_s, 3),
                ended_at=utterance.ended_at,
                cut_at=utterance.cut_at,
                decoded_at=time.monotonic(),
            )
        )


def _registry_engine(settings: AsrSettings) -> AsrEngine:
    # Imported here: faster-whisper pulls in CTranslate2 and onnxruntime, which a process that never
    # transcribes should not load.
    from callplane.core.transcripts.whisper import shared_engine

    return shared_engine(settings)


@dataclass
class LiveAsr:
    """The ASR of a media node's live transcriptions: the process's model (loaded on the first decode, in a decode
    thread) and `threads` decode threads shared by all its calls."""

    asr: AsrSettings
    threads: int = 2
    engine_factory: Callable[[AsrSettings], AsrEngine] = _registry_engine
    _executor: ThreadPoolExecutor = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _engine: AsrEngine | None = field(init=False, default=None)
    _closed: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=max(1, self.threads), thread_name_prefix="live-asr")

    def engine(self) -> AsrEngine:
        with self._lock:
            if self._engine is None:
                started = time.perf_counter()
                self._engine = self.engine_factory(self.asr)
                log.info(
                    "live speech-to-text model loaded",
                    extra={"fields": {"load_s": round(time.perf_counter() - started, 2)}},
                )
            return self._engine

    def submit(self, job: Callable[[], None]) -> object:
        return self._executor.submit(job)

    def decoder(self, language: str) -> Decode:
        """A decode function for one stream's utterances in `language` (an IETF tag, already checked)."""

        def decode(samples: npt.NDArray[np.int16]) -> Recognition:
            if not len(samples) or self._closed:  # closed: the node is stopping, its queued utterances are dropped
                return Recognition("", 0.0)
            audio = samples.astype(np.float32) / 32768.0
            transcript = self.engine().transcribe_channels(audio, language, sample_rate=RATE)
            return recognition_of(transcript)

        return decode

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
