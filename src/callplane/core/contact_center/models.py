"""Contact-center tables. Ids are integers because the contact-center API exposes them as numbers.

Calls and menus show the API a per-tenant `public_id` (a tenant's first call is 1 whatever other tenants do: one
global sequence would tell every tenant the platform's volume); `id` stays the internal key the tables join on.

A contact-center call is also a core `Call` (origin "contact_center", `cc_calls.core_call_id`), so it shows in
`GET /v1/calls` next to ingested and voice calls. Its legs (agent, end user) are live voice calls.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from callplane.db.base import Base, BigIntId, utcnow


class AgentStatus(StrEnum):
    AVAILABLE = "available"
    UNAVAILABLE = "unavailable"
    BUSY = "busy"  # on a call (assigned by us); back to available, with last_idle_at, when it ends


class MenuType(StrEnum):
    IVR = "ivr_menu"
    MOBILE = "mobile_menu"
    WEB = "web_menu"


class MenuState(StrEnum):
    OPEN = "open"
    AFTER_HOURS = "after_hours"
    MANUAL_REDIRECTION = "manual_redirection"


class CcCallType(StrEnum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"
    SCHEDULED = "scheduled"


class CcCallStatus(StrEnum):
    SELECTING = "selecting"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FINISHED = "finished"
    FAILED = "failed"
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"  # a scheduled call cancelled before it fired


class ParticipantKind(StrEnum):
    AGENT = "agent"
    END_USER = "end_user"


class ParticipantStatus(StrEnum):
    WAITING = "waiting"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FINISHED = "finished"
    FAILED = "failed"


class TransferKind(StrEnum):
    COLD = "cold"  # the first agent leaves at once; the end user hears music until the new agent answers
    WARM = "warm"  # the first agent talks to the new one (the end user on hold) and then completes it


class TransferStatus(StrEnum):
    TRANSFERRING = "transferring"  # the seed's spelling
    TRANSFERRED = "transferred"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Agent(Base):
    __tablename__ = "cc_agents"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(255))  # stored lower-cased
    first_name: Mapped[str] = mapped_column(String(128), default="")
    last_name: Mapped[str] = mapped_column(String(128), default="")
    agent_number: Mapped[str | None] = mapped_column(String(64))
    avatar_url: Mapped[str | None] = mapped_column(Text)
    # What rings when the agent gets a call: a SIP user at a host or trunk, or a phone number through a trunk.
    endpoint_type: Mapped[str] = mapped_column(String(8), default="SIP")
    endpoint_user: Mapped[str] = mapped_column(String(255))
    endpoint_host: Mapped[str | None] = mapped_column(String(255))
    trunk_id: Mapped[str | None] = mapped_column(ForeignKey("voice_sip_trunks.id", ondelete="SET NULL"))
    can_place_calls: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(String(16), default=AgentStatus.UNAVAILABLE)
    last_idle_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("account_id", "email"),)


class OutboundNumber(Base):
    __tablename__ = "cc_outbound_numbers"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    number_e164: Mapped[str] = mapped_column(String(20))
    # The SIP trunk that carries calls placed from this number to the end user.
    trunk_id: Mapped[str | None] = mapped_column(ForeignKey("voice_sip_trunks.id", ondelete="SET NULL"))
    is_default: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("account_id", "number_e164"),)


class Menu(Base):
    """A node of the menu tree; a leaf is a queue with its agents."""

    __tablename__ = "cc_menus"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    public_id: Mapped[int] = mapped_column(BigInteger)  # the API's menu id, per tenant (next_public_id)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("cc_menus.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    position: Mapped[int] = mapped_column(default=0)
    menu_type: Mapped[str] = mapped_column(String(16), default=MenuType.IVR)
    state: Mapped[str] = mapped_column(String(24), default=MenuState.OPEN)
    languages: Mapped[list[str]] = mapped_column(default=list)  # ISO 639-1; empty: only "en"
    output_msg: Mapped[str | None] = mapped_column(Text)
    hidden: Mapped[bool] = mapped_column(default=False)
    deleted: Mapped[bool] = mapped_column(default=False)
    outbound_number_id: Mapped[int | None] = mapped_column(ForeignKey("cc_outbound_numbers.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("account_id", "public_id"),)


class MenuAgent(Base):
    """An agent in a menu's queue."""

    __tablename__ = "cc_menu_agents"

    menu_id: Mapped[int] = mapped_column(ForeignKey("cc_menus.id", ondelete="CASCADE"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("cc_agents.id", ondelete="CASCADE"), primary_key=True)


class EndUser(Base):
    __tablename__ = "cc_end_users"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    identifier: Mapped[str | None] = mapped_column(String(255))
    number_e164: Mapped[str | None] = mapped_column(String(20))
    out_contact_id: Mapped[str | None] = mapped_column(String(255))  # the CRM's contact id
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_cc_end_users_account_number", "account_id", "number_e164"),
        Index("ix_cc_end_users_account_contact", "account_id", "out_contact_id"),
    )


class CrmTicket(Base):
    """A CRM ticket and the contact it belongs to: what a `ticket_id` resolves to."""

    __tablename__ = "cc_crm_tickets"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    ticket_id: Mapped[str] = mapped_column(String(255))
    out_contact_id: Mapped[str] = mapped_column(String(255))
    number_e164: Mapped[str] = mapped_column(String(20))
    ticket_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("account_id", "ticket_id"),)


class CcCall(Base):
    """A contact-center call; the live legs are voice calls, the conversation a core Call."""

    __tablename__ = "cc_calls"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    public_id: Mapped[int] = mapped_column(BigInteger)  # the API's call id, per tenant (next_public_id)
    core_call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("cc_calls.id", ondelete="SET NULL"))
    call_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    lang: Mapped[str] = mapped_column(String(8), default="en")
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("cc_agents.id", ondelete="SET NULL"))
    menu_id: Mapped[int | None] = mapped_column(ForeignKey("cc_menus.id", ondelete="SET NULL"))
    end_user_id: Mapped[int | None] = mapped_column(ForeignKey("cc_end_users.id", ondelete="SET NULL"))
    end_user_e164: Mapped[str] = mapped_column(String(20))
    outbound_number_e164: Mapped[str | None] = mapped_column(String(20))
    outbound_trunk_id: Mapped[str | None] = mapped_column(String(36))
    out_ticket_id: Mapped[str | None] = mapped_column(String(255))
    out_ticket_url: Mapped[str | None] = mapped_column(Text)
    recording_permission: Mapped[str] = mapped_column(String(48), default="recording_permission_not_asked")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None]
    assigned_at: Mapped[datetime | None]
    connected_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    scheduled_at: Mapped[datetime | None]
    fail_reason: Mapped[str] = mapped_column(String(48), default="nothing")
    fail_details: Mapped[str | None] = mapped_column(Text)
    disconnected_by: Mapped[str] = mapped_column(String(48), default="disconnected_by_unknown")
    verified_customer: Mapped[bool] = mapped_column(default=False)
    bad_actor: Mapped[bool] = mapped_column(default=False)
    repeat_customer: Mapped[bool] = mapped_column(default=False)
    # Claimed (conditional UPDATE false -> true) by the one runtime that rings the agent: never rung twice.
    legs_started: Mapped[bool] = mapped_column(default=False)
    agent_leg_id: Mapped[str | None] = mapped_column(String(36), index=True)  # voice_calls.id
    end_user_leg_id: Mapped[str | None] = mapped_column(String(36), index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    extras: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Hold: the end user hears music while an agent holds them (or a transfer is under way); hold_ms is the
    # finished holds' total, hold_started_at the hold in progress (None when not held). Migration 0021.
    hold_started_at: Mapped[datetime | None]
    hold_ms: Mapped[int | None]

    __table_args__ = (
        UniqueConstraint("account_id", "public_id"),
        Index("ix_cc_calls_account_created", "account_id", "created_at", "id"),
        Index("ix_cc_calls_status_scheduled", "status", "scheduled_at"),
        Index("ix_cc_calls_menu_status", "menu_id", "status"),
    )


class CcParticipant(Base):
    __tablename__ = "cc_participants"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("cc_calls.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=ParticipantStatus.WAITING)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("cc_agents.id", ondelete="SET NULL"))
    end_user_id: Mapped[int | None] = mapped_column(ForeignKey("cc_end_users.id", ondelete="SET NULL"))
    connected_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    fail_reason: Mapped[str] = mapped_column(String(48), default="nothing")
    hold_started_at: Mapped[datetime | None]  # this participant is held (hears music) since then
    hold_ms: Mapped[int | None]  # its finished holds' total

    # Open participants (waiting, connecting, connected) are few: the restart reconciliation finds them by status.
    __table_args__ = (Index("ix_cc_participants_status", "status"),)


class CcTransfer(Base):
    """A transfer of a live call to another agent or to a queue (the call object's `transfers[]`)."""

    __tablename__ = "cc_transfers"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("cc_calls.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default=TransferStatus.TRANSFERRING)
    fail_reason: Mapped[str] = mapped_column(String(48), default="nothing")
    from_agent_id: Mapped[int | None] = mapped_column(ForeignKey("cc_agents.id", ondelete="SET NULL"))
    to_agent_id: Mapped[int | None] = mapped_column(ForeignKey("cc_agents.id", ondelete="SET NULL"))
    from_menu_id: Mapped[int | None] = mapped_column(ForeignKey("cc_menus.id", ondelete="SET NULL"))
    to_menu_id: Mapped[int | None] = mapped_column(ForeignKey("cc_menus.id", ondelete="SET NULL"))
    target_leg_id: Mapped[str | None] = mapped_column(String(36))  # voice_calls.id of the new agent's leg
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]


class PublicIdCounter(Base):
    """The last public id given out per tenant and kind ("call", "menu"); bumped in the creating transaction."""

    __tablename__ = "cc_public_id_counters"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    last_value: Mapped[int] = mapped_column(BigInteger)
