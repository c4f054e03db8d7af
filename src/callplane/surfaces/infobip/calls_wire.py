"""The Infobip Calls API's request bodies (`/calls/1/configurations`, calls, dialogs, recordings, connect), as the
official client's models send them.

Unknown fields are ignored, as Infobip does; fields marked "callplane" are ours. What a body means in core terms is
calls_request_mapping.py's.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from callplane.core.voice.states import ErrorCode

_WIRE = ConfigDict(extra="ignore", populate_by_name=True)


class ConfigurationBody(BaseModel):
    model_config = _WIRE
    id: Annotated[str | None, Field(min_length=1, max_length=128)] = None
    name: Annotated[str | None, Field(min_length=1, max_length=128)] = None
    postCallProcessing: bool = False  # callplane: finished calls' recordings go through the post-call pipeline


class EndpointBody(BaseModel):
    model_config = _WIRE
    type: str
    username: str | None = None
    sipTrunkId: str | None = None
    host: str | None = None  # callplane: a SIP peer "host[:port]" without a trunk
    customHeaders: dict[str, str] | None = None
    phoneNumber: str | None = None


class RecordingBody(BaseModel):
    model_config = _WIRE
    recordingType: Literal["AUDIO", "AUDIO_AND_VIDEO"] = "AUDIO"
    customData: dict[str, str] | None = None
    filePrefix: str | None = None
    channels: Literal["MONO", "STEREO"] = "MONO"


class MachineDetectionBody(BaseModel):
    """`CallsMachineDetectionRequest`."""

    model_config = _WIRE
    enabled: bool
    messageDetectionTimeout: Annotated[int | None, Field(ge=0, le=60)] = None  # 0: no end-of-message detection
    detectionTime: Annotated[float, Field(ge=1, le=5)] = 3.7


class CallBody(BaseModel):
    model_config = _WIRE
    endpoint: EndpointBody
    from_: str | None = Field(default=None, alias="from")
    fromDisplayName: str | None = None
    connectTimeout: Annotated[int | None, Field(ge=1, le=60)] = None
    recording: RecordingBody | None = None
    maxDuration: Annotated[int, Field(ge=1, le=28800)] = 28800
    customData: dict[str, str] | None = None
    callsConfigurationId: str
    parentCallId: str | None = None
    externalId: str | None = None
    machineDetection: MachineDetectionBody | None = None


class AnswerBody(BaseModel):
    model_config = _WIRE
    customData: dict[str, str] | None = None
    recording: RecordingBody | None = None


class PreAnswerBody(BaseModel):
    model_config = _WIRE
    ringing: bool = False
    customData: dict[str, str] | None = None


class HangupBody(BaseModel):
    model_config = _WIRE
    errorCode: Literal[tuple(code.name for code in ErrorCode if code < 10100)] | None = None  # type: ignore[valid-type]


class TerminationBody(BaseModel):
    model_config = _WIRE
    type: Literal["DTMF"] = "DTMF"
    terminator: str | None = None


class PreferencesBody(BaseModel):
    model_config = _WIRE
    voiceGender: Literal["FEMALE", "MALE"] | None = None
    voiceName: str | None = None


class SayBody(BaseModel):
    model_config = _WIRE
    text: Annotated[str, Field(min_length=1, max_length=1500)]
    language: str
    speechRate: Annotated[float, Field(ge=0.5, le=2.0)] = 1.0
    loopCount: Annotated[int, Field(ge=1)] = 1
    preferences: PreferencesBody | None = None
    stopOn: TerminationBody | None = None
    customData: dict[str, str] | None = None


class ContentBody(BaseModel):
    model_config = _WIRE
    type: Literal["FILE", "URL", "RECORDING", "TEXT"]
    fileId: str | None = None
    fileUrl: str | None = None
    cacheDuration: int | None = None
    text: str | None = None
    language: str | None = None
    speechRate: Annotated[float, Field(ge=0.5, le=2.0)] = 1.0
    preferences: PreferencesBody | None = None


class PlayBody(BaseModel):
    model_config = _WIRE
    content: ContentBody
    loopCount: Annotated[int, Field(ge=1)] = 1
    timeout: Annotated[int | None, Field(ge=1)] = None
    offset: Annotated[int, Field(ge=0)] = 0
    stopOn: TerminationBody | None = None
    customData: dict[str, str] | None = None


class SendDtmfBody(BaseModel):
    model_config = _WIRE
    dtmf: Annotated[str, Field(min_length=1, max_length=64)]
    customData: dict[str, str] | None = None


class CaptureDtmfBody(BaseModel):
    model_config = _WIRE
    maxLength: Annotated[int, Field(ge=1, le=255)]
    timeout: Annotated[int, Field(ge=1, le=600_000)]
    terminator: Annotated[str | None, Field(max_length=1)] = None
    digitTimeout: Annotated[int | None, Field(ge=1, le=600_000)] = None
    playContent: ContentBody | None = None
    customData: dict[str, str] | None = None


class StartRecordingInner(BaseModel):
    model_config = _WIRE
    recordingType: Literal["AUDIO", "AUDIO_AND_VIDEO"] = "AUDIO"
    customData: dict[str, str] | None = None
    filePrefix: str | None = None
    channels: Literal["MONO", "STEREO"] = "MONO"  # callplane: the call's recording may be STEREO here too
    maxSilence: Annotated[int | None, Field(ge=1, le=28800)] = None  # seconds of silence, then it stops
    beep: bool = False
    maxDuration: Annotated[int | None, Field(ge=1, le=28800)] = None  # seconds, then it stops


class StartRecordingBody(BaseModel):
    model_config = _WIRE
    recording: StartRecordingInner | None = None


class RingbackBody(BaseModel):
    model_config = _WIRE
    enabled: bool = False


class PropagationBody(BaseModel):
    """`CallsDialogPropagationOptions` (the client's defaults)."""

    model_config = _WIRE
    childCallHangup: bool = True
    childCallRinging: bool = False
    ringbackGeneration: RingbackBody | None = None

    def ringback(self) -> bool:
        return bool(self.ringbackGeneration and self.ringbackGeneration.enabled)


class DialogCallBody(BaseModel):
    model_config = _WIRE
    endpoint: EndpointBody
    from_: str | None = Field(default=None, alias="from")
    fromDisplayName: str | None = None
    connectTimeout: Annotated[int | None, Field(ge=1, le=60)] = None
    customData: dict[str, str] | None = None
    machineDetection: MachineDetectionBody | None = None


class DialogCompositionBody(BaseModel):
    model_config = _WIRE
    enabled: bool = False


class DialogRecordingBody(BaseModel):
    """`CallsDialogRecordingRequest`."""

    model_config = _WIRE
    recordingType: Literal["AUDIO", "AUDIO_AND_VIDEO"]
    dialogComposition: DialogCompositionBody | None = None
    customData: dict[str, str] | None = None
    filePrefix: str | None = None


class DialogBody(BaseModel):
    model_config = _WIRE
    parentCallId: Annotated[str, Field(max_length=128)]
    childCallRequest: DialogCallBody | None = None
    recording: DialogRecordingBody | None = None
    maxDuration: Annotated[int, Field(ge=1, le=28800)] = 28800
    propagationOptions: PropagationBody | None = None


class ExistingDialogBody(BaseModel):
    model_config = _WIRE
    maxDuration: Annotated[int, Field(ge=1, le=28800)] = 28800
    propagationOptions: PropagationBody | None = None


class DialogSayBody(BaseModel):
    """`CallsDialogSayRequest` (no stopOn or customData on a dialog)."""

    model_config = _WIRE
    text: Annotated[str, Field(min_length=1, max_length=1500)]
    language: str
    speechRate: Annotated[float, Field(ge=0.5, le=2.0)] = 1.0
    loopCount: Annotated[int, Field(ge=1)] = 1
    preferences: PreferencesBody | None = None


class DialogPlayBody(BaseModel):
    """`CallsDialogPlayRequest`."""

    model_config = _WIRE
    loopCount: Annotated[int, Field(ge=1)] = 1
    content: ContentBody


class MultiChannelBody(BaseModel):
    model_config = _WIRE
    enabled: bool


class CompositionBody(BaseModel):
    """`CallsOnDemandComposition`."""

    model_config = _WIRE
    deleteCallRecordings: bool = True
    multiChannel: MultiChannelBody | None = None


class ConferenceRequestBody(BaseModel):
    model_config = _WIRE
    name: str | None = None


class ConnectBody(BaseModel):
    model_config = _WIRE
    callIds: list[str]
    conferenceRequest: ConferenceRequestBody | None = None


class ConnectWithNewCallBody(BaseModel):
    model_config = _WIRE
    callRequest: DialogCallBody
    connectOnEarlyMedia: bool = False
    conferenceRequest: ConferenceRequestBody | None = None


class ApplicationTransferBody(BaseModel):
    """`CallsApplicationTransferRequest`: `platform` (Infobip's application/entity) is accepted and ignored."""

    model_config = _WIRE
    destinationCallsConfigurationId: str = Field(min_length=1)
    platform: dict[str, object] | None = None
    timeout: int = Field(default=30, ge=1, le=600)
    customData: dict[str, str] | None = None
