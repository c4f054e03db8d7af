"""Answering-machine detection on the far end's audio: 20 ms frames of 8 kHz int16 in, a verdict out.

Signal cues only, no model (docs/voice.md "Answering-machine detection"); each 20 ms frame costs one energy sum and
one small matrix product:

- **Voice activity**: frame energy against an adaptive noise floor (falls fast, rises 1.5 dB/s), so line noise
  is not speech.
- **Greeting length**: a person who answers says something short ("Hello?", "Hi, this is Anna") and then waits
  for us; a voicemail greeting talks on ("Hi, you've reached ..., please leave a message after the tone").
  Speech whose pauses stay under `GREETING_GAP_MS` is one greeting: longer than `MAX_HUMAN_GREETING_MS` ->
  MACHINE; ended by `GREETING_GAP_MS` of silence while shorter -> HUMAN.
- **Initial silence**: nothing said for `MAX_INITIAL_SILENCE_MS` after the answer -> MACHINE (machines often
  start late; a person who answers says something). Confidence is low, and it says SILENCE.
- **Beep**: a bank of Goertzel filters (400-2000 Hz, 25 Hz apart, computed as one matrix product per frame)
  finds frames whose energy is almost all one frequency; `BEEP_MIN_MS` of the same frequency is a beep. A beep
  before the verdict -> MACHINE; after it, the end of the beep is the end of the message. A tone going on holds a
  HUMAN verdict back (it may be a beep after a short greeting).
- **End of message** (`message_timeout_ms`): after a MACHINE verdict, the beep's end, or `MESSAGE_END_SILENCE_MS`
  of silence after the greeting; neither before the timeout (counted from the answer) -> failed.

A verdict comes by `detection_time_ms` at the latest (what the greeting looks like then decides it).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms
FRAME_MS = 20

DEFAULT_DETECTION_TIME_MS = 3700  # Infobip's default detectionTime (3.7 s)
GREETING_GAP_MS = 800  # silence that ends a greeting (pauses between words and phrases are shorter)
MAX_HUMAN_GREETING_MS = 1900  # a greeting still going on after this long is a machine's
MAX_INITIAL_SILENCE_MS = 2500  # nothing said for this long after the answer: a machine (Asterisk's default)
MESSAGE_END_SILENCE_MS = 1500  # after a machine's greeting: silence this long ends the message
MIN_GREETING_FOR_END_MS = 400  # speech needed before silence can count as the message's end
BEEP_MIN_MS = 160  # a pure tone this long is a beep
BEEP_PURITY = 0.6  # share of the frame's energy in one Goertzel bin for a tone frame
BEEP_FREQUENCIES_HZ = np.arange(400.0, 2000.0 + 1, 25.0)
SPEECH_OVER_FLOOR_DB = 10.0
SPEECH_MIN_DBFS = -50.0
NO_SIGNAL_DBFS = -90.0  # digital silence (no RTP yet, a muted source): says nothing about the line's noise
NOISE_WINDOW_FRAMES = 50  # 1 s: the quietest frame in it is at most this far below the line's noise
SPEECH_OVER_WINDOW_MIN_DB = 6.0
FLOOR_RISE_DB_PER_FRAME = 0.03  # 1.5 dB/s: a long greeting does not become the floor

Pcm = npt.NDArray[np.int16]


class Verdict(StrEnum):
    HUMAN = "HUMAN"
    MACHINE = "MACHINE"


class Cue(StrEnum):
    """What decided it (reported with the verdict, and in the benchmark)."""

    SHORT_GREETING = "short_greeting"  # a short greeting, then silence
    LONG_GREETING = "long_greeting"  # speech went on too long for a person
    INITIAL_SILENCE = "initial_silence"
    BEEP = "beep"
    DEADLINE = "deadline"  # detection time ran out: the greeting so far decided
    SILENCE_AFTER_GREETING = "silence_after_greeting"  # end of message: the machine went quiet
    TIMEOUT = "timeout"  # end of message not found in time


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    cue: Cue
    at_ms: int  # audio time since the answer when it was decided
    confidence: dict[str, float]  # per class, each 0..1 (Infobip's confidenceRating; heuristic, not calibrated)


@dataclass(frozen=True, slots=True)
class MessageEnd:
    """The end of a machine's greeting (`found`), or the timeout that came first."""

    found: bool
    cue: Cue
    at_ms: int


Outcome = Decision | MessageEnd


def _goertzel_bank() -> npt.NDArray[np.float64]:
    """Cosine rows above sine rows: one real matrix product gives every filter's two parts (a complex product
    costs ten times as much in numpy)."""
    phase = 2 * np.pi * np.outer(BEEP_FREQUENCIES_HZ, np.arange(FRAME_SAMPLES)) / SAMPLE_RATE
    return np.vstack([np.cos(phase), np.sin(phase)])


_BANK = _goertzel_bank()


@dataclass
class _Tone:
    frequency_hz: float = 0.0
    frames: int = 0
    was_beep: bool = False  # the current run reached BEEP_MIN_MS


@dataclass
class AnsweringMachineDetector:
    """Feed it the far end's frames from the answer on; it returns each outcome once, when it is known.

    `detection_time_ms`: the verdict comes by then. `message_timeout_ms`: look for the end of a machine's message
    until then (from the answer); None or 0: do not look."""

    detection_time_ms: int = DEFAULT_DETECTION_TIME_MS
    message_timeout_ms: int | None = None
    decision: Decision | None = None
    message_end: MessageEnd | None = None
    elapsed_ms: int = 0
    _floor_db: float | None = None
    _recent_db: deque[float] = field(default_factory=lambda: deque(maxlen=NOISE_WINDOW_FRAMES))
    _first_voice_ms: int | None = None
    _greeting_start_ms: int | None = None  # of the greeting going on (or the last one)
    _last_voice_ms: int | None = None
    _voiced_ms: int = 0
    _tone: _Tone = field(default_factory=_Tone)
    _beep_ended_ms: int | None = None
    _pending: bytes = b""

    @property
    def done(self) -> bool:
        if self.decision is None:
            return False
        if self.decision.verdict is Verdict.HUMAN or not self.message_timeout_ms:
            return True
        return self.message_end is not None

    def feed(self, samples: Pcm) -> list[Outcome]:
        """Any number of samples (split into 20 ms frames; a remainder waits for the next call)."""
        data = self._pending + samples.astype("<i2", copy=False).tobytes()
        usable = len(data) - len(data) % (FRAME_SAMPLES * 2)
        self._pending = data[usable:]
        frames = np.frombuffer(data[:usable], dtype="<i2").reshape(-1, FRAME_SAMPLES)
        outcomes: list[Outcome] = []
        for frame in frames:
            if self.done:
                break
            outcomes.extend(self.frame(frame))
        return outcomes

    def frame(self, frame: Pcm | None) -> list[Outcome]:
        """One 20 ms frame (160 samples); None: nothing was heard in it (the engine's taps say so)."""
        if self.done:
            return []
        self.elapsed_ms += FRAME_MS
        now = self.elapsed_ms
        tone_hz: float | None = None
        voiced = False
        if frame is not None:
            x = frame.astype(np.float64)
            power = float(np.dot(x, x)) / FRAME_SAMPLES
            level_db = float(10.0 * np.log10(power / (32768.0**2) + 1e-12))
            if level_db > NO_SIGNAL_DBFS:
                tone_hz = self._tone_frequency(x, power) if level_db > SPEECH_MIN_DBFS else None
                voiced = self._voiced(level_db) and tone_hz is None
        beep = self._track_tone(tone_hz)
        if voiced:
            if self._first_voice_ms is None:
                self._first_voice_ms = now
            gap = now - self._last_voice_ms if self._last_voice_ms is not None else None
            if self._greeting_start_ms is None or (gap is not None and gap >= GREETING_GAP_MS):
                self._greeting_start_ms = now - FRAME_MS
            self._last_voice_ms = now
            self._voiced_ms += FRAME_MS
        outcomes: list[Outcome] = []
        if self.decision is None:
            decision = self._decide(now, beep)
            if decision is not None:
                self.decision = decision
                outcomes.append(decision)
        if self.decision is not None and self.decision.verdict is Verdict.MACHINE and self.message_timeout_ms:
            end = self._message_end(now)
            if end is not None:
                self.message_end = end
                outcomes.append(end)
        return outcomes

    # ---- features -------------------------------------------------------------------------------

    def _voiced(self, level_db: float) -> bool:
        """Speech: well above the noise floor. The floor falls fast and rises slowly, so a greeting does not
        become the floor; the quietest frame of the last second bounds it from below, so noise that starts
        louder than the floor was (after digital silence) is not speech for long."""
        if self._floor_db is None:
            self._floor_db = min(level_db, -30.0)
        self._recent_db.append(level_db)
        floor = self._floor_db
        threshold = max(floor + SPEECH_OVER_FLOOR_DB, SPEECH_MIN_DBFS)
        if len(self._recent_db) == NOISE_WINDOW_FRAMES:
            threshold = max(threshold, min(self._recent_db) + SPEECH_OVER_WINDOW_MIN_DB)
        voiced = level_db > threshold
        if level_db < floor:
            self._floor_db = 0.7 * floor + 0.3 * level_db
        elif not voiced:
            self._floor_db = 0.95 * floor + 0.05 * level_db  # noise a little above the floor: follow it
        else:
            self._floor_db = floor + FLOOR_RISE_DB_PER_FRAME
        return voiced

    @staticmethod
    def _tone_frequency(x: npt.NDArray[np.float64], power: float) -> float | None:
        """The frequency holding almost all of the frame's energy, if one does."""
        if power <= 0.0:
            return None
        parts = _BANK @ x
        half = len(BEEP_FREQUENCIES_HZ)
        bins = parts[:half] ** 2 + parts[half:] ** 2
        best = int(np.argmax(bins))
        purity = float(bins[best]) * 2.0 / (FRAME_SAMPLES * FRAME_SAMPLES * power)
        return float(BEEP_FREQUENCIES_HZ[best]) if purity >= BEEP_PURITY else None

    def _track_tone(self, tone_hz: float | None) -> bool:
        """Whether a beep is going on; notes when one ended."""
        tone = self._tone
        if tone_hz is not None and tone.frames and abs(tone_hz - tone.frequency_hz) <= 50.0:
            tone.frames += 1
        else:
            if tone.was_beep:
                self._beep_ended_ms = self.elapsed_ms - FRAME_MS
            tone.frequency_hz, tone.frames, tone.was_beep = (tone_hz or 0.0), (1 if tone_hz else 0), False
        if tone.frames * FRAME_MS >= BEEP_MIN_MS:
            tone.was_beep = True
        return tone.was_beep

    # ---- decisions ------------------------------------------------------------------------------

    def _decide(self, now: int, beep: bool) -> Decision | None:
        if beep:
            return self._verdict(Verdict.MACHINE, Cue.BEEP, now, 0.95)
        if self._first_voice_ms is None:
            if now >= min(MAX_INITIAL_SILENCE_MS, self.detection_time_ms):
                return Decision(Verdict.MACHINE, Cue.INITIAL_SILENCE, now, {"MACHINE": 0.55, "SILENCE": 0.9})
            return None
        assert self._greeting_start_ms is not None and self._last_voice_ms is not None
        length = self._last_voice_ms - self._greeting_start_ms
        silent_for = now - self._last_voice_ms
        if length >= MAX_HUMAN_GREETING_MS:
            return self._verdict(Verdict.MACHINE, Cue.LONG_GREETING, now, min(0.95, 0.6 + length / 8000))
        if silent_for >= GREETING_GAP_MS and self._tone.frames == 0:  # a tone going on may be a beep: wait for it
            return self._verdict(Verdict.HUMAN, Cue.SHORT_GREETING, now, 0.95 - 0.3 * length / MAX_HUMAN_GREETING_MS)
        if now >= self.detection_time_ms:
            # still talking (or just paused) at the deadline: the longer the greeting so far, the likelier a machine
            if length >= MAX_HUMAN_GREETING_MS * 0.6:
                return self._verdict(Verdict.MACHINE, Cue.DEADLINE, now, 0.6)
            return self._verdict(Verdict.HUMAN, Cue.DEADLINE, now, 0.6)
        return None

    @staticmethod
    def _verdict(verdict: Verdict, cue: Cue, now: int, confidence: float) -> Decision:
        other = Verdict.HUMAN if verdict is Verdict.MACHINE else Verdict.MACHINE
        rounded = round(confidence, 2)
        return Decision(verdict, cue, now, {verdict.value: rounded, other.value: round(1.0 - rounded, 2)})

    def _message_end(self, now: int) -> MessageEnd | None:
        if self._beep_ended_ms is not None:
            return MessageEnd(True, Cue.BEEP, self._beep_ended_ms)
        if self._tone.frames == 0 and self._last_voice_ms is not None and self._voiced_ms >= MIN_GREETING_FOR_END_MS:
            if now - self._last_voice_ms >= MESSAGE_END_SILENCE_MS:
                return MessageEnd(True, Cue.SILENCE_AFTER_GREETING, now)
        assert self.message_timeout_ms
        if now >= self.message_timeout_ms:
            return MessageEnd(False, Cue.TIMEOUT, now)
        return None
