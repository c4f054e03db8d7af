"""Every model in one place, so the metadata (and Alembic) sees the whole schema."""

from callplane.core.call_tracking.models import CustomDataValue, PromoNumber, TrackedCall
from callplane.core.calls.models import Call, CallCustomData, CallRecording, CallSignal, IdempotencyKey
from callplane.core.contact_center.models import (
    Agent,
    CcCall,
    CcParticipant,
    CcTransfer,
    CrmTicket,
    EndUser,
    Menu,
    MenuAgent,
    OutboundNumber,
    PublicIdCounter,
)
from callplane.core.events.models import Event
from callplane.core.jobs.models import Job
from callplane.core.recordings.bucket_access import AzureBlobAccessConfig, S3AccessConfig
from callplane.core.signals.models import SignalSubmission
from callplane.core.tenancy.models import (
    Account,
    ApiToken,
    Campaign,
    CustomDataField,
    Organization,
    RecordingAuthConfig,
    SftpAccessConfig,
    SignalDefinition,
)
from callplane.core.transcripts.models import CallTranscript
from callplane.core.voice.conference_models import VoiceConference, VoiceConferenceParticipant
from callplane.core.voice.media_stream_models import MediaStreamConfig
from callplane.core.voice.models import (
    CallsConfiguration,
    EventSubscription,
    InboundRoute,
    VoiceCall,
    VoiceDialog,
    VoiceRecording,
)
from callplane.core.voice.node_models import MediaNode, NodeCommand
from callplane.core.voice.trunk_models import MediaFile, SipTrunk
from callplane.core.webhooks.models import Delivery, WebhookEndpoint
from callplane.db.base import Base

__all__ = [
    "Account",
    "Agent",
    "ApiToken",
    "AzureBlobAccessConfig",
    "Base",
    "Call",
    "CallCustomData",
    "CallRecording",
    "CallSignal",
    "CallTranscript",
    "CallsConfiguration",
    "Campaign",
    "CcCall",
    "CcParticipant",
    "CcTransfer",
    "CrmTicket",
    "CustomDataField",
    "CustomDataValue",
    "Delivery",
    "EndUser",
    "Event",
    "EventSubscription",
    "IdempotencyKey",
    "InboundRoute",
    "Job",
    "MediaFile",
    "MediaNode",
    "MediaStreamConfig",
    "Menu",
    "MenuAgent",
    "NodeCommand",
    "Organization",
    "OutboundNumber",
    "PromoNumber",
    "PublicIdCounter",
    "RecordingAuthConfig",
    "S3AccessConfig",
    "SftpAccessConfig",
    "SignalDefinition",
    "SignalSubmission",
    "SipTrunk",
    "TrackedCall",
    "VoiceCall",
    "VoiceConference",
    "VoiceConferenceParticipant",
    "VoiceDialog",
    "VoiceRecording",
    "WebhookEndpoint",
]
