"""What the Calls API asks of a live call: endpoints, new calls, speech, play and capture options, recordings.

Plain values (no engine types): API processes without an engine build them, and the command relay carries them
to the media node by their names (live/relay.py), so every type a command argument is made of is defined or
imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from callplane.core.voice.models import EndpointType
from callplane.core.voice.states import ErrorCode

__all__ = [
    "CallFilter",
    "CaptureRequest",
    "DialogRecordingRequest",
    "Endpoint",
    "EndpointType",
    "ErrorCode",
    "JoinOptions",
    "MachineDetectionRequest",
    "NewCall",
    "NewConference",
    "ParticipantUpdate",
    "PlayContent",
    "PlayOptions",
    "RecordingChannels",
    "RecordingRequest",
    "Speech",
    "SpeechCaptureRequest",
    "TranscriptionRequest",
]

DEFAULT_MAX_DURATION_S = 28800


class RecordingChannels(StrEnum):
    """The engine's recording layouts, by the same names (live/ hands the engine its own enum)."""

    MONO = "MONO"
    STEREO = "STEREO"
    HEARD = "HEARD"  # mono, only what the far end sent: one party's own track (a dialog's per-leg file)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Who to call: a SIP user at a trunk or host, or a phone number through a trunk."""

    type: EndpointType
    user: str  # SIP username or phone number
    trunk_id: str | None = None
    host: str | None = None  # "host[:port]" of a SIP peer without a trunk
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RecordingRequest:
    channels: RecordingChannels = RecordingChannels.MONO
    file_prefix: str | None = None
    custom_data: Mapping[str, str] = field(default_factory=dict)
    beep: bool = False  # a short beep, then the recording starts
    max_silence_s: int | None = None  # the recording stops after this much silence
    max_duration_s: int | None = None  # the recording stops after this long


@dataclass(frozen=True, slots=True)
class MachineDetectionRequest:
    """Answering-machine detection once an outbound call is answered: a verdict (HUMAN or MACHINE) by
    `detection_time_ms`, and with `message_timeout_ms` the end of a machine's greeting looked for until then
    (both counted from the answer)."""

    detection_time_ms: int = 3700
    message_timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class NewCall:
    configuration_id: str
    endpoint: Endpoint
    from_user: str | None = None
    from_display_name: str | None = None
    connect_timeout_s: int | None = None
    max_duration_s: int = DEFAULT_MAX_DURATION_S
    custom_data: Mapping[str, str] = field(default_factory=dict)
    external_id: str | None = None
    parent_call_id: str | None = None
    recording: RecordingRequest | None = None
    dialog_id: str | None = None
    machine_detection: MachineDetectionRequest | None = None  # on the answer (docs/voice.md)


@dataclass(frozen=True, slots=True)
class Speech:
    text: str
    language: str = "en"
    speech_rate: float = 1.0
    gender: str | None = None  # MALE | FEMALE


@dataclass(frozen=True, slots=True)
class PlayContent:
    """Exactly one of: an uploaded file id, a recording file id, a URL, speech."""

    file_id: str | None = None
    recording_file_id: str | None = None
    url: str | None = None
    speech: Speech | None = None


@dataclass(frozen=True, slots=True)
class PlayOptions:
    loop_count: int = 1
    offset_ms: int = 0
    timeout_ms: int | None = None
    stop_on_dtmf: bool = False
    stop_terminator: str | None = None
    custom_data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    max_length: int
    timeout_ms: int
    terminator: str | None = None
    digit_timeout_ms: int | None = None
    custom_data: Mapping[str, str] = field(default_factory=dict)
    play: PlayContent | None = None


@dataclass(frozen=True, slots=True)
class DialogRecordingRequest:
    composed: bool = False  # dialogComposition.enabled: one file of both parties mixed
    file_prefix: str | None = None
    custom_data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallFilter:
    live: bool
    endpoint_type: str | None = None
    configuration_id: str | None = None
    from_user: str | None = None
    to_user: str | None = None
    direction: str | None = None
    state: str | None = None
    start_time_after: datetime | None = None
    dialog_id: str | None = None
    conference_id: str | None = None


@dataclass(frozen=True, slots=True)
class NewConference:
    """A conference room (`POST /conferences`, or the implicit one of a connect)."""

    configuration_id: str
    name: str | None = None
    max_duration_s: int = DEFAULT_MAX_DURATION_S
    recording: DialogRecordingRequest | None = None  # started when the first participant joins


@dataclass(frozen=True, slots=True)
class JoinOptions:
    """How a call joins a conference."""

    connect_on_early_media: bool = False  # join on the call's early media (183), not only on its answer
    ringback: bool = False  # the room hears a generated ringback while this (new) call rings
    role: str = "DEFAULT"  # DEFAULT | ADVISOR | MONITOR | LISTENER | AUDITOR (kept and reported)
    custom_data: Mapping[str, str] = field(default_factory=dict)  # merged into the call's


@dataclass(frozen=True, slots=True)
class ParticipantUpdate:
    """A participant's (or every participant's) media flags and role; None leaves one as it is."""

    muted: bool | None = None
    deaf: bool | None = None
    role: str | None = None


@dataclass(frozen=True, slots=True)
class TranscriptionRequest:
    """Live transcription of a call leg (`start-transcription`): what the far end says, in `language` (an IETF tag
    such as en-US), as COMPLETE results per utterance and, with `interim`, INTERIM ones while it goes on."""

    language: str
    interim: bool = False
    custom_dictionary: tuple[str, ...] = ()  # accepted, not used by the recogniser
    advanced_formatting: bool = False  # Whisper punctuates and cases anyway


@dataclass(frozen=True, slots=True)
class SpeechCaptureRequest:
    """A short spoken answer (`capture/speech`): ended by a key phrase, `max_silence_s` of silence after speech,
    `timeout_s` in all, or the hangup."""

    language: str
    timeout_s: int
    max_silence_s: int | None = None
    key_phrases: tuple[str, ...] = ()
    terminate_on_key_phrase: bool = True
    custom_dictionary: tuple[str, ...] = ()
    custom_data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MediaStreamRequest:
    """`start-media-stream`: stream the leg's audio to a media-stream configuration's WebSocket server; with
    `replace_media`, what the server sends back is what the call's peers hear instead of the leg."""

    config_id: str
    replace_media: bool = False
