"""The media engine as the control plane sees it: commands in, plain dataclass events out.

The core talks to this Protocol only; it never sees sippy objects, threads or sockets. Calls are named
by our own `call_id` strings. Every command is a coroutine; every observation is an event on the queues
handed out by `subscribe()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from callplane.errors import CallplaneError, Conflict, InvalidInput, NotFound
from callplane.media.audio import CollectionEnd, DtmfCollection, RecordingChannels, compose_tracks
from callplane.media.channel import AudioSource
from callplane.media.g711 import PayloadType, Pcm

__all__ = [
    "AudioSource",
    "AudioTap",
    "CallAnswered",
    "CallDirection",
    "CallEarlyMedia",
    "CallEnded",
    "CallEngine",
    "CallNotFound",
    "CallRinging",
    "CallStateConflict",
    "CollectionEnd",
    "DtmfCollection",
    "DtmfReceived",
    "EngineConfig",
    "EngineEvent",
    "FileSource",
    "HangupInitiator",
    "IncomingCall",
    "MediaUnavailable",
    "MixNotFound",
    "MixRecordingFinished",
    "OutboundCall",
    "PlaySource",
    "PlaybackFinished",
    "RecordingChannels",
    "RecordingFinished",
    "RegistrationChanged",
    "SipReasonHeader",
    "SipTrunk",
    "SpeechSource",
    "ToneSource",
    "TransferRequested",
    "TrunkRegistration",
    "UrlSource",
    "compose_tracks",
]


# ---- errors -------------------------------------------------------------------------------------


class CallNotFound(NotFound):
    """No live call has this id on this engine."""


class CallStateConflict(Conflict):
    """The call is not in a state that allows this action."""


class MixNotFound(NotFound):
    """No mix (conference room) has this id on this engine."""


class MediaUnavailable(InvalidInput):
    """The audio to play could not be fetched, decoded or synthesised."""


class EngineNotRunning(CallplaneError):
    """The media engine has not been started or has been stopped."""

    permanent = False


# ---- values -------------------------------------------------------------------------------------


class CallDirection(StrEnum):
    INBOUND = "INBOUND"
    OUTBOUND = "OUTBOUND"


class HangupInitiator(StrEnum):
    LOCAL = "LOCAL"  # our control plane asked
    REMOTE = "REMOTE"  # BYE, CANCEL or a final failure from the far end
    ENGINE = "ENGINE"  # a timeout or an internal failure ended it


@dataclass(frozen=True, slots=True)
class SipReasonHeader:
    """An RFC 3326 Reason header: `Q.850;cause=16;text="Normal call clearing"` or `SIP;cause=480`."""

    protocol: str = "Q.850"
    cause: int = 16
    text: str | None = None

    def __str__(self) -> str:
        if self.text is None:
            return f"{self.protocol};cause={self.cause}"
        return f'{self.protocol};cause={self.cause};text="{self.text}"'


NORMAL_CLEARING = SipReasonHeader("Q.850", 16, "Normal call clearing")
NO_ANSWER = SipReasonHeader("Q.850", 19, "No answer")


@dataclass(frozen=True, slots=True)
class SipTrunk:
    """Where outbound calls and registrations go, and the digest credentials the trunk may ask for."""

    host: str
    port: int = 5060
    username: str | None = None
    password: str | None = None
    # The IP address the outbound target policy checked `host` to (core/voice/outbound.py): requests are sent
    # there, with no second lookup, while the Request-URI keeps `host`. None: the engine resolves `host`.
    address: str | None = None


@dataclass(frozen=True, slots=True)
class OutboundCall:
    to_user: str
    trunk: SipTrunk
    from_user: str = "callplane"
    from_display_name: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    ring_timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class TrunkRegistration:
    trunk: SipTrunk
    user: str
    expires_s: int = 3600


@dataclass(frozen=True, slots=True)
class FileSource:
    path: Path


@dataclass(frozen=True, slots=True)
class UrlSource:
    url: str


@dataclass(frozen=True, slots=True)
class SpeechSource:
    text: str
    voice: str = "en"
    words_per_minute: int = 160


@dataclass(frozen=True, slots=True)
class ToneSource:
    """A generated cadenced tone, e.g. ringback: `frequencies_hz` summed, `on_ms` of tone then `off_ms` of silence
    (one cadence; loop it with `loop_count`)."""

    frequencies_hz: tuple[float, ...] = (425.0,)
    on_ms: int = 1000
    off_ms: int = 4000


RINGBACK = ToneSource((425.0,), 1000, 4000)  # ITU-T E.180's common ringing tone: 425 Hz, 1 s on, 4 s off


PlaySource = FileSource | UrlSource | SpeechSource | ToneSource


@dataclass(frozen=True, slots=True)
class EngineConfig:
    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    rtp_host: str = "127.0.0.1"
    rtp_port_range: tuple[int, int] = (20000, 30000)
    cache_dir: Path = Path("media-cache")
    user_agent: str = "callplane"
    codecs: tuple[PayloadType, ...] = (PayloadType.PCMU, PayloadType.PCMA)
    log_sip_messages: bool = False
    # SO_RCVBUF of the SIP socket: the 208 KB default overflowed under a burst of CANCELs. Linux caps it at
    # net.core.rmem_max unless the process may use SO_RCVBUFFORCE (root); 0 keeps the system default.
    sip_receive_buffer_bytes: int = 4 * 1024 * 1024
    # Malformed SIP is logged once per source address per this many seconds, with counters (sip_guard).
    sip_malformed_log_interval_s: float = 60.0


class AudioTap(Protocol):
    """Listens to one call's audio on the media clock (`CallEngine.add_audio_tap`).

    `write` is called once per 20 ms tick, on the event loop inside the clock's tick, with 160-sample 8 kHz mono
    int16 frames: `inbound` is what the far end sent (its own audio, even while `replace_inbound_audio` gives the
    call's peers something else), `outbound` what the call sends to the far end; None where nothing was heard or
    sent (silence). It must not block, await or keep the frames' buffers for later writes into them (the frames
    are not modified afterwards; copy or queue them). A tap that raises is removed; the call carries on.
    """

    def write(self, inbound: Pcm | None, outbound: Pcm | None) -> None: ...


# ---- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """An INVITE with a usable offer arrived; nothing has been answered (not even 180) yet."""

    call_id: str
    from_user: str
    to_user: str
    from_display_name: str | None
    headers: Mapping[str, str]
    sip_call_id: str


@dataclass(frozen=True, slots=True)
class CallRinging:
    """Outbound: the far end sent 180 (or 183 without SDP)."""

    call_id: str
    status: int


@dataclass(frozen=True, slots=True)
class CallEarlyMedia:
    """Outbound: 183 with SDP; the far end's early media now flows to the call."""

    call_id: str
    status: int


@dataclass(frozen=True, slots=True)
class CallAnswered:
    call_id: str


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    call_id: str
    digit: str


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is over. `sip_status` is the far end's final status for a failed outbound call, 487 for a
    caller's CANCEL, our chosen status for a reject; `reason` is the Reason header seen or sent."""

    call_id: str
    initiator: HangupInitiator
    answered: bool
    sip_status: int | None = None
    sip_reason_phrase: str | None = None
    reason: SipReasonHeader | None = None


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    call_id: str
    playback_id: str
    completed: bool


@dataclass(frozen=True, slots=True)
class RecordingFinished:
    call_id: str
    path: Path
    duration_ms: int


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    registration_id: str
    registered: bool
    status_line: str | None = None


@dataclass(frozen=True, slots=True)
class MixRecordingFinished:
    """A mix's recording closed (`stop_mix_recording`, `destroy_mix`, engine stop): the mixed mono WAV at `path`
    and, when a member folder was given, one mono WAV per call that was a member while it ran (`call_id` -> path;
    what that call sent into the room, silence while muted or not a member; every file as long as `path`)."""

    mix_id: str
    path: Path
    duration_ms: int
    member_paths: Mapping[str, Path]


@dataclass(frozen=True, slots=True)
class TransferRequested:
    """The far end of a call bridged with another sent REFER (a blind transfer, RFC 3515) and we accepted it (202;
    a call that is not bridged is refused with 603): call `target_user@target_host[:target_port]` and report how
    it goes with `notify_transfer`."""

    call_id: str
    target_user: str
    target_host: str
    target_port: int | None
    refer_to: str
    referred_by: str | None = None


EngineEvent = (
    IncomingCall
    | CallRinging
    | CallEarlyMedia
    | CallAnswered
    | DtmfReceived
    | CallEnded
    | PlaybackFinished
    | RecordingFinished
    | RegistrationChanged
    | MixRecordingFinished
    | TransferRequested
)


# ---- the interface ------------------------------------------------------------------------------


class CallEngine(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def subscribe(self) -> asyncio.Queue[EngineEvent]:
        """A fresh queue that receives every event from now on."""
        ...

    async def send_ringing(self, call_id: str) -> None:
        """180 Ringing, only when asked."""
        ...

    async def pre_answer(self, call_id: str) -> None:
        """183 with our SDP: media flows both ways (early media) before the call is answered."""
        ...

    async def answer(self, call_id: str) -> None: ...

    async def reject(
        self,
        call_id: str,
        *,
        status: int = 486,
        reason_phrase: str | None = None,
        reason: SipReasonHeader | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None: ...

    async def hangup(
        self,
        call_id: str,
        *,
        reason: SipReasonHeader | None = NORMAL_CLEARING,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """BYE when answered; CANCEL for our unanswered outbound call; 480 for an unanswered inbound one."""
        ...

    async def dial(self, call: OutboundCall) -> str: ...

    async def play(
        self,
        call_id: str,
        source: PlaySource,
        *,
        loop_count: int = 1,
        offset_ms: int = 0,
        timeout_ms: int | None = None,
    ) -> str:
        """Start playing (replacing what plays); returns a playback id that PlaybackFinished names."""
        ...

    async def stop_playback(self, call_id: str) -> None: ...

    async def start_recording(
        self,
        call_id: str,
        path: Path,
        channels: RecordingChannels = RecordingChannels.MONO,
        *,
        max_silence_s: float | None = None,
        max_duration_s: float | None = None,
    ) -> None:
        """Record the call into a WAV. With `max_silence_s` the engine ends the recording itself after that long
        of silence in what it records, with `max_duration_s` after that long (RecordingFinished, as a stop)."""
        ...

    async def stop_recording(self, call_id: str) -> RecordingFinished | None: ...

    async def collect_dtmf(
        self,
        call_id: str,
        *,
        max_length: int,
        terminator: str | None = None,
        first_digit_timeout_s: float = 5.0,
        inter_digit_timeout_s: float = 3.0,
    ) -> DtmfCollection: ...

    async def send_dtmf(self, call_id: str, digits: str) -> None: ...

    async def bridge(self, call_id: str, other_call_id: str) -> None: ...

    async def play_to_bridge(self, call_id: str, source: PlaySource, *, loop_count: int = 1) -> str:
        """Play to both parties of the bridge `call_id` is in, mixed over what they hear from each other
        (replacing the bridge's current prompt); returns a playback id that PlaybackFinished(call_id) names."""
        ...

    async def stop_bridge_playback(self, call_id: str) -> None: ...

    async def unbridge(self, call_id: str) -> None: ...

    async def notify_transfer(self, call_id: str, status: int, reason_phrase: str) -> None:
        """A NOTIFY of the call's accepted REFER with a sipfrag status line: final (and the subscription over)
        when `status` >= 200."""
        ...

    # ---- mixes: N-party conference rooms on the media clock (docs/media-engine.md "Mixes") ----------------------

    async def create_mix(self, mix_id: str) -> None:
        """A new, empty room named by the caller; CallStateConflict if a mix with this id exists."""
        ...

    async def join_mix(self, mix_id: str, call_id: str, *, muted: bool = False, deaf: bool = False) -> None:
        """The call (live with media: answered or early media) joins the room from the next tick: it hears every
        other unmuted member and the room's prompt, summed. CallNotFound for an unknown call, MixNotFound for an
        unknown mix, CallStateConflict without media, when bridged or when already in a mix (this one included)."""
        ...

    async def update_mix_member(self, call_id: str, *, muted: bool | None = None, deaf: bool | None = None) -> None:
        """Muted: the room hears nothing from the call. Deaf: the call hears nothing from the room (neither the
        others nor the room's prompt; its own `play` still). None leaves a flag as it is. CallStateConflict when
        the call is in no mix."""
        ...

    async def leave_mix(self, call_id: str) -> None:
        """The call leaves its mix and stays up, hearing silence (or its own playback); nothing if in no mix.
        A member whose call ends leaves by itself."""
        ...

    async def play_to_mix(self, mix_id: str, source: PlaySource, *, loop_count: int = 1) -> str:
        """Play to every member (deaf ones excepted), summed with what each hears of the others; it replaces the
        room's current prompt and goes into the room's recording. PlaybackFinished(call_id=mix_id, playback_id,
        completed) when it ends, is stopped or replaced, or the mix is destroyed."""
        ...

    async def stop_mix_playback(self, mix_id: str) -> None:
        """The room's prompt stops (PlaybackFinished completed=False); nothing if none plays."""
        ...

    async def start_mix_recording(self, mix_id: str, path: Path, *, member_dir: Path | None = None) -> None:
        """Record the room, mono 8 kHz WAV at `path` (every unmuted member and the prompt, summed); with
        `member_dir` also `<member_dir>/<call_id>.wav` per member: what that call sent into the room, aligned with
        `path` (silence before it joined, after it left and while muted). CallStateConflict if already recording."""
        ...

    async def stop_mix_recording(self, mix_id: str) -> MixRecordingFinished | None:
        """Close the recording, emit and return MixRecordingFinished; None if the mix was not recording."""
        ...

    async def destroy_mix(self, mix_id: str) -> None:
        """Every member leaves (no call is hung up), the prompt stops (PlaybackFinished completed=False, first),
        the recording closes (MixRecordingFinished); the id is free again. MixNotFound for an unknown mix."""
        ...

    async def register(self, registration: TrunkRegistration) -> str: ...

    async def unregister(self, registration_id: str) -> None: ...

    async def add_audio_tap(self, call_id: str, tap: AudioTap) -> str:
        """Feed both directions of the call's audio to `tap` from the next tick on; returns a tap id.
        CallStateConflict before the call has media; several taps may listen to one call."""
        ...

    async def remove_audio_tap(self, call_id: str, tap_id: str) -> None:
        """The tap hears nothing more (an unknown tap id is ignored). CallNotFound once the call ended: its taps
        went with it."""
        ...

    async def replace_inbound_audio(self, call_id: str, source: AudioSource | None) -> None:
        """What the call's peers (a bridge, a conference) and its recordings get as this leg's inbound audio: one
        `source.read_frame()` per tick instead of the far end's audio (None from it: silence for that tick; the
        source is not dropped). `source=None` gives them the far end's own audio again. Taps still hear the far
        end. CallStateConflict before the call has media."""
        ...
