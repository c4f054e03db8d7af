"""SIP trunks and uploaded media files: the tables behind /calls/1/sip-trunks and /calls/1/files."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callplane.db.base import Base, new_id, utcnow


class TrunkKind(StrEnum):
    STATIC = "STATIC"  # a peer we send INVITEs to (IP trust, optional digest)
    REGISTERED = "REGISTERED"  # a peer we REGISTER with (digest credentials) and send INVITEs to


class TrunkAdminStatus(StrEnum):
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"


class TrunkRegistrationStatus(StrEnum):
    REGISTERED = "REGISTERED"
    UNREGISTERED = "UNREGISTERED"


class NumberFormat(StrEnum):
    """How a phone number is written in the Request-URI and From user part."""

    E164 = "E164"  # +14155550100
    INTERNATIONAL = "INTERNATIONAL"  # 14155550100
    US_NATIONAL = "US_NATIONAL"  # 4155550100


class SipTrunk(Base):
    """A SIP peer of one account; the password is encrypted with the SecretBox and never returned."""

    __tablename__ = "voice_sip_trunks"
    __table_args__ = (Index("ix_voice_sip_trunks_account_name", "account_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(default=5060)
    transport: Mapped[str] = mapped_column(String(8), default="UDP")
    username: Mapped[str | None] = mapped_column(String(255))
    password_encrypted: Mapped[str | None] = mapped_column(Text)
    number_format: Mapped[str] = mapped_column(String(16), default=NumberFormat.E164)
    channel_limit: Mapped[int]
    international_calls_allowed: Mapped[bool] = mapped_column(default=False)
    codecs: Mapped[list[str]] = mapped_column(default=list)
    source_hosts: Mapped[list[str]] = mapped_column(default=list)  # inbound traffic accepted from these
    admin_status: Mapped[str] = mapped_column(String(16), default=TrunkAdminStatus.ENABLED)
    registration_status: Mapped[str | None] = mapped_column(String(16))  # REGISTERED trunks only
    registration_detail: Mapped[str | None] = mapped_column(Text)  # the registrar's last status line
    extras: Mapped[dict[str, Any]] = mapped_column(default=dict)  # wire-only fields (location, billing, ...)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class MediaFile(Base):
    """An uploaded audio file (WAV or MP3) that calls can play; the bytes live under the data directory."""

    __tablename__ = "voice_media_files"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    file_format: Mapped[str] = mapped_column(String(8))
    size_bytes: Mapped[int]
    duration_ms: Mapped[int]
    storage_key: Mapped[str] = mapped_column(String(255))  # relative to the files directory
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
