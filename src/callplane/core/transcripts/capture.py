"""Speech capture: a short answer heard live on a call, ended by a key phrase, by silence, by a timeout or by the
hangup, and reported once with its text, the key phrase it matched and the recognition's confidence.

It runs on the stream machinery of streaming.py: frames come in on the media thread (`write`), utterances are cut
there and decoded on the live ASR's threads. The capture's clock is the frames it was given (20 ms each), so a
test feeding audio faster or slower than real time sees the same outcome.

- TIMEOUT: `timeout_s` of audio went by since the capture started (speech going on then is cut and decoded).
- SILENCE: speech was heard, then `max_silence_s` without any.
- KEY_PHRASE: a key phrase was recognised (in a finished utterance, or, while one is still going on, in what has
  been said so far: decoded every second) and `terminate_on_key_phrase` is on. Off, the capture goes on to its
  silence or timeout and reports the first key phrase it matched.
- HANGUP: the call ended first; what was recognised until then is reported.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from callplane.core.transcripts.streaming import (
    Decode,
    LiveResult,
    ResultKind,
    StreamingTranscriber,
    Submit,
    VadSettings,
)

DEFAULT_MAX_SILENCE_S = 2.0  # when the request gives none
KEY_PHRASE_CHECK_EVERY_S = 1.0  # interim decodes of ongoing speech while a key phrase may end the capture
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


class CaptureEnd(StrEnum):
    KEY_PHRASE = "KEY_PHRASE"
    SILENCE = "SILENCE"
    TIMEOUT = "TIMEOUT"
    HANGUP = "HANGUP"


@dataclass(frozen=True, slots=True)
class CapturedSpeech:
    """What a speech capture heard and why it ended."""

    text: str
    matched_key_phrase: str | None
    confidence: float
    reason: CaptureEnd


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    timeout_s: float
    max_silence_s: float = DEFAULT_MAX_SILENCE_S
    key_phrases: tuple[str, ...] = ()
    terminate_on_key_phrase: bool = True


def words_of(text: str) -> list[str]:
    """Lower-case words without accents or punctuation ("Billing, please!" -> ["billing", "please"])."""
    stripped = "".join(char for char in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(char))
    return _WORD.findall(stripped.replace("\u2019", "'"))


def match_key_phrase(text: str, key_phrases: Sequence[str]) -> str | None:
    """The key phrase (as the request gave it) whose words occur in `text`, in order and next to each other; of
    several, the one heard first (then the one listed first)."""
    heard = words_of(text)
    best: tuple[int, int, str] | None = None
    for order, phrase in enumerate(key_phrases):
        wanted = words_of(phrase)
        if not wanted:
            continue
        for at in range(len(heard) - len(wanted) + 1):
            if heard[at : at + len(wanted)] == wanted:
                if best is None or (at, order) < best[:2]:
                    best = (at, order, phrase)
                break
    return best[2] if best is not None else None


class SpeechCapture:
    """One capture on one call leg. `on_done` is called once, on a decode thread, unless `hangup` ended it."""

    def __init__(
        self,
        *,
        settings: CaptureSettings,
        decode: Decode,
        submit: Submit,
        on_done: Callable[[CapturedSpeech], None],
        vad: VadSettings | None = None,
    ) -> None:
        self.settings = settings
        base = vad or VadSettings()
        # Utterances are cut at pauses no longer than the capture's own silence limit, so that silence ends the
        # last one and it is already decoding when the capture ends.
        silence_ms = min(base.min_silence_ms, int(settings.max_silence_s * 1000))
        checks = settings.key_phrases and settings.terminate_on_key_phrase
        self.stream = StreamingTranscriber(
            decode=decode,
            submit=submit,
            on_result=self._on_result,
            vad=dataclasses.replace(base, min_silence_ms=silence_ms),
            interim_every_s=KEY_PHRASE_CHECK_EVERY_S if checks else None,
        )
        self._on_done = on_done
        self._lock = threading.Lock()
        self._texts: list[str] = []
        self._confidences: list[float] = []
        self._matched: str | None = None
        self._finishing = False
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def write(self, frame: npt.NDArray[np.int16]) -> None:
        """A 20 ms frame of the leg (the media thread)."""
        if self._finishing:
            return
        self.stream.write(frame)
        cutter = self.stream.cutter
        if cutter.now_s >= self.settings.timeout_s:
            self._finish(CaptureEnd.TIMEOUT)
        elif cutter.heard_speech and not cutter.speaking and cutter.silence_s >= self.settings.max_silence_s:
            self._finish(CaptureEnd.SILENCE)

    def hangup(self) -> CapturedSpeech | None:
        """The call ended: what was recognised so far, returned here (not given to `on_done`); None when the
        capture had already ended."""
        with self._lock:
            self._finishing = True
        self.stream.close()
        return self._deliver(CaptureEnd.HANGUP, notify=False)

    def _finish(self, reason: CaptureEnd) -> None:
        with self._lock:
            if self._finishing:
                return
            self._finishing = True
        self.stream.flush()
        self.stream.close()

        def deliver() -> None:
            self._deliver(reason)

        self.stream.after_pending(deliver)

    def _on_result(self, result: LiveResult) -> None:
        with self._lock:
            if self._done:
                return
            if result.kind is ResultKind.COMPLETE:
                self._texts.append(result.text)
                self._confidences.append(result.confidence)
                heard = " ".join(self._texts)
            else:
                heard = " ".join([*self._texts, result.text])
            matched = match_key_phrase(heard, self.settings.key_phrases) if self.settings.key_phrases else None
            if matched is not None and self._matched is None:
                self._matched = matched
            ends = matched is not None and self.settings.terminate_on_key_phrase
            if ends:
                self._finishing = True
                if result.kind is ResultKind.INTERIM:
                    self._texts.append(result.text)
                    self._confidences.append(result.confidence)
        if ends:
            self.stream.close()
            self._deliver(CaptureEnd.KEY_PHRASE)

    def _deliver(self, reason: CaptureEnd, *, notify: bool = True) -> CapturedSpeech | None:
        with self._lock:
            if self._done:
                return None
            self._done = True
            outcome = CapturedSpeech(
                text=" ".join(self._texts),
                matched_key_phrase=self._matched,
                confidence=round(float(np.mean(self._confidences)), 3) if self._confidences else 0.0,
                reason=reason,
            )
        if notify:
            self._on_done(outcome)
        return outcome
