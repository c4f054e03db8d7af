"""Signal submissions kept until their call can take them (the Signal API's ``call_in_progress``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callplane.db.base import Base, new_id, utcnow


class SubmissionStatus(StrEnum):
    PENDING = "pending"  # no finished call matched yet
    APPLIED = "applied"
    REJECTED = "rejected"  # matched a call, but failed a check only the call could reveal; `reason` says which


class SignalSubmission(Base):
    """A request accepted with 201 before its call could be found: the search and what to apply, as sent."""

    __tablename__ = "signal_submissions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # The token's organization scope, so a later match never reaches calls the submitter could not see.
    organization_id: Mapped[str | None] = mapped_column(String(36))
    search: Mapped[dict[str, Any]] = mapped_column(default=dict)
    signals: Mapped[list[Any]] = mapped_column(default=list)
    custom_data: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16), default=SubmissionStatus.PENDING)
    call_id: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_signal_submissions_account_status", "account_id", "status"),)
