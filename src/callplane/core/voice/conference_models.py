"""Conferences: rooms of up to 15 calls on one media node's mixer, their participants and their recordings.

A conference lives until its last participant leaves (or it is hung up); then it is history (`/conferences/history`).
A participant row is one session of one call in one conference (joining, joined, left): a call that leaves and
joins again has two rows. Conference recording files are `voice_recordings` rows with `conference_id` set.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, false
from sqlalchemy.orm import Mapped, mapped_column

from callplane.db.base import Base, new_id, utcnow

MAX_PARTICIPANTS = 15  # the guide: "a maximum of 15 participants in the same conference room"


class ConferenceState(StrEnum):
    ACTIVE = "ACTIVE"
    FINISHED = "FINISHED"


class ParticipantState(StrEnum):
    JOINING = "JOINING"  # placed or answered, not in the room yet
    JOINED = "JOINED"
    LEFT = "LEFT"  # removed, its call ended, or it never made it in (join failed)


class ParticipantRole(StrEnum):
    DEFAULT = "DEFAULT"
    ADVISOR = "ADVISOR"
    MONITOR = "MONITOR"
    LISTENER = "LISTENER"
    AUDITOR = "AUDITOR"


class VoiceConference(Base):
    """A conference room of an account's calls configuration, mixed on the node `node_id`."""

    __tablename__ = "voice_conferences"
    __table_args__ = (
        Index("ix_voice_conferences_account_state", "account_id", "state"),
        Index("ix_voice_conferences_ended_at", "ended_at"),  # the history retention sweep
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    configuration_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default=ConferenceState.ACTIVE)
    node_id: Mapped[str] = mapped_column(String(128))
    max_duration_s: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    error_code: Mapped[int | None]  # how it ended (docs/voice.md "Error codes"); NORMAL_HANGUP when emptied


class VoiceConferenceParticipant(Base):
    """One call's session in a conference."""

    __tablename__ = "voice_conference_participants"
    __table_args__ = (Index("ix_voice_conference_participants_conference", "conference_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    conference_id: Mapped[str] = mapped_column(ForeignKey("voice_conferences.id", ondelete="CASCADE"))
    call_id: Mapped[str] = mapped_column(String(36), index=True)
    state: Mapped[str] = mapped_column(String(16), default=ParticipantState.JOINING)
    role: Mapped[str] = mapped_column(String(16), default=ParticipantRole.DEFAULT)
    muted: Mapped[bool] = mapped_column(default=False, server_default=false())
    deaf: Mapped[bool] = mapped_column(default=False, server_default=false())
    connect_on_early_media: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    joined_at: Mapped[datetime | None]
    left_at: Mapped[datetime | None]
