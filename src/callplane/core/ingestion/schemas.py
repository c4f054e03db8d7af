"""What a surface hands the ingestion service once the wire format is parsed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

# A call keeps the fields its surface does not know in `extras`, up to this much compact JSON per call; a call with
# more is refused (docs/decisions.md "Request bodies").
MAX_EXTRAS_BYTES = 64 * 1024


def extras_problem(extras: dict[str, Any]) -> str | None:
    """Why these unknown fields cannot be stored with the call, or None when they can."""
    if extras and len(orjson.dumps(extras)) > MAX_EXTRAS_BYTES:
        return f"unknown fields may hold at most {MAX_EXTRAS_BYTES} bytes of JSON"
    return None


@dataclass
class SubmittedSignal:
    name: str
    value: bool


@dataclass
class SubmittedCustomData:
    name: str
    value: str


@dataclass
class CallSubmission:
    """A finished call as submitted; None means the field was missing or invalid (already reported)."""

    external_id: str | None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    direction: str | None = None
    from_e164: str | None = None
    to_e164: str | None = None
    contact_e164: str | None = None
    campaign_external_id: str | None = None
    language_code: str | None = None
    recording_url: str | None = None
    recording_filename: str | None = None
    recording_auth_config_id: str | None = None
    callback_url: str | None = None
    signals: list[SubmittedSignal] = field(default_factory=list)
    custom_data: list[SubmittedCustomData] = field(default_factory=list)
    agent: dict[str, Any] = field(default_factory=dict)
    customer: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    organization_id: str | None = None

    def content_hash(self) -> str:
        """Same content, same hash: what decides "already received" (202) from "id reused" (409)."""
        import hashlib

        import orjson

        canonical = {
            "external_id": self.external_id,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "direction": self.direction,
            "from": self.from_e164,
            "to": self.to_e164,
            "contact": self.contact_e164,
            "campaign": self.campaign_external_id,
            "language": self.language_code,
            "recording_url": self.recording_url,
            "recording_filename": self.recording_filename,
            "recording_auth_config_id": self.recording_auth_config_id,
            "callback_url": self.callback_url,
            "signals": [[s.name.casefold(), s.value] for s in self.signals],
            "custom_data": [[c.name.casefold(), c.value] for c in self.custom_data],
            "agent": self.agent,
            "customer": self.customer,
            "metadata": self.metadata,
            "extras": self.extras,
            "organization": self.organization_id,
        }
        return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class AcceptedCall:
    call_id: str
    created: bool  # False: the same submission was already accepted earlier
