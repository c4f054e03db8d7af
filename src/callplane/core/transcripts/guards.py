"""Post-decoding guards against Whisper's known failure modes on call audio.

Whisper's decoder is a language model: given noise or silence it can produce fluent text that was never
said ("Thanks for watching!"), and given a hard stretch it can loop on one phrase. faster-whisper already
retries windows whose compression ratio or log-probability is bad, but when every retry fails it keeps the
least bad attempt. These pure functions decide what survives; the engine applies them per segment.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from callplane.core.transcripts.schemas import Segment

_NON_WORD = re.compile(r"[^\w\s]|_", re.UNICODE)
# Phrases Whisper emits over silence because its training data had them at the end of videos. On a phone
# call they are essentially never said, so a low-confidence segment made of them is dropped.
_SILENCE_PHRASES = (
    "thanks for watching",
    "thank you for watching",
    "please subscribe",
    "subtitles by",
    "amara org",
    "sous titres",
    "merci d avoir regardé",
    "subtítulos realizados por",
    "gracias por ver",
)
_WINDOW_S = 0.1


def normalize(text: str) -> str:
    """Lower case, punctuation and apostrophes to spaces, single spaces: the form phrases are compared in."""
    return " ".join(_NON_WORD.sub(" ", text.casefold()).split())


def loudest_window_dbfs(
    samples: npt.NDArray[np.float32], rate: int, start_s: float = 0.0, end_s: float | None = None
) -> float:
    """RMS level of the loudest 100 ms window in [start_s, end_s]; -120 for digital silence.

    The loudest window, not the average, so a short utterance inside a long pause still counts as speech.
    """
    first = max(0, int(start_s * rate))
    last = len(samples) if end_s is None else min(len(samples), math.ceil(end_s * rate))
    span = samples[first:last]
    if span.size == 0:
        return -120.0
    window = max(1, int(_WINDOW_S * rate))
    usable = span[: (span.size // window) * window] if span.size >= window else span
    frames = usable.reshape(-1, min(window, usable.size)).astype(np.float64)
    rms = float(np.sqrt((frames**2).mean(axis=1)).max())
    return 20.0 * math.log10(rms) if rms > 1e-6 else -120.0


def collapse_loops(words: Sequence[str], max_repeats: int, max_phrase: int = 8) -> tuple[list[int], bool]:
    """Collapse a phrase of 1..``max_phrase`` words repeated back to back more than ``max_repeats`` times.

    Keeps the first occurrence. "no no no" (3 repeats) is speech and survives; twelve "thank you"s in a
    row are a decoding loop. Returns the indices of the words kept and whether anything was collapsed.
    """
    tokens = [normalize(word) for word in words]
    kept: list[int] = []
    collapsed = False
    i = 0
    while i < len(tokens):
        best_n, best_count = 0, 1
        for n in range(1, max_phrase + 1):
            if i + 2 * n > len(tokens):
                break
            phrase = tokens[i : i + n]
            count = 1
            while tokens[i + count * n : i + (count + 1) * n] == phrase:
                count += 1
            if count > max_repeats and count * n > best_count * best_n:
                best_n, best_count = n, count
        if best_n:
            kept.extend(range(i, i + best_n))
            i += best_n * best_count
            collapsed = True
        else:
            kept.append(i)
            i += 1
    return kept, collapsed


@dataclass(frozen=True, slots=True)
class GuardLimits:
    """The thresholds the guards apply (copied from ``AsrSettings``)."""

    compression_ratio_threshold: float
    log_prob_threshold: float
    no_speech_threshold: float
    min_segment_confidence: float
    max_repeats: int
    silence_dbfs: float = -50.0


def drop_reason(
    segment: Segment,
    *,
    compression_ratio: float,
    avg_logprob: float,
    limits: GuardLimits,
    level_dbfs: float,
) -> str | None:
    """Why a decoded segment must be dropped, or None to keep it."""
    text = normalize(segment.text)
    if not text:
        return "empty"
    if level_dbfs < limits.silence_dbfs:
        return "silence"
    if compression_ratio > limits.compression_ratio_threshold:
        return "repetitive"
    if segment.no_speech_probability > limits.no_speech_threshold and avg_logprob < limits.log_prob_threshold:
        return "no speech"
    if segment.confidence < limits.min_segment_confidence:
        return "low confidence"
    if any(phrase in text for phrase in _SILENCE_PHRASES) and (
        segment.confidence < 0.6 or segment.no_speech_probability > 0.3
    ):
        return "silence phrase"
    return None


def drop_repeated_segments(segments: Sequence[Segment], max_repeats: int) -> tuple[list[Segment], int]:
    """Drop segments whose text repeats the previous ones more than ``max_repeats`` times in a row."""
    kept: list[Segment] = []
    dropped = 0
    run = 0
    previous = None
    for segment in segments:
        text = normalize(segment.text)
        run = run + 1 if text == previous else 1
        previous = text
        if run > max_repeats:
            dropped += 1
            continue
        kept.append(segment)
    return kept, dropped
