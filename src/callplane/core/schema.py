"""Every model in one place, so the metadata (and Alembic) sees the whole schema."""

from callplane.core.calls.models import Call, CallCustomData, CallSignal, IdempotencyKey
from callplane.core.events.models import Event
from callplane.core.jobs.models import Job
from callplane.core.tenancy.models import (
    Account,
    ApiToken,
    Campaign,
    CustomDataField,
    Organization,
    RecordingAuthConfig,
    SignalDefinition,
)
from callplane.db.base import Base

__all__ = [
    "Account",
    "ApiToken",
    "Base",
    "Call",
    "CallCustomData",
    "CallSignal",
    "Campaign",
    "CustomDataField",
    "Event",
    "IdempotencyKey",
    "Job",
    "Organization",
    "RecordingAuthConfig",
    "SignalDefinition",
]
