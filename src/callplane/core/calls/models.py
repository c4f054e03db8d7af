"""The one Call model every surface reads and writes, with what hangs off it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from callplane.db.base import Base, BigIntId, new_id, utcnow


class CallOrigin(StrEnum):
    SINGLE_INGEST = "single_ingest"
    BATCH_INGEST = "batch_ingest"
    VOICE = "voice"  # a live call placed or answered through the media engine
    CONTACT_CENTER = "contact_center"  # a contact-center conversation (agent and end user legs are voice calls)


class CallDirection(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class CallStatus(StrEnum):
    """Processing status of a call; terminal states are final unless the call is retried."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class Call(Base):
    __tablename__ = "calls"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    organization_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id", ondelete="SET NULL"))
    campaign_id: Mapped[str | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    origin: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str | None] = mapped_column(String(255))
    direction: Mapped[str | None] = mapped_column(String(16))
    from_e164: Mapped[str | None] = mapped_column(String(20))
    to_e164: Mapped[str | None] = mapped_column(String(20))
    # The outside party's number (caller on inbound, callee on outbound, the batch's contact_number).
    contact_e164: Mapped[str | None] = mapped_column(String(20))
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    duration_ms: Mapped[int | None]
    language_code: Mapped[str | None] = mapped_column(String(16))
    recording_url: Mapped[str | None] = mapped_column(Text)
    recording_filename: Mapped[str | None] = mapped_column(Text)
    recording_auth_config_id: Mapped[str | None] = mapped_column(String(36))
    callback_url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=CallStatus.QUEUED)
    status_reason: Mapped[str | None] = mapped_column(Text)
    agent: Mapped[dict[str, Any]] = mapped_column(default=dict)
    customer: Mapped[dict[str, Any]] = mapped_column(default=dict)
    call_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    # Surface-only fields with no place in the core (e.g. a batch item's "industry").
    extras: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_calls_account_received", "account_id", "received_at", "id"),
        Index("ix_calls_account_started", "account_id", "started_at"),
        Index("ix_calls_account_status", "account_id", "status"),
        Index("ix_calls_account_campaign", "account_id", "campaign_id"),
        Index("ix_calls_account_external", "account_id", "external_id"),
        Index("ix_calls_account_contact", "account_id", "contact_e164"),
    )


class CallSignal(Base):
    __tablename__ = "call_signals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[str] = mapped_column(String(36))
    signal_definition_id: Mapped[str | None] = mapped_column(String(36))
    name: Mapped[str] = mapped_column(String(255))
    value: Mapped[bool] = mapped_column(default=True)
    source: Mapped[str] = mapped_column(String(32), default="submitted")
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A submitted signal is one per (name, partner_unique_id) on a call: the same pair again updates it.
    partner_unique_id: Mapped[str] = mapped_column(String(255), server_default="")
    occurred_at: Mapped[datetime | None]
    revenue: Mapped[str | None] = mapped_column(String(32))  # the decimal as sent, "100.00"
    updated_at: Mapped[datetime | None]


class CallCustomData(Base):
    __tablename__ = "call_custom_data"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[str] = mapped_column(String(36))
    field_id: Mapped[str | None] = mapped_column(String(36))
    name: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32), default="submitted")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdempotencyKey(Base):
    """A client's own id for something it submitted, with a hash of what it sent the first time."""

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    call_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("account_id", "scope", "key"),)


class CallRecording(Base):
    """The normalized recording of a call (8 kHz MP3) and what was measured while making it."""

    __tablename__ = "call_recordings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), unique=True)
    account_id: Mapped[str] = mapped_column(String(36))
    storage_key: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(64), default="audio/mpeg")
    size_bytes: Mapped[int]
    duration_ms: Mapped[int]
    sample_rate: Mapped[int]
    channels: Mapped[int]
    original: Mapped[dict[str, Any]] = mapped_column(default=dict)  # format, codec, rate, channels
    levels: Mapped[list[Any]] = mapped_column(default=list)  # per channel: rms dBFS, silence ratio
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
