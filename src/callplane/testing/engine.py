"""An in-memory CallEngine for control-plane tests, the way httpx ships `MockTransport`.

`FakeCallEngine` keeps the CallEngine contract of `media/sip.py:SippyCallEngine` (the same events, in the same
order, and the same errors for commands a call's state does not allow) with no SIP, RTP or audio underneath.
Simulated far ends stand where sipp stands in the wire tests:

- outbound calls meet the `FarEnd` routed for their `to_user` (or the default): it rings, answers or fails with
  a cause, sends digits, hangs up, each after a delay the test chooses (0 by default), or waits for a command
  through `far_end(call_id)`;
- inbound calls are injected with `incoming(...)`, their caller scripted by a `FarEnd` as well.

Everything a call was given is kept on its `FakeCall` after it ends (what was played or said, the digits sent,
the recordings, the bridge), for tests to assert on. Recordings are real WAV files (silence, or a tone) as long
as the recording ran. Playback lasts `playback_s` per loop of the source.

The engine runs on the event loop that started it; the scripting methods (`incoming`, `far_end(...)` and its
commands, `route`) may be called from any thread (a test driving an app served in another thread): they run on
the engine's loop and return once done. In short (tests/live has the full picture):

    fake = FakeCallEngine()
    app = create_app(settings, call_engine=fake)              # voice_enabled=True; served as usual
    fake.route("alice", FarEnd(answer_after_s=0.1, fail=BUSY))  # how outbound calls to alice go
    call_id = fake.incoming("ivr", from_user="+15305550123")    # a caller arrives
    fake.far_end(call_id).send_digits("15#")                    # ... and presses keys once answered
    assert fake.calls[call_id].said == ["Welcome."]             # what the control plane did to the call

`tests/live/test_engine_contract.py` holds this engine and `SippyCallEngine` to one contract.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

import numpy as np

from callplane.media.audio import (
    HANGUP_MARK,
    SAMPLE_RATE,
    DtmfCollection,
    RecordingChannels,
    collect_digits,
    write_wav,
)
from callplane.media.engine import (
    NO_ANSWER,
    NORMAL_CLEARING,
    AudioSource,
    AudioTap,
    CallAnswered,
    CallDirection,
    CallEarlyMedia,
    CallEnded,
    CallNotFound,
    CallRinging,
    CallStateConflict,
    DtmfReceived,
    EngineEvent,
    EngineNotRunning,
    FileSource,
    HangupInitiator,
    IncomingCall,
    MediaUnavailable,
    MixNotFound,
    MixRecordingFinished,
    OutboundCall,
    PlaybackFinished,
    PlaySource,
    RecordingFinished,
    RegistrationChanged,
    SipReasonHeader,
    SpeechSource,
    TransferRequested,
    TrunkRegistration,
    UrlSource,
)
from callplane.media.g711 import Pcm
from callplane.media.jitter import FRAME_SAMPLES

__all__ = [
    "ANSWERS",
    "BUSY",
    "DECLINED",
    "NOT_FOUND",
    "RINGS_FOREVER",
    "UNAVAILABLE",
    "UNREACHABLE",
    "WAITS",
    "Failure",
    "FakeCall",
    "FakeCallEngine",
    "FakeCallState",
    "FakeMix",
    "FarEnd",
    "FarEndControl",
    "MixMembership",
    "MixRecording",
    "Playback",
    "Recording",
]

T = TypeVar("T")

_DTMF_DIGITS = frozenset("0123456789*#ABCD")
_REASON_PHRASES = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    410: "Gone",
    480: "Temporarily Unavailable",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    503: "Service Unavailable",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
}  # fmt: skip  (SippyCallEngine's table: a reject without a phrase gets the same one)


# ---- far ends -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failure:
    """A far end's final non-2xx answer to our INVITE, with the Reason header it sends."""

    status: int
    phrase: str
    reason: SipReasonHeader | None = None


BUSY = Failure(486, "Busy Here", SipReasonHeader("Q.850", 17, "User busy"))
DECLINED = Failure(603, "Decline", SipReasonHeader("Q.850", 21, "Call rejected"))
NOT_FOUND = Failure(404, "Not Found", SipReasonHeader("Q.850", 1, "Unallocated number"))
UNAVAILABLE = Failure(480, "Temporarily Unavailable", SipReasonHeader("Q.850", 18, "No user responding"))
UNREACHABLE = Failure(408, "Request Timeout")  # what sippy reports when nothing answers the INVITE


@dataclass(frozen=True, slots=True)
class FarEnd:
    """A simulated far end. Delays are seconds on the engine's loop, each counted from the step before it:
    ring after the INVITE, the final answer after the ring, digits after the answer, the hangup after the digits.
    None waits for a command through `FakeCallEngine.far_end(call_id)` instead.

    For an outbound call: it rings (`ring_after_s`; `early_media` sends 183 with SDP instead of 180), then
    answers or fails with `fail` (`answer_after_s`). For an inbound call (`FakeCallEngine.incoming`) the ring and
    answer fields are ours to send; `cancel_after_s` gives up while unanswered. Once answered, both send
    `digits` (`digits_after_s`) and hang up (`hangup_after_s`, with `hangup_reason`). `echo_dtmf` sends our DTMF
    back, the way sipp's `-rtp_echo` does. `audio` (8 kHz int16 samples) is sent `audio_after_s` after the answer,
    before the digits' delay starts (see `FarEndControl.send_audio`)."""

    ring_after_s: float | None = 0.0
    early_media: bool = False
    answer_after_s: float | None = 0.0
    fail: Failure | None = None
    digits: str = ""
    digits_after_s: float = 0.0
    hangup_after_s: float | None = None
    hangup_reason: SipReasonHeader | None = NORMAL_CLEARING
    cancel_after_s: float | None = None
    echo_dtmf: bool = False
    audio: Pcm | None = None
    audio_after_s: float = 0.0


ANSWERS = FarEnd()
RINGS_FOREVER = FarEnd(answer_after_s=None)
WAITS = FarEnd(ring_after_s=None, answer_after_s=None)  # every step by command


# ---- what a call went through -------------------------------------------------------------------


class FakeCallState(StrEnum):
    OFFERED = "OFFERED"
    DIALING = "DIALING"
    RINGING = "RINGING"
    EARLY_MEDIA = "EARLY_MEDIA"
    ANSWERED = "ANSWERED"
    ENDED = "ENDED"


_LIVE_BEFORE_ANSWER = (FakeCallState.OFFERED, FakeCallState.DIALING, FakeCallState.RINGING, FakeCallState.EARLY_MEDIA)


@dataclass(slots=True)
class Playback:
    playback_id: str
    source: PlaySource
    loop_count: int = 1
    offset_ms: int = 0
    timeout_ms: int | None = None
    bridge_owner: str | None = None  # play_to_bridge: the leg it was started on, which PlaybackFinished names
    completed: bool | None = None  # None while it plays


@dataclass(slots=True)
class Recording:
    path: Path
    channels: RecordingChannels
    started_at: float
    finished: RecordingFinished | None = None


@dataclass(slots=True)
class MixMembership:
    muted: bool = False
    deaf: bool = False


@dataclass(slots=True)
class MixRecording:
    path: Path
    member_dir: Path | None
    started_at: float
    members: list[str] = field(default_factory=list)  # every call that was a member while it ran
    finished: MixRecordingFinished | None = None


@dataclass(slots=True)
class FakeMix:
    """One mix (conference room) as the engine saw it; kept in `FakeCallEngine.mixes` after it is destroyed."""

    mix_id: str
    members: dict[str, MixMembership] = field(default_factory=dict)
    members_ever: list[str] = field(default_factory=list)
    played: list[Playback] = field(default_factory=list)
    recordings: list[MixRecording] = field(default_factory=list)
    destroyed: bool = False
    # engine-side machinery, not for assertions
    playing: Playback | None = None
    recording: MixRecording | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


@dataclass(slots=True)
class FakeCall:
    """One call as the engine saw it; kept in `FakeCallEngine.calls` after it ends."""

    call_id: str
    direction: CallDirection
    from_user: str
    to_user: str
    far_end: FarEnd
    state: FakeCallState
    outbound: OutboundCall | None = None
    incoming: IncomingCall | None = None
    has_media: bool = False
    mix_id: str | None = None  # the mix it is in now
    ringing_sent: bool = False
    pre_answered: bool = False
    played: list[Playback] = field(default_factory=list)
    sent_dtmf: str = ""
    received_dtmf: str = ""
    recordings: list[Recording] = field(default_factory=list)
    bridged_with: str | None = None
    bridged_ever: list[str] = field(default_factory=list)
    refer_answers: list[int] = field(default_factory=list)  # our answers to its REFERs: 202 or 603
    transfer_notifications: list[tuple[int, str]] = field(default_factory=list)  # the NOTIFYs' sipfrag statuses
    hangup_headers: Mapping[str, str] | None = None
    ended: CallEnded | None = None
    # This leg's inbound audio as its bridge peer and recordings get it, one 160-sample frame per far-end frame
    # (`FarEndControl.send_audio`): the far end's own, or the `replace_inbound_audio` source's (silence for None).
    relayed_audio: list[Pcm] = field(default_factory=list)
    taps: dict[str, AudioTap] = field(default_factory=dict)
    inbound_replacement: AudioSource | None = None
    # engine-side machinery, not for assertions
    playing: Playback | None = None
    recording: Recording | None = None
    digit_queue: asyncio.Queue[str] | None = None
    script: asyncio.Task[None] | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)

    @property
    def said(self) -> list[str]:
        """The texts spoken to this call, in order."""
        return [playback.source.text for playback in self.played if isinstance(playback.source, SpeechSource)]

    @property
    def live(self) -> bool:
        return self.state is not FakeCallState.ENDED

    @property
    def collecting_dtmf(self) -> bool:
        """A DTMF collection waits for digits (digits sent before it starts are not collected, as on the wire)."""
        return self.digit_queue is not None


# ---- the engine ---------------------------------------------------------------------------------


class FakeCallEngine:
    """CallEngine in memory. See the module docstring."""

    def __init__(
        self,
        *,
        default_far_end: FarEnd = ANSWERS,
        playback_s: float = 0.05,
        recording_tone_hz: float | None = None,
        registration_status: str = "200 OK",
    ) -> None:
        self.default_far_end = default_far_end
        self.playback_s = playback_s
        self.recording_tone_hz = recording_tone_hz
        self.registration_status = registration_status  # a registrar's answer: "403 Forbidden" refuses
        self.far_ends: dict[str, FarEnd] = {}
        self.calls: dict[str, FakeCall] = {}
        self.events: list[EngineEvent] = []
        self.bridges: list[tuple[str, str]] = []
        self.registrations: dict[str, TrunkRegistration] = {}
        self.unavailable_urls: set[str] = set()  # play() of these raises MediaUnavailable, as a 404 would
        self._subscribers: list[asyncio.Queue[EngineEvent]] = []
        self._shared: dict[str, Playback] = {}  # each bridged call id -> its bridge's prompt
        self.mixes: dict[str, FakeMix] = {}  # every mix created, destroyed ones included (until the id is reused)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()  # `calls` is read from test threads while the loop writes it

    # ---- scripting (any thread) ------------------------------------------------------------------

    def route(self, to_user: str, far_end: FarEnd) -> None:
        """Outbound calls to `to_user` meet this far end from now on."""
        with self._lock:
            self.far_ends[to_user] = far_end

    def incoming(
        self,
        to_user: str,
        *,
        from_user: str = "caller",
        from_display_name: str | None = None,
        headers: Mapping[str, str] | None = None,
        caller: FarEnd = WAITS,
    ) -> str:
        """A caller's INVITE arrives (IncomingCall); returns the call id. `caller` scripts what the caller does."""
        return self._on_loop(self._incoming, to_user, from_user, from_display_name, dict(headers or {}), caller)

    def far_end(self, call_id: str) -> FarEndControl:
        """Commands for the far end of a call: ring, answer, fail, send digits, hang up."""
        return FarEndControl(self, call_id)

    def calls_to(self, to_user: str) -> list[FakeCall]:
        """Every outbound call dialled to `to_user`, oldest first."""
        with self._lock:
            return [call for call in self.calls.values() if call.outbound is not None and call.to_user == to_user]

    def live_calls(self) -> list[FakeCall]:
        with self._lock:
            return [call for call in self.calls.values() if call.live]

    def _on_loop(self, function: Callable[..., T], *args: object) -> T:
        """Run on the engine's loop: at once when called there, else through it, waiting for the result."""
        loop = self._loop
        if loop is None:
            raise EngineNotRunning
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return function(*args)
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(function(*args))
            except BaseException as error:  # noqa: BLE001 - handed to the calling thread
                done.set_exception(error)

        loop.call_soon_threadsafe(run)
        return done.result(timeout=30)

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._loop is not None:
            raise CallStateConflict("the engine is already running")
        self._loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        for call in list(self.calls.values()):
            if call.live:
                await self.hangup(call.call_id)
        for mix in list(self.mixes.values()):
            if not mix.destroyed:
                self._destroy_mix(mix)
        for registration_id in list(self.registrations):
            await self.unregister(registration_id)
        await asyncio.sleep(0)  # the PlaybackFinished of cut playbacks go out before the loop is gone
        self._loop = None

    def subscribe(self) -> asyncio.Queue[EngineEvent]:
        subscriber: asyncio.Queue[EngineEvent] = asyncio.Queue()
        self._subscribers.append(subscriber)
        return subscriber

    def _emit(self, event: EngineEvent) -> None:
        self.events.append(event)
        for subscriber in self._subscribers:
            subscriber.put_nowait(event)

    def _later(self, call: FakeCall, delay_s: float, callback: Callable[[], None]) -> None:
        loop = self._running_loop()
        call.timers.append(loop.call_later(max(0.0, delay_s), callback))

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise EngineNotRunning
        return self._loop

    def _call(self, call_id: str) -> FakeCall:
        self._running_loop()
        call = self.calls.get(call_id)
        if call is None or not call.live:
            raise CallNotFound(f"no live call {call_id}")
        return call

    def _media(self, call_id: str) -> FakeCall:
        call = self._call(call_id)
        if not call.has_media:
            raise CallStateConflict("the call has no media yet (answer or pre-answer it first)")
        return call

    def _end(self, call: FakeCall, event: CallEnded) -> None:
        if not call.live:
            return
        call.state = FakeCallState.ENDED
        for timer in call.timers:
            timer.cancel()
        if call.script is not None and call.script is not _current_task():
            call.script.cancel()
        self._stop_shared(call.call_id, emit_later=True)
        self._leave_mix(call)
        if call.playing is not None:
            self._finish_playback(call.call_id, call.playing, completed=False, emit_later=True)
        if call.digit_queue is not None:
            call.digit_queue.put_nowait(HANGUP_MARK)
        if call.bridged_with is not None:
            peer = self.calls.get(call.bridged_with)
            if peer is not None:
                peer.bridged_with = None
            call.bridged_with = None
        call.has_media = False
        call.taps.clear()
        call.inbound_replacement = None
        self._finish_recording(call)
        call.ended = event
        self._emit(event)

    # ---- far-end behaviour -----------------------------------------------------------------------

    def _incoming(
        self, to_user: str, from_user: str, display_name: str | None, headers: dict[str, str], caller: FarEnd
    ) -> str:
        call_id = uuid.uuid4().hex
        incoming = IncomingCall(
            call_id=call_id,
            from_user=from_user,
            to_user=to_user,
            from_display_name=display_name,
            # SippyCallEngine hands on the x- headers only, their names lower-cased (sippy's parse)
            headers={name.lower(): value for name, value in headers.items() if name.lower().startswith("x-")},
            sip_call_id=f"{secrets.token_hex(8)}@fake",
        )
        call = FakeCall(
            call_id, CallDirection.INBOUND, from_user, to_user, caller, FakeCallState.OFFERED, incoming=incoming
        )
        with self._lock:
            self.calls[call_id] = call
        self._emit(incoming)
        if caller.cancel_after_s is not None:
            self._later(call, caller.cancel_after_s, lambda: self._caller_cancels(call, caller.hangup_reason))
        return call_id

    def _caller_cancels(self, call: FakeCall, reason: SipReasonHeader | None) -> None:
        if call.state in _LIVE_BEFORE_ANSWER:
            self._end(
                call,
                CallEnded(
                    call.call_id,
                    HangupInitiator.REMOTE,
                    answered=False,
                    sip_status=487,
                    sip_reason_phrase="Request Terminated",
                    reason=reason,
                ),
            )

    async def _outbound_script(self, call: FakeCall) -> None:
        far_end = call.far_end
        if far_end.ring_after_s is None:
            return
        await asyncio.sleep(far_end.ring_after_s)
        self._far_ring(call, early_media=far_end.early_media)
        if far_end.answer_after_s is None:
            return
        await asyncio.sleep(far_end.answer_after_s)
        if far_end.fail is not None:
            self._far_fail(call, far_end.fail)
        else:
            self._far_answer(call)

    async def _answered_script(self, call: FakeCall) -> None:
        far_end = call.far_end
        if far_end.audio is not None:
            await asyncio.sleep(far_end.audio_after_s)
            self._far_audio(call, far_end.audio)
        if far_end.digits:
            await asyncio.sleep(far_end.digits_after_s)
            self._far_digits(call, far_end.digits)
        if far_end.hangup_after_s is not None:
            await asyncio.sleep(far_end.hangup_after_s)
            self._far_hangup(call, far_end.hangup_reason)

    def _run_script(self, call: FakeCall, script: Callable[[FakeCall], object]) -> None:
        coroutine = script(call)
        assert asyncio.iscoroutine(coroutine)
        call.script = self._running_loop().create_task(coroutine, name=f"fake-far-end-{call.call_id[:8]}")

    def _far_ring(self, call: FakeCall, *, early_media: bool = False) -> None:
        if not call.live or call.direction is not CallDirection.OUTBOUND:
            return
        if early_media:
            if call.state is not FakeCallState.EARLY_MEDIA:
                call.state = FakeCallState.EARLY_MEDIA
                call.has_media = True
                self._emit(CallEarlyMedia(call.call_id, 183))
        elif call.state is FakeCallState.DIALING:
            call.state = FakeCallState.RINGING
            self._emit(CallRinging(call.call_id, 180))

    def _far_answer(self, call: FakeCall) -> None:
        if not call.live or call.direction is not CallDirection.OUTBOUND or call.state is FakeCallState.ANSWERED:
            return
        call.state = FakeCallState.ANSWERED
        call.has_media = True
        self._emit(CallAnswered(call.call_id))
        self._run_script(call, self._answered_script)

    def _far_fail(self, call: FakeCall, failure: Failure) -> None:
        if call.state not in _LIVE_BEFORE_ANSWER or call.direction is not CallDirection.OUTBOUND:
            return
        self._end(
            call,
            CallEnded(
                call.call_id,
                HangupInitiator.REMOTE,
                answered=False,
                sip_status=failure.status,
                sip_reason_phrase=failure.phrase,
                reason=failure.reason,
            ),
        )

    def _far_digits(self, call: FakeCall, digits: str) -> None:
        if not call.live or not call.has_media:
            return
        for digit in digits:
            call.received_dtmf += digit
            self._emit(DtmfReceived(call.call_id, digit))
            if call.digit_queue is not None:
                call.digit_queue.put_nowait(digit)

    def _far_audio(self, call: FakeCall, samples: Pcm) -> None:
        """The far end's audio, 20 ms frame by frame and all at once (deterministic): each frame goes to the
        call's taps (outbound None: the fake sends no audio), then is relayed (or replaced) as the clock would."""
        if not call.live or not call.has_media:
            return
        samples = np.asarray(samples, dtype=np.int16).reshape(-1)
        padded = -len(samples) % FRAME_SAMPLES
        if padded:
            samples = np.concatenate([samples, np.zeros(padded, dtype=np.int16)])
        for start in range(0, len(samples), FRAME_SAMPLES):
            frame = samples[start : start + FRAME_SAMPLES].copy()
            for tap_id, tap in list(call.taps.items()):
                try:
                    tap.write(frame, None)
                except Exception:  # noqa: BLE001 - SippyCallEngine removes a failing tap and carries on too
                    call.taps.pop(tap_id, None)
            replacement = call.inbound_replacement
            relayed = frame if replacement is None else replacement.read_frame()
            call.relayed_audio.append(np.zeros(FRAME_SAMPLES, dtype=np.int16) if relayed is None else relayed)

    def _far_hangup(self, call: FakeCall, reason: SipReasonHeader | None) -> None:
        if not call.live:
            return
        if call.direction is CallDirection.INBOUND and call.state is not FakeCallState.ANSWERED:
            self._caller_cancels(call, reason)
            return
        answered = call.state is FakeCallState.ANSWERED
        self._end(call, CallEnded(call.call_id, HangupInitiator.REMOTE, answered=answered, reason=reason))

    # ---- commands: answering side ----------------------------------------------------------------

    async def send_ringing(self, call_id: str) -> None:
        call = self._call(call_id)
        if call.direction is not CallDirection.INBOUND or call.state not in (
            FakeCallState.OFFERED,
            FakeCallState.RINGING,
        ):
            raise CallStateConflict("ringing is sent only for an inbound call that is not answered")
        call.state = FakeCallState.RINGING
        call.ringing_sent = True

    async def pre_answer(self, call_id: str) -> None:
        call = self._call(call_id)
        if call.direction is not CallDirection.INBOUND or call.state not in (
            FakeCallState.OFFERED,
            FakeCallState.RINGING,
        ):
            raise CallStateConflict("pre-answer is for an inbound call that is not answered")
        call.state = FakeCallState.EARLY_MEDIA
        call.has_media = True
        call.pre_answered = True

    async def answer(self, call_id: str) -> None:
        call = self._call(call_id)
        if call.direction is not CallDirection.INBOUND or call.state not in _LIVE_BEFORE_ANSWER:
            raise CallStateConflict("only an unanswered inbound call can be answered")
        call.state = FakeCallState.ANSWERED
        call.has_media = True
        self._emit(CallAnswered(call_id))
        self._run_script(call, self._answered_script)

    async def reject(
        self,
        call_id: str,
        *,
        status: int = 486,
        reason_phrase: str | None = None,
        reason: SipReasonHeader | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        call = self._call(call_id)
        if call.direction is not CallDirection.INBOUND or call.state is FakeCallState.ANSWERED:
            raise CallStateConflict("only an unanswered inbound call can be rejected")
        if not 300 <= status <= 699:
            raise CallStateConflict(f"a reject needs a final non-2xx status, not {status}")
        _check_headers(headers)
        call.hangup_headers = headers
        phrase = reason_phrase or _REASON_PHRASES.get(status, "Rejected")
        self._end(
            call,
            CallEnded(
                call_id,
                HangupInitiator.LOCAL,
                answered=False,
                sip_status=status,
                sip_reason_phrase=phrase,
                reason=reason,
            ),
        )

    async def hangup(
        self,
        call_id: str,
        *,
        reason: SipReasonHeader | None = NORMAL_CLEARING,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        call = self._call(call_id)
        if call.direction is CallDirection.INBOUND and call.state is not FakeCallState.ANSWERED:
            await self.reject(call_id, status=480, reason=reason, headers=headers)
            return
        _check_headers(headers)
        call.hangup_headers = headers
        answered = call.state is FakeCallState.ANSWERED
        self._end(call, CallEnded(call_id, HangupInitiator.LOCAL, answered=answered, reason=reason))

    # ---- commands: calling side ------------------------------------------------------------------

    async def dial(self, call: OutboundCall) -> str:
        self._running_loop()
        _check_headers(call.headers)
        for text in (call.from_display_name or "", call.from_user, call.to_user, call.trunk.host):
            if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
                raise CallStateConflict("control characters in a SIP display name or URI")
        call_id = uuid.uuid4().hex
        with self._lock:
            far_end = self.far_ends.get(call.to_user, self.default_far_end)
            fake = FakeCall(
                call_id,
                CallDirection.OUTBOUND,
                call.from_user,
                call.to_user,
                far_end,
                FakeCallState.DIALING,
                outbound=call,
            )
            self.calls[call_id] = fake
        self._run_script(fake, self._outbound_script)
        if call.ring_timeout_s is not None:
            self._later(fake, call.ring_timeout_s, lambda: self._ring_timeout(fake))
        return call_id

    def _ring_timeout(self, call: FakeCall) -> None:
        if call.state in _LIVE_BEFORE_ANSWER:
            self._end(
                call,
                CallEnded(call.call_id, HangupInitiator.ENGINE, answered=False, sip_status=487, reason=NO_ANSWER),
            )

    # ---- media -----------------------------------------------------------------------------------

    def _check_source(self, source: PlaySource) -> None:
        if isinstance(source, FileSource) and not source.path.is_file():
            raise MediaUnavailable(f"{source.path.name} does not exist")
        if isinstance(source, UrlSource) and source.url in self.unavailable_urls:
            raise MediaUnavailable(f"{source.url} could not be fetched")
        if isinstance(source, SpeechSource) and not source.text.strip():
            raise MediaUnavailable("nothing to say")

    async def play(
        self,
        call_id: str,
        source: PlaySource,
        *,
        loop_count: int = 1,
        offset_ms: int = 0,
        timeout_ms: int | None = None,
    ) -> str:
        call = self._media(call_id)
        self._check_source(source)
        if loop_count < 1:
            raise ValueError("loop_count must be at least 1")
        if call.playing is not None:  # a new playback replaces what plays
            self._finish_playback(call_id, call.playing, completed=False)
        playback = Playback(uuid.uuid4().hex, source, loop_count, offset_ms, timeout_ms)
        call.played.append(playback)
        call.playing = playback
        self._later(
            call, self.playback_s * loop_count, lambda: self._finish_playback(call_id, playback, completed=True)
        )
        return playback.playback_id

    def _finish_playback(self, call_id: str, playback: Playback, *, completed: bool, emit_later: bool = False) -> None:
        if playback.completed is not None:
            return
        playback.completed = completed
        call = self.calls.get(call_id)
        if call is not None and call.playing is playback:
            call.playing = None
        event = PlaybackFinished(call_id, playback.playback_id, completed)
        if emit_later:  # cut by the hangup: SippyCallEngine reports it after the CallEnded
            self._running_loop().call_soon(self._emit, event)
        else:
            self._emit(event)

    async def stop_playback(self, call_id: str) -> None:
        call = self._media(call_id)
        if call.playing is not None:
            self._finish_playback(call_id, call.playing, completed=False)

    async def start_recording(
        self,
        call_id: str,
        path: Path,
        channels: RecordingChannels = RecordingChannels.MONO,
        *,
        max_silence_s: float | None = None,
        max_duration_s: float | None = None,
    ) -> None:
        """As SippyCallEngine's; the fake's audio is silence (or `recording_tone_hz`, never silent), so a
        `max_silence_s` recording of silence ends after that long, and `max_duration_s` after that long."""
        call = self._media(call_id)
        if call.recording is not None:
            raise CallStateConflict("the call is already being recorded")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # as SippyCallEngine: the file cannot be written
            raise MediaUnavailable(f"cannot write the recording: {error}") from error
        recording = Recording(path, channels, self._running_loop().time())
        call.recording = recording
        call.recordings.append(recording)
        limits = [max_duration_s, max_silence_s if self.recording_tone_hz is None else None]
        limit_s = min((limit for limit in limits if limit is not None), default=None)
        if limit_s is not None:

            def reached() -> None:
                if call.recording is recording:
                    # The real recorder counts frames on the clock: a limit is exactly that much audio, however late
                    # this timer fires on a loaded machine.
                    self._finish_recording(call, at_most_s=limit_s)

            self._later(call, limit_s, reached)

    async def stop_recording(self, call_id: str) -> RecordingFinished | None:
        return self._finish_recording(self._call(call_id))

    def _finish_recording(self, call: FakeCall, *, at_most_s: float | None = None) -> RecordingFinished | None:
        recording, call.recording = call.recording, None
        if recording is None:
            return None
        elapsed_s = self._running_loop().time() - recording.started_at
        if at_most_s is not None:
            elapsed_s = min(elapsed_s, at_most_s)
        frames = int(elapsed_s * 50)  # whole 20 ms frames, as the real recorder writes them
        samples = frames * SAMPLE_RATE // 50
        if self.recording_tone_hz is None:
            mono = np.zeros(samples, dtype=np.int16)
        else:
            t = np.arange(samples) / SAMPLE_RATE
            mono = (6000 * np.sin(2 * np.pi * self.recording_tone_hz * t)).astype(np.int16)
        if recording.channels is RecordingChannels.STEREO:
            write_wav(recording.path, np.repeat(mono, 2), channels=2)
        else:
            write_wav(recording.path, mono)
        finished = RecordingFinished(call.call_id, recording.path, frames * 20)
        recording.finished = finished
        self._emit(finished)
        return finished

    async def collect_dtmf(
        self,
        call_id: str,
        *,
        max_length: int,
        terminator: str | None = None,
        first_digit_timeout_s: float = 5.0,
        inter_digit_timeout_s: float = 3.0,
    ) -> DtmfCollection:
        call = self._call(call_id)
        if call.digit_queue is not None:
            raise CallStateConflict("a DTMF collection is already running on this call")
        call.digit_queue = asyncio.Queue()
        try:
            return await collect_digits(
                call.digit_queue,
                max_length=max_length,
                terminator=terminator,
                first_digit_timeout_s=first_digit_timeout_s,
                inter_digit_timeout_s=inter_digit_timeout_s,
            )
        finally:
            call.digit_queue = None

    async def send_dtmf(self, call_id: str, digits: str) -> None:
        call = self._media(call_id)
        if not digits or any(digit not in _DTMF_DIGITS for digit in digits.upper()):
            raise CallStateConflict(f"not DTMF digits: {digits!r}")
        call.sent_dtmf += digits
        if call.far_end.echo_dtmf:
            self._running_loop().call_soon(self._far_digits, call, digits)

    # ---- mixes ---------------------------------------------------------------------------------------

    def _mix(self, mix_id: str) -> FakeMix:
        self._running_loop()
        mix = self.mixes.get(mix_id)
        if mix is None or mix.destroyed:
            raise MixNotFound(f"no mix {mix_id}")
        return mix

    async def create_mix(self, mix_id: str) -> None:
        self._running_loop()
        existing = self.mixes.get(mix_id)
        if existing is not None and not existing.destroyed:
            raise CallStateConflict(f"mix {mix_id} exists")
        self.mixes[mix_id] = FakeMix(mix_id)

    async def join_mix(self, mix_id: str, call_id: str, *, muted: bool = False, deaf: bool = False) -> None:
        self._call(call_id)
        mix = self._mix(mix_id)
        call = self._media(call_id)
        if call.mix_id is not None:
            raise CallStateConflict("the call is already in a mix")
        if call.bridged_with is not None:
            raise CallStateConflict("a bridged call cannot join a mix")
        call.mix_id = mix_id
        mix.members[call_id] = MixMembership(muted, deaf)
        mix.members_ever.append(call_id)
        if mix.recording is not None and call_id not in mix.recording.members:
            mix.recording.members.append(call_id)

    async def update_mix_member(self, call_id: str, *, muted: bool | None = None, deaf: bool | None = None) -> None:
        call = self._call(call_id)
        if call.mix_id is None:
            raise CallStateConflict("the call is in no mix")
        membership = self.mixes[call.mix_id].members[call_id]
        if muted is not None:
            membership.muted = muted
        if deaf is not None:
            membership.deaf = deaf

    async def leave_mix(self, call_id: str) -> None:
        self._leave_mix(self._call(call_id))

    def _leave_mix(self, call: FakeCall) -> None:
        mix_id, call.mix_id = call.mix_id, None
        if mix_id is not None:
            self.mixes[mix_id].members.pop(call.call_id, None)

    async def play_to_mix(self, mix_id: str, source: PlaySource, *, loop_count: int = 1) -> str:
        mix = self._mix(mix_id)
        if loop_count < 1:
            raise ValueError("loop_count must be at least 1")
        self._check_source(source)
        self._stop_mix_prompt(mix)
        playback = Playback(uuid.uuid4().hex, source, loop_count)
        mix.played.append(playback)
        mix.playing = playback
        loop = self._running_loop()
        mix.timers.append(
            loop.call_later(self.playback_s * loop_count, lambda: self._finish_mix_prompt(mix, playback, True))
        )
        return playback.playback_id

    def _finish_mix_prompt(self, mix: FakeMix, playback: Playback, completed: bool) -> None:
        if playback.completed is not None:
            return
        playback.completed = completed
        if mix.playing is playback:
            mix.playing = None
        self._emit(PlaybackFinished(mix.mix_id, playback.playback_id, completed))

    def _stop_mix_prompt(self, mix: FakeMix) -> None:
        if mix.playing is not None:
            self._finish_mix_prompt(mix, mix.playing, False)

    async def stop_mix_playback(self, mix_id: str) -> None:
        self._stop_mix_prompt(self._mix(mix_id))

    async def start_mix_recording(self, mix_id: str, path: Path, *, member_dir: Path | None = None) -> None:
        mix = self._mix(mix_id)
        if mix.recording is not None:
            raise CallStateConflict("the mix is already being recorded")
        path.parent.mkdir(parents=True, exist_ok=True)
        if member_dir is not None:
            member_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - one mkdir, as for `path`
        recording = MixRecording(path, member_dir, self._running_loop().time(), members=list(mix.members))
        mix.recording = recording
        mix.recordings.append(recording)

    async def stop_mix_recording(self, mix_id: str) -> MixRecordingFinished | None:
        return self._finish_mix_recording(self._mix(mix_id))

    def _finish_mix_recording(self, mix: FakeMix) -> MixRecordingFinished | None:
        recording, mix.recording = mix.recording, None
        if recording is None:
            return None
        frames = int((self._running_loop().time() - recording.started_at) * 50)
        samples = frames * SAMPLE_RATE // 50
        if self.recording_tone_hz is None:
            mono = np.zeros(samples, dtype=np.int16)
        else:
            t = np.arange(samples) / SAMPLE_RATE
            mono = (6000 * np.sin(2 * np.pi * self.recording_tone_hz * t)).astype(np.int16)
        write_wav(recording.path, mono)
        member_paths: dict[str, Path] = {}
        if recording.member_dir is not None:
            for call_id in recording.members:
                member_paths[call_id] = recording.member_dir / f"{call_id}.wav"
                write_wav(member_paths[call_id], mono)
        finished = MixRecordingFinished(mix.mix_id, recording.path, frames * 20, member_paths)
        recording.finished = finished
        self._emit(finished)
        return finished

    async def destroy_mix(self, mix_id: str) -> None:
        self._destroy_mix(self._mix(mix_id))

    def _destroy_mix(self, mix: FakeMix) -> None:
        mix.destroyed = True
        for timer in mix.timers:
            timer.cancel()
        for call_id in list(mix.members):
            call = self.calls.get(call_id)
            if call is not None:
                call.mix_id = None
        mix.members.clear()
        self._stop_mix_prompt(mix)
        self._finish_mix_recording(mix)

    async def bridge(self, call_id: str, other_call_id: str) -> None:
        if call_id == other_call_id:
            raise CallStateConflict("a call cannot be bridged to itself")
        first, second = self._media(call_id), self._media(other_call_id)
        if first.mix_id is not None or second.mix_id is not None:
            raise CallStateConflict("a call in a mix cannot be bridged")
        if first.bridged_with is not None or second.bridged_with is not None:
            raise CallStateConflict("the call is already bridged")
        first.bridged_with, second.bridged_with = other_call_id, call_id
        first.bridged_ever.append(other_call_id)
        second.bridged_ever.append(call_id)
        self.bridges.append((call_id, other_call_id))

    async def play_to_bridge(self, call_id: str, source: PlaySource, *, loop_count: int = 1) -> str:
        call = self._media(call_id)
        if call.bridged_with is None:
            raise CallStateConflict("the call is not bridged")
        self._check_source(source)
        self._stop_shared(call_id)
        playback = Playback(uuid.uuid4().hex, source, loop_count, bridge_owner=call_id)
        legs = [call_id, call.bridged_with]
        for leg in legs:
            self.calls[leg].played.append(playback)
            self._shared[leg] = playback
        self._later(call, self.playback_s * loop_count, lambda: self._finish_shared(call_id, playback, True))
        return playback.playback_id

    def _finish_shared(self, call_id: str, playback: Playback, completed: bool, *, emit_later: bool = False) -> None:
        if playback.completed is not None:
            return
        playback.completed = completed
        for leg, shared in list(self._shared.items()):
            if shared is playback:
                del self._shared[leg]
        event = PlaybackFinished(call_id, playback.playback_id, completed)
        if emit_later:
            self._running_loop().call_soon(self._emit, event)
        else:
            self._emit(event)

    def _stop_shared(self, call_id: str, *, emit_later: bool = False) -> None:
        playback = self._shared.get(call_id)
        if playback is not None:
            self._finish_shared(playback.bridge_owner or call_id, playback, False, emit_later=emit_later)

    async def stop_bridge_playback(self, call_id: str) -> None:
        self._call(call_id)
        self._stop_shared(call_id)

    async def notify_transfer(self, call_id: str, status: int, reason_phrase: str) -> None:
        self._call(call_id).transfer_notifications.append((status, reason_phrase))

    def _far_refer(self, call: FakeCall, target_user: str, target_host: str, target_port: int | None) -> None:
        """REFER, answered as SippyCallEngine does: 202 (and TransferRequested, NOTIFY 100) when the call is bridged,
        else 603."""
        if call.state is not FakeCallState.ANSWERED or call.bridged_with is None:
            call.refer_answers.append(603)
            return
        call.refer_answers.append(202)
        call.transfer_notifications.append((100, "Trying"))
        refer_to = f"sip:{target_user}@{target_host}" + (f":{target_port}" if target_port else "")
        self._emit(TransferRequested(call.call_id, target_user, target_host, target_port, refer_to))

    async def unbridge(self, call_id: str) -> None:
        call = self._media(call_id)
        self._stop_shared(call_id)
        peer = self.calls.get(call.bridged_with) if call.bridged_with is not None else None
        call.bridged_with = None
        if peer is not None:
            peer.bridged_with = None

    # ---- audio taps -------------------------------------------------------------------------------

    async def add_audio_tap(self, call_id: str, tap: AudioTap) -> str:
        call = self._media(call_id)
        tap_id = uuid.uuid4().hex
        call.taps[tap_id] = tap
        return tap_id

    async def remove_audio_tap(self, call_id: str, tap_id: str) -> None:
        self._call(call_id).taps.pop(tap_id, None)

    async def replace_inbound_audio(self, call_id: str, source: AudioSource | None) -> None:
        self._media(call_id).inbound_replacement = source

    # ---- registration ----------------------------------------------------------------------------

    async def register(self, registration: TrunkRegistration) -> str:
        loop = self._running_loop()
        registration_id = uuid.uuid4().hex
        self.registrations[registration_id] = registration
        registered = self.registration_status.startswith("2")
        loop.call_soon(self._emit, RegistrationChanged(registration_id, registered, self.registration_status))
        return registration_id

    async def unregister(self, registration_id: str) -> None:
        if self.registrations.pop(registration_id, None) is not None:
            self._running_loop().call_soon(self._emit, RegistrationChanged(registration_id, False, "200 OK"))


class FarEndControl:
    """The far end of one call, commanded by a test (any thread); each command returns once it took effect.
    A command the call's state does not allow (answering an ended call) does nothing, as a late SIP message would."""

    def __init__(self, engine: FakeCallEngine, call_id: str) -> None:
        self._engine = engine
        self.call_id = call_id

    def _call(self) -> FakeCall:
        call = self._engine.calls.get(self.call_id)
        if call is None:
            raise CallNotFound(f"no call {self.call_id}")
        return call

    def ring(self) -> None:
        """180 Ringing."""
        self._engine._on_loop(lambda: self._engine._far_ring(self._call()))

    def early_media(self) -> None:
        """183 with SDP: early media flows."""
        self._engine._on_loop(lambda: self._engine._far_ring(self._call(), early_media=True))

    def answer(self) -> None:
        """200 OK to our INVITE."""
        self._engine._on_loop(lambda: self._engine._far_answer(self._call()))

    def fail(self, failure: Failure = BUSY) -> None:
        """A final failure to our INVITE."""
        self._engine._on_loop(lambda: self._engine._far_fail(self._call(), failure))

    def send_digits(self, digits: str) -> None:
        """RFC 4733 digits from the far end (once there is media)."""
        self._engine._on_loop(lambda: self._engine._far_digits(self._call(), digits))

    def refer(self, target_user: str, target_host: str = "127.0.0.1", target_port: int | None = 5999) -> None:
        """REFER: a blind transfer of the other party to `target_user@target_host[:target_port]`."""
        self._engine._on_loop(lambda: self._engine._far_refer(self._call(), target_user, target_host, target_port))

    def hang_up(self, reason: SipReasonHeader | None = NORMAL_CLEARING) -> None:
        """BYE, or a CANCEL when the far end is an unanswered caller."""
        self._engine._on_loop(lambda: self._engine._far_hangup(self._call(), reason))

    def send_audio(self, samples: Pcm) -> None:
        """8 kHz int16 audio from the far end (once there is media), cut into 20 ms frames (the last padded with
        silence) and handed to the call's audio taps at once, frame by frame; `FakeCall.relayed_audio` shows what
        its peers got of each frame."""
        self._engine._on_loop(lambda: self._engine._far_audio(self._call(), samples))


def _current_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _check_headers(headers: Mapping[str, str] | None) -> None:
    """SippyCallEngine's check of custom SIP headers: a name or value that would break the message is refused."""
    for name, value in (headers or {}).items():
        if not name or any(ch in name for ch in ": \r\n") or any(ch in value for ch in "\r\n\0"):
            raise CallStateConflict(f"invalid SIP header {name!r}")
