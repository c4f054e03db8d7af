"""Live programmable-voice calls: configurations, their event subscriptions and inbound routes, calls, recordings.

A live call is also a core `Call` row (origin "voice") with the same id, so it appears in `GET /v1/calls`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from callplane.db.base import Base, new_id, utcnow


class VoiceCallState(StrEnum):
    CALLING = "CALLING"
    RINGING = "RINGING"
    PRE_ESTABLISHED = "PRE_ESTABLISHED"
    ESTABLISHED = "ESTABLISHED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    NO_ANSWER = "NO_ANSWER"
    BUSY = "BUSY"


class HangupSource(StrEnum):
    ENDPOINT = "ENDPOINT"  # the far end hung up, declined or never answered
    API = "API"  # the application asked (hangup action)
    PLATFORM = "PLATFORM"  # we ended it: timeout, max duration, media failure, engine restart


class EndpointType(StrEnum):
    SIP = "SIP"
    PHONE = "PHONE"


class SubscriptionAuth(StrEnum):
    HMAC = "HMAC"  # Standard Webhooks signature with the subscription's own whsec_ secret
    BASIC = "BASIC"  # HTTP basic auth with the subscription's credentials (and the signature)


class CallsConfiguration(Base):
    """What an application's calls share: events go to its subscriptions, inbound calls are routed to it."""

    __tablename__ = "voice_configurations"

    id: Mapped[str] = mapped_column(String(128), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(128))
    # Send each finished call's recording through the post-call pipeline (transcript, signals).
    post_call_processing: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboundRoute(Base):
    """A called SIP user or number that routes inbound calls to a configuration (one owner per user)."""

    __tablename__ = "voice_inbound_routes"

    called_user: Mapped[str] = mapped_column(String(128), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    configuration_id: Mapped[str] = mapped_column(ForeignKey("voice_configurations.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EventSubscription(Base):
    """Where a configuration's call events go; delivery uses the linked webhook endpoint (URL, signing secret)."""

    __tablename__ = "voice_event_subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    configuration_id: Mapped[str] = mapped_column(ForeignKey("voice_configurations.id", ondelete="CASCADE"), index=True)
    webhook_endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_types: Mapped[list[str]] = mapped_column(default=list)  # empty: every event
    auth: Mapped[str] = mapped_column(String(8), default=SubscriptionAuth.HMAC)  # BASIC credentials: on the endpoint
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VoiceCall(Base):
    """One leg of a live call, owned by the media node (`node_id`) whose engine carries it."""

    __tablename__ = "voice_calls"
    __table_args__ = (
        Index("ix_voice_calls_account_state", "account_id", "state"),
        Index("ix_voice_calls_account_created", "account_id", "created_at", "id"),
        Index("ix_voice_calls_node_state", "node_id", "state"),
        Index("ix_voice_calls_ended_at", "ended_at"),  # the history retention sweep
    )

    id: Mapped[str] = mapped_column(String(36), ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    configuration_id: Mapped[str] = mapped_column(String(128), index=True)
    direction: Mapped[str] = mapped_column(String(16))  # INBOUND | OUTBOUND
    state: Mapped[str] = mapped_column(String(16), default=VoiceCallState.CALLING)
    endpoint_type: Mapped[str] = mapped_column(String(16), default=EndpointType.SIP)
    endpoint_user: Mapped[str] = mapped_column(String(255))  # the far end: SIP user or phone number
    endpoint_host: Mapped[str | None] = mapped_column(String(255))
    trunk_id: Mapped[str | None] = mapped_column(String(36))
    from_user: Mapped[str | None] = mapped_column(String(255))
    to_user: Mapped[str | None] = mapped_column(String(255))
    parent_call_id: Mapped[str | None] = mapped_column(String(36))
    dialog_id: Mapped[str | None] = mapped_column(String(36))
    external_id: Mapped[str | None] = mapped_column(String(255))
    custom_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sip_call_id: Mapped[str | None] = mapped_column(String(255))
    engine_call_id: Mapped[str | None] = mapped_column(String(64))
    node_id: Mapped[str] = mapped_column(String(128))
    connect_timeout_s: Mapped[int | None]
    max_duration_s: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)  # startTime
    ringing_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    hangup_source: Mapped[str | None] = mapped_column(String(16))
    error_code: Mapped[int | None]  # docs/voice.md "Error codes"
    sip_status: Mapped[int | None]  # the final SIP status seen or sent, for diagnosis
    sip_reason: Mapped[str | None] = mapped_column(Text)
    conference_id: Mapped[str | None] = mapped_column(String(36), index=True)  # the conference it is (or was last) in


class VoiceRecording(Base):
    """One recorded file of a call (a call may have several: each start/stop makes one).

    A dialog's recording is files of its calls with `dialog_id` set: one composed file (both parties mixed, on
    the parent call) or one file per call (that party alone)."""

    __tablename__ = "voice_recordings"
    __table_args__ = (Index("ix_voice_recordings_account_call", "account_id", "call_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)  # the file id
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    call_id: Mapped[str] = mapped_column(ForeignKey("voice_calls.id", ondelete="CASCADE"))
    configuration_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(255))
    storage_key: Mapped[str] = mapped_column(String(255))  # relative to the recordings directory
    channels: Mapped[str] = mapped_column(String(8), default="MONO")
    size_bytes: Mapped[int | None]
    duration_ms: Mapped[int | None]
    custom_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    ready: Mapped[bool] = mapped_column(default=False)
    deleted_at: Mapped[datetime | None]  # the file is gone; the metadata stays (as Infobip documents)
    dialog_id: Mapped[str | None] = mapped_column(String(36), index=True)  # a dialog recording's file
    composed: Mapped[bool] = mapped_column(default=False, server_default=false())  # both dialog parties mixed
    conference_id: Mapped[str | None] = mapped_column(String(36), index=True)  # a conference recording's file


class DialogState(StrEnum):
    CREATED = "CREATED"
    PRE_ESTABLISHED = "PRE_ESTABLISHED"
    ESTABLISHED = "ESTABLISHED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"


class DialogHangupSource(StrEnum):
    API = "API"
    PARENT_ENDPOINT = "PARENT_ENDPOINT"
    CHILD_ENDPOINT = "CHILD_ENDPOINT"
    PLATFORM = "PLATFORM"


class VoiceDialog(Base):
    """Two calls bridged: the parent (usually inbound) and a child placed for it or joined to it."""

    __tablename__ = "voice_dialogs"
    __table_args__ = (
        Index("ix_voice_dialogs_account_state", "account_id", "state"),
        Index("ix_voice_dialogs_ended_at", "ended_at"),  # the history retention sweep
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    configuration_id: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default=DialogState.CREATED)
    parent_call_id: Mapped[str] = mapped_column(String(36), index=True)
    child_call_id: Mapped[str | None] = mapped_column(String(36), index=True)
    child_hangup_ends_parent: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    established_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    hangup_source: Mapped[str | None] = mapped_column(String(16))
    error_code: Mapped[int | None]
