"""Request bodies of `/calls/1/conferences`, connect and `/calls/1/recordings/conferences`, as the official client's
models send them (`CallsConferenceRequest`, `CallsAddNewCallRequest`, `CallsAddExistingCallRequest`,
`CallsUpdateRequest`, `CallsUpdateCallRequest`, `CallsConferenceRecordingRequest`, `CallsConferenceSayRequest`,
`CallsConferencePlayRequest`, `CallsConnectRequest`, `CallsConnectWithNewCallRequest`, ...).

Unknown fields are ignored, as Infobip does. What a body means in core terms is conferences_mapping.py's.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from callplane.surfaces.infobip.calls_wire import (
    ContentBody,
    DialogCallBody,
    PreferencesBody,
    RecordingBody,
    RingbackBody,
)

_WIRE = ConfigDict(extra="ignore", populate_by_name=True)

RoleType = Literal["DEFAULT", "ADVISOR", "MONITOR", "LISTENER", "AUDITOR"]


class CompositionToggleBody(BaseModel):
    model_config = _WIRE
    enabled: bool = False


class ConferenceRecordingBody(BaseModel):
    """`CallsConferenceRecordingRequest`."""

    model_config = _WIRE
    recordingType: Literal["AUDIO", "AUDIO_AND_VIDEO"]
    conferenceComposition: CompositionToggleBody | None = None
    customData: dict[str, str] | None = None
    filePrefix: str | None = None


class ConferenceBody(BaseModel):
    """`CallsConferenceRequest`."""

    model_config = _WIRE
    name: Annotated[str | None, Field(min_length=1, max_length=255)] = None
    recording: ConferenceRecordingBody | None = None
    maxDuration: Annotated[int, Field(ge=1, le=28800)] = 28800
    callsConfigurationId: Annotated[str, Field(min_length=1, max_length=128)]


class ActionConferenceBody(BaseModel):
    """`CallsActionConferenceRequest` (the implicit conference of a connect)."""

    model_config = _WIRE
    name: Annotated[str | None, Field(min_length=1, max_length=255)] = None
    recording: ConferenceRecordingBody | None = None
    maxDuration: Annotated[int, Field(ge=1, le=28800)] = 28800


class RoleBody(BaseModel):
    """`CallsRole` (its subtypes carry nothing more)."""

    model_config = _WIRE
    type: RoleType = "DEFAULT"


class ActionCallBody(DialogCallBody):
    """`CallsActionCallRequest`: a new call placed into a conference."""

    recording: RecordingBody | None = None  # refused: a conference's calls are recorded by the conference
    maxDuration: Annotated[int, Field(ge=1, le=28800)] = 28800


class AddNewCallBody(BaseModel):
    """`CallsAddNewCallRequest`."""

    model_config = _WIRE
    callRequest: ActionCallBody
    connectOnEarlyMedia: bool = False
    ringbackGeneration: RingbackBody | None = None
    role: RoleBody | None = None


class AddExistingCallBody(BaseModel):
    """`CallsAddExistingCallRequest`."""

    model_config = _WIRE
    connectOnEarlyMedia: bool = False
    ringbackGeneration: RingbackBody | None = None
    role: RoleBody | None = None
    customData: dict[str, str] | None = None


class UpdateBody(BaseModel):
    """`CallsUpdateRequest` (every participant); `blind` is video, which callplane has not: accepted, no effect."""

    model_config = _WIRE
    muted: bool | None = None
    deaf: bool | None = None
    blind: bool | None = None


class UpdateCallBody(UpdateBody):
    """`CallsUpdateCallRequest` (one participant)."""

    role: RoleBody | None = None


class ConferenceSayBody(BaseModel):
    """`CallsConferenceSayRequest`."""

    model_config = _WIRE
    text: Annotated[str, Field(min_length=1, max_length=1500)]
    language: str
    speechRate: Annotated[float, Field(ge=0.5, le=2.0)] = 1.0
    loopCount: Annotated[int, Field(ge=1)] = 1
    preferences: PreferencesBody | None = None


class ConferencePlayBody(BaseModel):
    """`CallsConferencePlayRequest`."""

    model_config = _WIRE
    loopCount: Annotated[int, Field(ge=1)] = 1
    content: ContentBody


class BroadcastTextBody(BaseModel):
    """`CallsConferenceBroadcastWebrtcTextRequest`."""

    model_config = _WIRE
    text: Annotated[str | None, Field(max_length=2000)] = None


class ConnectCallsBody(BaseModel):
    """`CallsConnectRequest`."""

    model_config = _WIRE
    callIds: list[str]
    conferenceRequest: ActionConferenceBody | None = None


class ConnectNewCallBody(BaseModel):
    """`CallsConnectWithNewCallRequest`."""

    model_config = _WIRE
    callRequest: ActionCallBody
    connectOnEarlyMedia: bool = False
    ringbackGeneration: RingbackBody | None = None
    conferenceRequest: ActionConferenceBody | None = None
