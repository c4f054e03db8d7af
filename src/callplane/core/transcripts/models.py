"""A call's stored transcript (or why it has none): one row per call, written by the `transcribe` stage."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callplane.db.base import Base, new_id, utcnow


class TranscriptStatus(StrEnum):
    COMPLETED = "completed"
    SKIPPED = "skipped"  # transcription is off for the call's campaign; `skipped_reason` says so


class CallTranscript(Base):
    """The merged transcript JSON (``transcript_to_dict``) and how it was made.

    A skipped call gets a row too, so the stage is idempotent and the API can say why there is no transcript.
    """

    __tablename__ = "call_transcripts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), unique=True)
    account_id: Mapped[str] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16))
    skipped_reason: Mapped[str | None] = mapped_column(Text)
    language_code: Mapped[str | None] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(255), default="")
    # Segments per channel (speaker, start/end, text, words with timings and probability) and the merged turns.
    transcript: Mapped[dict[str, Any]] = mapped_column(default=dict)
    audio_duration_ms: Mapped[int | None]
    elapsed_ms: Mapped[int | None]  # wall time of decoding, for throughput
    # False when a channel was cut short by its time budget: the transcript is partial.
    complete: Mapped[bool] = mapped_column(default=True)
    dropped_segments: Mapped[int] = mapped_column(default=0)  # removed by the hallucination guards
    # Signal definitions (with phrases or examples) matched against this transcript; 0 means no analytics.
    signals_evaluated: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
