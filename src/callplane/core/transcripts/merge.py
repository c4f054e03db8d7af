"""One conversation from per-channel transcripts, and the text shapes it is rendered in.

Each channel is decoded alone, so ordering the call is a merge by time: every segment keeps its channel's
speaker, segments are sorted by start time, and consecutive segments of the same speaker form one turn.
A mono recording has no speakers; its turns are split at pauses instead.

Text formats (``TranscriptFormat``), as the ingestion vendors' reports name them:

* ``caller`` / ``agent``: everything that speaker said, in order, as one string (empty for mono).
* ``caller_agent_block``: two blocks, ``"Caller: <all caller text>\\nAgent: <all agent text>"``.
* ``caller_agent_conversation``: one line per turn, time-ordered, ``"Caller: ..."`` / ``"Agent: ..."``.
  Mono gives one unlabelled line per turn in both combined formats.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from callplane.core.transcripts.schemas import ChannelTranscript, Segment, Speaker, Transcript, Turn, Word

MONO_TURN_GAP_S = 1.5  # a pause this long starts a new turn when there is no speaker change to go by
SEGMENT_SPLIT_GAP_S = 1.0  # a pause between words this long inside one segment may hold the other side's turn


class TranscriptFormat(StrEnum):
    """The four text renderings of a call transcript."""

    CALLER = "caller"
    AGENT = "agent"
    CALLER_AGENT_BLOCK = "caller_agent_block"
    CALLER_AGENT_CONVERSATION = "caller_agent_conversation"


def split_at_pauses(segment: Segment, gap_s: float = SEGMENT_SPLIT_GAP_S) -> list[Segment]:
    """Cut a segment where its words pause longer than ``gap_s``.

    Whisper decodes 30 s windows, so one segment of one channel can run from before to after the other
    speaker's turn ("How can I help? … [caller speaks] … Can I have your number?"); ordered by its start
    alone it would put the whole of it before the caller. Word times show where it really pauses.
    """
    words = segment.words
    cuts = [i for i in range(1, len(words)) if words[i].start_s - words[i - 1].end_s > gap_s]
    if not cuts:
        return [segment]
    pieces = []
    for first, last in zip([0, *cuts], [*cuts, len(words)], strict=True):
        part = words[first:last]
        pieces.append(
            Segment(
                text=" ".join(word.text for word in part),
                start_s=part[0].start_s,
                end_s=part[-1].end_s,
                confidence=segment.confidence,
                no_speech_probability=segment.no_speech_probability,
                words=part,
            )
        )
    return pieces


def merge_turns(transcript: Transcript, *, mono_gap_s: float = MONO_TURN_GAP_S) -> list[Turn]:
    """Time-ordered turns across all channels; ties at the same start go to the lower channel."""
    timeline = sorted(
        (
            (piece, channel)
            for channel in transcript.channels
            for segment in channel.segments
            for piece in split_at_pauses(segment)
        ),
        key=lambda item: (item[0].start_s, item[1].channel),
    )
    turns: list[Turn] = []
    pending: list[Segment] = []
    speaker: Speaker | None = None
    for segment, channel in timeline:
        new_turn = bool(pending) and (
            channel.speaker != speaker or (channel.speaker is None and segment.start_s - pending[-1].end_s > mono_gap_s)
        )
        if new_turn:
            turns.append(_turn(speaker, pending))
            pending = []
        speaker = channel.speaker
        pending.append(segment)
    if pending:
        turns.append(_turn(speaker, pending))
    return turns


def _turn(speaker: Speaker | None, segments: list[Segment]) -> Turn:
    words: tuple[Word, ...] = tuple(word for segment in segments for word in segment.words)
    return Turn(
        speaker=speaker,
        start_s=segments[0].start_s,
        end_s=max(segment.end_s for segment in segments),
        text=" ".join(segment.text for segment in segments),
        words=words,
    )


def _label(speaker: Speaker | None) -> str:
    return f"{speaker.value.capitalize()}: " if speaker else ""


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def render_text(transcript: Transcript, *, timestamps: bool = True) -> str:
    """Human-readable: one line per turn, ``[m:ss] Caller: text``."""
    lines = []
    for turn in merge_turns(transcript):
        stamp = f"[{_clock(turn.start_s)}] " if timestamps else ""
        lines.append(f"{stamp}{_label(turn.speaker)}{turn.text}")
    return "\n".join(lines)


def render(transcript: Transcript, fmt: TranscriptFormat | str) -> str:
    """Render in one of the four ``TranscriptFormat`` shapes (see the module docstring)."""
    fmt = TranscriptFormat(fmt)
    turns = merge_turns(transcript)
    if fmt in (TranscriptFormat.CALLER, TranscriptFormat.AGENT):
        wanted = Speaker(fmt.value)
        return " ".join(turn.text for turn in turns if turn.speaker == wanted)
    if fmt is TranscriptFormat.CALLER_AGENT_CONVERSATION or all(turn.speaker is None for turn in turns):
        return "\n".join(f"{_label(turn.speaker)}{turn.text}" for turn in turns)
    blocks = []
    for speaker in (Speaker.CALLER, Speaker.AGENT):
        said = " ".join(turn.text for turn in turns if turn.speaker == speaker)
        blocks.append(f"{_label(speaker)}{said}")
    return "\n".join(blocks)


def _word_dict(word: Word) -> dict[str, Any]:
    return {"text": word.text, "start_s": word.start_s, "end_s": word.end_s, "probability": round(word.probability, 4)}


def _segment_dict(segment: Segment) -> dict[str, Any]:
    return {
        "text": segment.text,
        "start_s": segment.start_s,
        "end_s": segment.end_s,
        "confidence": round(segment.confidence, 4),
        "no_speech_probability": round(segment.no_speech_probability, 4),
        "words": [_word_dict(word) for word in segment.words],
    }


def transcript_to_dict(transcript: Transcript) -> dict[str, Any]:
    """JSON-able form (stored with the call, served by the APIs); ``transcript_from_dict`` reads it back."""
    return {
        "language": transcript.language,
        "model": transcript.model,
        "duration_s": round(transcript.duration_s, 3),
        "elapsed_s": round(transcript.elapsed_s, 3),
        "complete": transcript.complete,
        "channels": [
            {
                "channel": channel.channel,
                "speaker": channel.speaker.value if channel.speaker else None,
                "duration_s": round(channel.duration_s, 3),
                "complete": channel.complete,
                "stopped_reason": channel.stopped_reason,
                "dropped_segments": channel.dropped_segments,
                "segments": [_segment_dict(segment) for segment in channel.segments],
            }
            for channel in transcript.channels
        ],
        "turns": [
            {
                "speaker": turn.speaker.value if turn.speaker else None,
                "start_s": turn.start_s,
                "end_s": turn.end_s,
                "text": turn.text,
            }
            for turn in merge_turns(transcript)
        ],
    }


def transcript_from_dict(data: dict[str, Any]) -> Transcript:
    """Inverse of ``transcript_to_dict`` (turns are derived, so they are not read)."""
    channels = tuple(
        ChannelTranscript(
            channel=int(channel["channel"]),
            speaker=Speaker(channel["speaker"]) if channel["speaker"] else None,
            duration_s=float(channel["duration_s"]),
            complete=bool(channel["complete"]),
            stopped_reason=channel["stopped_reason"],
            dropped_segments=int(channel["dropped_segments"]),
            segments=tuple(
                Segment(
                    text=segment["text"],
                    start_s=float(segment["start_s"]),
                    end_s=float(segment["end_s"]),
                    confidence=float(segment["confidence"]),
                    no_speech_probability=float(segment["no_speech_probability"]),
                    words=tuple(
                        Word(
                            text=word["text"],
                            start_s=float(word["start_s"]),
                            end_s=float(word["end_s"]),
                            probability=float(word["probability"]),
                        )
                        for word in segment["words"]
                    ),
                )
                for segment in channel["segments"]
            ),
        )
        for channel in data["channels"]
    )
    return Transcript(
        language=data["language"],
        channels=channels,
        duration_s=float(data["duration_s"]),
        model=data.get("model", ""),
        elapsed_s=float(data.get("elapsed_s", 0.0)),
    )
