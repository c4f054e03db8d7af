"""The transcript model: words and segments per channel, then speaker-labelled turns.

Plain frozen dataclasses (no ORM, no pydantic) so the engine, the merge and the signal matcher share one
shape and a transcript round-trips through JSON with ``merge.transcript_to_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Speaker(StrEnum):
    """Who spoke, from the channel layout (caller = channel 0, agent = channel 1); mono has no speaker."""

    CALLER = "caller"
    AGENT = "agent"


STEREO_SPEAKERS = (Speaker.CALLER, Speaker.AGENT)


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word with its time span (seconds from the start of the recording)."""

    text: str
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True, slots=True)
class Segment:
    """One decoded span of one channel; ``confidence`` is exp(average token log-probability)."""

    text: str
    start_s: float
    end_s: float
    confidence: float
    no_speech_probability: float
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class ChannelTranscript:
    """What one channel said. ``complete`` is False when decoding stopped early (time budget, model error)."""

    channel: int
    speaker: Speaker | None
    segments: tuple[Segment, ...]
    duration_s: float
    complete: bool = True
    stopped_reason: str | None = None
    dropped_segments: int = 0  # removed by the hallucination guards

    @property
    def text(self) -> str:
        return " ".join(segment.text for segment in self.segments)


@dataclass(frozen=True, slots=True)
class Transcript:
    """A whole call: one ``ChannelTranscript`` per channel, in channel order."""

    language: str  # the IETF tag the call was transcribed with, e.g. "en-US"
    channels: tuple[ChannelTranscript, ...]
    duration_s: float
    model: str = ""
    elapsed_s: float = 0.0

    @property
    def complete(self) -> bool:
        return all(channel.complete for channel in self.channels)


@dataclass(frozen=True, slots=True)
class Turn:
    """Consecutive speech of one speaker in the merged conversation."""

    speaker: Speaker | None
    start_s: float
    end_s: float
    text: str
    words: tuple[Word, ...] = field(default=())
