"""Media-stream configurations: the table behind /calls/1/media-stream-configs (docs/voice.md "Media streaming")."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callplane.db.base import Base, new_id, utcnow


class MediaStreamConfigType(StrEnum):
    MEDIA_STREAMING = "MEDIA_STREAMING"  # the guide's: 48 kHz, optional HTTP Basic credentials
    WEBSOCKET_ENDPOINT = "WEBSOCKET_ENDPOINT"  # a chosen sample rate, no credentials


class MediaStreamConfig(Base):
    """Where an account's media streams go; the password is encrypted with the SecretBox and never returned."""

    __tablename__ = "voice_media_stream_configs"
    __table_args__ = (Index("ix_voice_media_stream_configs_account_created", "account_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(24))
    name: Mapped[str] = mapped_column(String(128))
    url: Mapped[str] = mapped_column(Text)
    sample_rate: Mapped[int]
    username: Mapped[str | None] = mapped_column(String(255))
    password_encrypted: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
