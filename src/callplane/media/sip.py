"""The sippy-backed CallEngine: sippy owns SIP in its reactor thread, asyncio owns media and the API.

Threading rule (sippy-notes): sippy objects are touched only in the reactor thread. Commands go there
through `ED2.callFromThread`; sippy events are flattened into `_Signal` tuples there and posted to the
asyncio loop with `call_soon_threadsafe`. The asyncio side keeps a `_Call` per call id and is the only
place that decides what a call's state is.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import queue
import secrets
import threading
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from hashlib import md5
from pathlib import Path
from typing import Any

from sippy.CCEvents import (
    CCEventConnect,
    CCEventDisconnect,
    CCEventFail,
    CCEventRedirect,
    CCEventRing,
    CCEventTry,
    CCEventUpdate,
)
from sippy.Core.EventDispatcher import ED2
from sippy.Exceptions.SdpParseError import SdpParseError
from sippy.Exceptions.SipParseError import SipParseError
from sippy.MsgBody import MsgBody
from sippy.SipCallId import SipCallId
from sippy.SipConf import SipConf
from sippy.SipGenericHF import SipGenericHF
from sippy.SipHeader import SipHeader
from sippy.SipReason import SipReason
from sippy.SipRegistrationAgent import SipRegistrationAgent
from sippy.SipRequest import SipRequest
from sippy.SipResponse import SipResponse
from sippy.SipTransactionManager import SipTMRetransmitO, SipTransactionManager
from sippy.SipURL import SipURL
from sippy.Time.Timeout import Timeout
from sippy.UA import UA
from sippy.Udp_server import Udp_server, Udp_server_opts

from callplane.errors import CallplaneError
from callplane.media import sdp
from callplane.media.audio import (
    HANGUP_MARK,
    AudioLibrary,
    AudioUnavailable,
    DtmfCollection,
    PcmPlayer,
    RecordingChannels,
    SpeechSynthesizer,
    WavRecorder,
    cadence_tone,
    collect_digits,
)
from callplane.media.channel import AudioSource, MediaChannel, SharedPrompt
from callplane.media.clock import MediaClock
from callplane.media.engine import (
    NO_ANSWER,
    NORMAL_CLEARING,
    AudioTap,
    CallAnswered,
    CallDirection,
    CallEarlyMedia,
    CallEnded,
    CallNotFound,
    CallRinging,
    CallStateConflict,
    DtmfReceived,
    EngineConfig,
    EngineEvent,
    EngineNotRunning,
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
    ToneSource,
    TransferRequested,
    TrunkRegistration,
    UrlSource,
)
from callplane.media.g711 import Pcm
from callplane.media.mixer import Mix
from callplane.media.refer import ReferDecision, notify, transfer_aware
from callplane.media.sip_guard import (
    MalformedSipLog,
    Refusal,
    raise_receive_buffer,
    raw_response,
    reply_address,
    route_sippy_prints,
    screen_request,
    version_refusal,
)
from callplane.observability.metrics import SIP_RESPONSES

log = logging.getLogger(__name__)

_REASON_PHRASES = {
    400: "Bad Request", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout", 410: "Gone",
    480: "Temporarily Unavailable", 484: "Address Incomplete", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 500: "Server Internal Error", 503: "Service Unavailable", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere",
}  # fmt: skip


class CallState(StrEnum):
    OFFERED = "OFFERED"  # inbound INVITE presented, nothing sent but 100
    DIALING = "DIALING"  # outbound INVITE sent
    RINGING = "RINGING"
    EARLY_MEDIA = "EARLY_MEDIA"
    ANSWERED = "ANSWERED"
    ENDED = "ENDED"


_LIVE_BEFORE_ANSWER = (CallState.OFFERED, CallState.DIALING, CallState.RINGING, CallState.EARLY_MEDIA)


@dataclass(slots=True, frozen=True)
class _Signal:
    """A sippy event flattened in the reactor thread into plain values for the asyncio side."""

    kind: str  # "ring" | "connect" | "fail" | "redirect" | "disconnect" | "other"
    status: int | None = None
    phrase: str | None = None
    sdp_text: str | None = None
    reason: SipReasonHeader | None = None


@dataclass(slots=True)
class _Call:
    call_id: str
    direction: CallDirection
    ua: Any  # sippy UA; only ever passed back to the reactor thread
    state: CallState
    offer: sdp.AudioDescription | None = None
    channel: MediaChannel | None = None
    local_sdp: str | None = None
    session_id: int = field(default_factory=lambda: secrets.randbelow(1 << 31))
    recorder: WavRecorder | None = None
    digit_queue: asyncio.Queue[str] | None = None  # set while a collection runs
    playback_id: str | None = None
    playback_task: asyncio.Task[None] | None = None
    ring_timer: asyncio.TimerHandle | None = None
    # One media preparation per inbound call: a pre-answer and an answer racing must not bind two channels.
    media_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    taps: dict[str, AudioTap] = field(default_factory=dict)


class _NullSipLogger:
    """sippy logs every message through `_sip_logger.write`; formatting them all costs real CPU."""

    def write(self, *args: object, **kwargs: object) -> None:
        return None


class _DebugSipLogger:
    def write(self, *args: object, **kwargs: object) -> None:
        log.debug("sip %s", "".join(str(arg) for arg in args))


def _sip_reason(reason: SipReasonHeader) -> Any:
    return SipReason(protocol=reason.protocol, cause=reason.cause, reason=reason.text)


def _custom_headers(headers: Mapping[str, str] | None) -> tuple[Any, ...] | None:
    if not headers:
        return None
    for name, value in headers.items():
        if not name or any(ch in name for ch in ": \r\n") or any(ch in value for ch in "\r\n\0"):
            raise CallStateConflict(f"invalid SIP header {name!r}")
    return tuple(SipHeader(name=name, body=_VerbatimHeaderBody(value, name)) for name, value in headers.items())


def _quoted_name(name: str | None, *uri_parts: str) -> str | None:
    """The From display name as RFC 3261 quoted-string content (sippy quotes it but escapes nothing), after
    refusing control characters there and in the URI parts: a CR LF would start a new header line."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for text in (name or "", *uri_parts) for ch in text):
        raise CallStateConflict("control characters in a SIP display name or URI")
    return name.replace("\\", "\\\\").replace('"', '\\"') if name else None


class _VerbatimHeaderBody(SipGenericHF):  # type: ignore[misc]
    """A custom header written with the caller's own casing. sippy re-cases names on output
    (`X-Reject-Rule` becomes `X-reject-rule`); names are case-insensitive in SIP, but not to every
    trunk or to sipp's header matching."""

    def __init__(self, value: str, name: str) -> None:
        super().__init__(value, name)
        self.display_name = name

    def getCanName(self, name: str, compact: bool = False) -> str:
        return self.display_name

    def getCopy(self) -> _VerbatimHeaderBody:
        return _VerbatimHeaderBody(self.body, self.display_name)


def _read_reason(event: Any) -> SipReasonHeader | None:
    reason = getattr(event, "reason_rfc3326", None)
    if reason is None:
        return None
    try:
        if not reason.parsed:
            reason.parse()
        return SipReasonHeader(protocol=str(reason.protocol), cause=int(reason.cause), text=reason.reason)
    except (AssertionError, ValueError, TypeError, IndexError):  # sippy's parser asserts on odd Reason headers
        log.info("unparsable Reason header %r", getattr(reason, "body", None))
        return None


def _flatten(event: Any) -> _Signal:
    """Runs in the reactor thread: copy what we need out of a sippy CCEvent."""
    reason = _read_reason(event)
    data = event.getData()
    if isinstance(event, CCEventRing | CCEventConnect):
        code, phrase, body = data[0], data[1], data[2] if len(data) > 2 else None
        kind = "ring" if isinstance(event, CCEventRing) else "connect"
        return _Signal(kind, _as_int(code), str(phrase), None if body is None else str(body), reason)
    if isinstance(event, CCEventRedirect):
        return _Signal("redirect", _as_int(data[0]), str(data[1]), None, reason)
    if isinstance(event, CCEventFail):
        return _Signal("fail", _as_int(data[0]), str(data[1]), None, reason)
    if isinstance(event, CCEventDisconnect):
        return _Signal("disconnect", None, None, None, reason)
    if isinstance(event, CCEventUpdate):  # a re-INVITE from the far end (hold, resume, new media address)
        body = data
        return _Signal("update", None, None, None if body is None else str(body), reason)
    return _Signal("other")


def _as_int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None  # the ACK that follows our PreConnect carries ('ACK', 'ACK', body)


class FixedRegistrationAgent(SipRegistrationAgent):  # type: ignore[misc]
    """sippy's agent files its answer to a 407 under the header name `authorization` (gotreply pairs 407
    with 'authorization'). The wire is still right, because the body class (SipProxyAuthorization)
    prints its own name, `Proxy-Authorization` (checked against sipp with and without this class); but
    the message then holds proxy credentials under the wrong name, so a later 401 removes them and a
    lookup of `proxy-authorization` misses them. We file each credential under its own name.

    sippy also never puts the requested expiry on the wire: it sets `params['expires']` on the Contact
    but SipAddress prints only the names listed in `params_order`, so the registrar applied its default.
    We list it. And it de-registers: sippy's `stopregister()` only stops refreshing, leaving the binding
    on the registrar until it lapses; `unregister()` first sends the REGISTER with `expires=0`."""

    unregistering = False
    on_unregistered: Callable[[str], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._set_contact_expires(str(self.exp))

    def _set_contact_expires(self, value: str) -> None:
        self.rmsg.getHFBody("contact").address.setParam("expires", value)

    def unregister(self) -> None:
        if self.dead:
            return
        self.unregistering = True
        self._set_contact_expires("0")
        self.atries = 0
        self.doregister()

    def gotreply(self, resp: Any) -> None:
        if self.dead or resp.scode < 200:
            return
        if self.unregistering and resp.scode < 300:
            self._finish_unregister(resp)
            return
        if resp.scode in (401, 407) and self.user is not None and self.passw is not None and self.atries < 3:
            challenge_name = "www-authenticate" if resp.scode == 401 else "proxy-authenticate"
            if resp.countHFs(challenge_name) > 0:
                challenge = resp.getHFBody(challenge_name)
                supported, qop = challenge.supportedAlgorithm()
                if supported:
                    credentials = challenge.genAuthHF(self.user, self.passw, "REGISTER", str(self.rmsg.ruri), qop=qop)
                    for stale_name in ("authorization", "proxy-authorization"):
                        for stale in self.rmsg.getHFs(stale_name):
                            self.rmsg.removeHeader(stale)
                    self.rmsg.appendHeader(SipHeader(body=credentials))
                    self.atries += 1
                    self.doregister()
                    return
        if self.unregistering:  # refused: the binding will lapse at its expiry anyway
            self._finish_unregister(resp)
            return
        super().gotreply(resp)

    def _finish_unregister(self, resp: Any) -> None:
        callback = self.on_unregistered
        self.stopregister()
        if callback is not None:
            callback(str(resp.getSL()))


class _OrderedUdpServerOptions(Udp_server_opts):  # type: ignore[misc]
    """One sender and one receiver thread per socket. sippy's default of 3 each lets two messages sent
    back to back leave in either order (a 183 then a 200 reached sipp as 200, 183) and lets a BYE
    overtake the ACK before it."""

    nworkers = 1


_RECEIVE_BUFFER_KEY = "_callplane_sip_receive_buffer_bytes"  # in sippy's global_config, read by _SipUdpServer


class _SipUdpServer(Udp_server):  # type: ignore[misc]
    """sippy's UDP server with a larger receive buffer: at the default 208 KB a burst of CANCELs overflowed
    it while the reactor was busy, and the kernel dropped requests."""

    def __init__(self, global_config: dict[str, Any], uopts: Any) -> None:
        super().__init__(global_config, uopts)
        self.receive_buffer_bytes = raise_receive_buffer(self.skt, int(global_config.get(_RECEIVE_BUFFER_KEY, 0)))


class _Dropped(SipTMRetransmitO):  # type: ignore[misc]
    """sippy's retransmission-cache entry for a datagram it dropped, keeping why: a repeat is counted again."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class _OrderedTransactionManager(SipTransactionManager):  # type: ignore[misc]
    """sippy's transaction manager with: a clean shutdown (sippy's own leaves retransmit timers and dialog
    timers running against a manager whose state it has set to None: a TypeError trace per timer), and
    incoming data handled for hostile input (`handleIncoming`)."""

    model_udp_server = (_SipUdpServer, _OrderedUdpServerOptions)

    def __init__(self, global_config: dict[str, Any], req_cb: Any, *, malformed: MalformedSipLog) -> None:
        self.malformed = malformed
        super().__init__(global_config, req_cb)
        self.malformed_flush = Timeout(self.malformed.flush, malformed.interval_s, -1)

    # ---- incoming data ---------------------------------------------------------------------------

    def handleIncoming(self, data_in: bytes | str, ra: Any, server: Any, rtime: Any) -> None:
        """sippy's `handleIncoming` (sippy 2.5.0), rewritten for what anyone can send to the port.

        sippy printed a ten-line traceback to stdout for every datagram it could not parse, and one more from
        `Network_server.handle_read` for anything that raised later; here each becomes a count in
        `MalformedSipLog` (one JSON line per source per interval). Requests in another SIP version get 505,
        requests sippy cannot parse get 400 when they carry enough to match an answer to, and
        `screen_request` refusals get their status. Otherwise the flow is sippy's: retransmission cache,
        responses to their client transaction, requests to `incomingRequest`. Left out: sippy's NAT-traversal
        and WebSocket branches (this engine enables neither)."""
        if self.global_config is None:  # shut down while the datagram was queued
            return
        try:
            self._handle_incoming(data_in, ra, server, rtime)
        except Exception as error:  # noqa: BLE001 - logged (with its trace) by the per-source limiter
            self.malformed.record(ra.address[0], f"{type(error).__name__} while handling it", exc_info=error)

    def _handle_incoming(self, data_in: bytes | str, ra: Any, server: Any, rtime: Any) -> None:
        raw = data_in if isinstance(data_in, bytes) else data_in.encode()
        if len(raw) < 32:  # sippy's floor; RFC 5626 keep-alives (CRLF) are shorter and are not errors
            return
        sip_logger = self.global_config["_sip_logger"]
        if not isinstance(sip_logger, _NullSipLogger):
            sip_logger.write(f"RECEIVED message from {ra}:\n", raw.decode(errors="backslashreplace"), ltime=rtime.realt)
        checksum = md5(raw, usedforsecurity=False).digest()  # sippy's retransmission-cache key
        cached = self.l1rcache.get(checksum) or self.l2rcache.get(checksum)
        if cached is not None:
            if isinstance(cached, _Dropped):
                self.malformed.record(ra.address[0], cached.reason)
            elif cached.data is not None:
                self.transmitData(cached.userv, cached.data, cached.address, lossemul=cached.lossemul)
            return
        try:
            data = raw.decode()
        except UnicodeDecodeError:
            self._drop(ra, checksum, "not UTF-8")
            return
        if data.startswith("SIP/2.0 "):
            self._incoming_response(data, ra, rtime, checksum)
        else:
            self._incoming_request(data, ra, server, rtime, checksum)

    def _incoming_response(self, data: str, ra: Any, rtime: Any, checksum: bytes) -> None:
        try:
            resp = SipResponse(data)
            tid = resp.getTId(True, True)
            code = int(resp.getSCode()[0])
        except Exception as error:  # noqa: BLE001 - sippy's parser raises anything; counted per source
            self._drop(ra, checksum, f"unparsable response ({type(error).__name__})")
            return
        if not 100 <= code <= 699:
            self._drop(ra, checksum, "invalid status code")
            return
        SIP_RESPONSES.labels("received", str(code)).inc()  # every parsable response, matched or stray
        resp.rtime = rtime
        transaction = self.tclient.get(tid)
        if transaction is None:  # a late or stray response: sippy ignores it silently too
            self.l1rcache[checksum] = SipTMRetransmitO()
            return
        resp.setSource(ra)
        self.incomingResponse(resp, transaction, checksum)

    def _incoming_request(self, data: str, ra: Any, server: Any, rtime: Any, checksum: bytes) -> None:
        refusal = version_refusal(data.split("\n", 1)[0])
        if refusal is not None:
            self._refuse_raw(data, ra, server, checksum, refusal)
            return
        try:
            req = SipRequest(data)
            tids = req.getTIds()
            via = req.getHFBody("via")
            via_host, _via_port = via.getAddr()
        except Exception as error:  # noqa: BLE001 - sippy's parser raises anything; answered 400, counted
            self._refuse_raw(
                data, ra, server, checksum, Refusal(400, "Bad Request", f"unparsable request ({type(error).__name__})")
            )
            return
        req.rtime = rtime
        if via_host != ra.address[0]:
            via.params["received"] = ra.received
        if "rport" in via.params:
            via.params["rport"] = str(ra.address[1])
        req.setSource(ra)
        refusal = screen_request(req)
        if refusal is not None:
            if req.getMethod() == "ACK":
                self._drop(ra, checksum, refusal.reason)
                return
            try:
                response = req.genResponse(refusal.status, refusal.phrase)
                address = response.getHFBody("via").getTAddr()
            except Exception:  # noqa: BLE001 - a header the answer copies does not parse: answer from the raw lines
                self._refuse_raw(data, ra, server, checksum, refusal)
                return
            self.malformed.record(ra.address[0], f"{refusal.status}: {refusal.reason}")
            self.transmitMsg(server, response, address, checksum)
            return
        try:
            self.incomingRequest(req, checksum, tids, server)
        except SdpParseError as error:
            self.sendResponse(error.getResponse(req))
        except SipParseError as error:
            response = error.getResponse(req)
            if response is None:
                raise
            self.transmitMsg(server, response, response.getHFBody("via").getTAddr(), checksum)

    def _drop(self, ra: Any, checksum: bytes, reason: str) -> None:
        self.malformed.record(ra.address[0], reason)
        self.l1rcache[checksum] = _Dropped(reason)

    def _refuse_raw(self, data: str, ra: Any, server: Any, checksum: bytes, refusal: Refusal) -> None:
        """Answer a request sippy cannot parse (or would mis-answer) from its raw lines, to where it came from."""
        response = raw_response(data, refusal, SipConf.my_uaname)
        if response is None:
            self._drop(ra, checksum, refusal.reason)
            return
        self.malformed.record(ra.address[0], f"{refusal.status}: {refusal.reason}")
        self.transmitData(server, response, reply_address(data, ra.address), checksum)

    def shutdown(self) -> None:
        self.malformed_flush.cancel()
        self.malformed.flush(everything=True)
        for transaction in [*self.tclient.values(), *self.tserver.values()]:
            for timer_name in ("teA", "teB", "teC", "teD", "teE", "teF", "teG"):
                timer = getattr(transaction, timer_name, None)
                if timer is not None:
                    timer.cancel()
        super().shutdown()

    def transmitData(self, *args: object, **kwargs: object) -> None:
        if self.global_config is not None:
            super().transmitData(*args, **kwargs)

    def regConsumer(self, *args: object, **kwargs: object) -> None:
        if self.global_config is not None:
            super().regConsumer(*args, **kwargs)

    def unregConsumer(self, *args: object, **kwargs: object) -> None:
        if self.global_config is not None:
            super().unregConsumer(*args, **kwargs)

    def newTransaction(self, msg: Any, *args: object, **kwargs: object) -> object:
        if self.global_config is None:
            return None
        # sippy compares the transport case-sensitively: a far end's `Contact: <sip:...;transport=UDP>`
        # made every in-dialog request (our BYE) fail with "unsupported transport: UDP".
        target = msg.getTarget()
        if target is not None and len(target) == 2 and isinstance(target[1], str):
            msg.setTarget((target[0], target[1].lower()))
        return super().newTransaction(msg, *args, **kwargs)

    def sendResponse(self, resp: Any, *args: object, **kwargs: object) -> None:
        if self.global_config is not None:
            super().sendResponse(resp, *args, **kwargs)
            if not kwargs.get("retrans") and not (len(args) > 1 and args[1]):  # a retransmission is not a new answer
                SIP_RESPONSES.labels("sent", str(resp.getSCode()[0])).inc()


class _Reactor:
    """The one sippy reactor thread per process (ED2 is a singleton)."""

    _lock = threading.Lock()
    _thread: threading.Thread | None = None

    @classmethod
    def ensure_running(cls) -> None:
        with cls._lock:
            if cls._thread is not None and cls._thread.is_alive():
                return
            started = threading.Event()

            def run() -> None:
                ED2.my_ident = threading.get_ident()  # timers armed from this thread only (sippy-notes)
                started.set()
                while True:
                    try:
                        ED2.loop()
                    except Exception:
                        log.exception("sippy reactor loop raised; restarting it")

            cls._thread = threading.Thread(target=run, name="sippy-reactor", daemon=True)
            cls._thread.start()
            started.wait()


_reactor_commands: queue.SimpleQueue[tuple[Callable[..., object], tuple[object, ...]]] = queue.SimpleQueue()


def _call_in_reactor(function: Callable[..., object], *args: object) -> None:
    """Fire-and-forget into the reactor, strictly in order: commands go through our own FIFO and each
    wake-up drains it, so no reactor wake-up mechanism can reorder two commands for one call."""
    _reactor_commands.put((function, args))
    ED2.callFromThread(_drain_reactor_commands)


def _drain_reactor_commands() -> None:
    while True:
        try:
            function, args = _reactor_commands.get_nowait()
        except queue.Empty:
            return
        try:
            function(*args)
        except Exception:
            log.exception("sippy command %s failed", getattr(function, "__name__", function))


class SippyCallEngine:
    """CallEngine over sippy (signalling) and our own RTP/media on one shared asyncio clock."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.clock = MediaClock()
        self.library = AudioLibrary(config.cache_dir / "audio")
        self.speech = SpeechSynthesizer(config.cache_dir / "tts", self.library)
        self._calls: dict[str, _Call] = {}
        self._subscribers: list[asyncio.Queue[EngineEvent]] = []
        self._registrations: dict[str, Any] = {}
        self._shared: dict[str, tuple[str, SharedPrompt]] = {}  # each bridged call id -> its bridge's prompt
        self._mixes: dict[str, Mix] = {}  # conference rooms by mix id (media/mixer.py)
        self._mix_of: dict[str, str] = {}  # each call in a mix -> its mix id
        self._loop: asyncio.AbstractEventLoop | None = None
        self._global_config: dict[str, Any] = {}
        self.rejected_offers = 0
        # Malformed SIP from the network: counted, logged once per source per interval (sip_guard).
        self.malformed = MalformedSipLog(config.sip_malformed_log_interval_s)
        self.sip_receive_buffer_bytes: int | None = None  # what the kernel granted the SIP socket
        # Draining (docs/voice.md "Deployment"): OPTIONS and new INVITEs are answered 503, so a SIP front door
        # (deploy/kamailio) takes the node out of rotation while the calls it carries go on.
        self.draining = False

    # ---- lifecycle -------------------------------------------------------------------------------

    _running: SippyCallEngine | None = None  # sippy's reactor and SipConf are process-wide

    async def start(self) -> None:
        if SippyCallEngine._running is not None:
            raise CallStateConflict("another SippyCallEngine is running in this process (sippy is process-wide)")
        SippyCallEngine._running = self
        self._loop = asyncio.get_running_loop()
        route_sippy_prints()  # sippy's per-datagram prints to stdout go to the `sippy` logger (sip_guard)
        SipConf.my_address = self.config.sip_host
        SipConf.my_port = self.config.sip_port
        SipConf.my_uaname = self.config.user_agent
        self._global_config = {
            "_sip_address": self.config.sip_host,
            "_sip_port": self.config.sip_port,
            "_sip_logger": _DebugSipLogger() if self.config.log_sip_messages else _NullSipLogger(),
            _RECEIVE_BUFFER_KEY: self.config.sip_receive_buffer_bytes,
        }
        _Reactor.ensure_running()

        def create_transaction_manager() -> None:
            # sippy probes for IPv6 with a socket it never closes, and leaves the socket of a failed bind to
            # the garbage collector: both ResourceWarnings are sippy's, silenced here and only here.
            failure: OSError | None = None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                try:
                    manager = _OrderedTransactionManager(
                        self._global_config, self._on_request, malformed=self.malformed
                    )
                except OSError as error:
                    failure = OSError(error.errno, f"cannot bind SIP to {self.config.sip_host}:{self.config.sip_port}")
                else:
                    self._global_config["_sip_tm"] = manager
                    granted = [server.receive_buffer_bytes for server in manager.l4r.cache_l2s.values()]
                    self.sip_receive_buffer_bytes = min(granted) if granted else None
                gc.collect()
            if failure is not None:
                raise failure

        try:
            await asyncio.to_thread(ED2.callFromThreadSync, create_transaction_manager)
        except BaseException:
            SippyCallEngine._running = None
            self._loop = None
            raise
        requested = self.config.sip_receive_buffer_bytes
        log.info(
            "SIP socket receive buffer: %s bytes granted for %s asked",
            self.sip_receive_buffer_bytes,
            requested,
            extra={"fields": {"requested": requested, "granted": self.sip_receive_buffer_bytes}},
        )
        self.clock.start()

    async def stop(self) -> None:
        for call in list(self._calls.values()):
            if call.state is not CallState.ENDED:
                try:
                    await self.hangup(call.call_id)
                except CallplaneError:
                    log.info("call %s could not be hung up during stop", call.call_id)
            if call.channel is not None:
                call.channel.close()  # whatever could not be hung up above: no RTP socket outlives the engine
        self._calls.clear()
        for mix in list(self._mixes.values()):
            self._destroy_mix(mix)
        for registration_id in list(self._registrations):
            await self.unregister(registration_id)
        await self.clock.stop()
        await asyncio.sleep(0.05)  # let the BYEs leave before the socket closes
        manager = self._global_config.get("_sip_tm")
        if manager is not None:
            await asyncio.to_thread(ED2.callFromThreadSync, manager.shutdown)
        self._global_config = {}
        self._loop = None
        SippyCallEngine._running = None

    def subscribe(self) -> asyncio.Queue[EngineEvent]:
        subscriber: asyncio.Queue[EngineEvent] = asyncio.Queue()
        self._subscribers.append(subscriber)
        return subscriber

    def _emit(self, event: EngineEvent) -> None:
        for subscriber in self._subscribers:
            subscriber.put_nowait(event)

    def _post(self, handler: Callable[..., None], *args: object) -> None:
        """From the reactor thread to the asyncio loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._guarded, handler, *args)
        except RuntimeError:  # the loop closed between the check and the call: the engine is gone
            log.debug("dropping a SIP event after the engine's loop closed")

    def _guarded(self, handler: Callable[..., None], *args: object) -> None:
        try:
            handler(*args)
        except Exception:
            log.exception("handling a SIP event failed")
            call_id = args[0] if args and isinstance(args[0], str) else None
            if call_id is not None and call_id in self._calls:
                self._end(self._calls[call_id], CallEnded(call_id, HangupInitiator.ENGINE, answered=False))

    # ---- inbound (reactor thread) ----------------------------------------------------------------

    def _on_request(self, req: Any, sip_t: Any) -> Any:
        """sippy's out-of-dialog request callback; runs in the reactor thread. Whatever fails here is answered
        500 (sippy would leave the transaction unanswered) and logged with the per-source limiter."""
        try:
            return self._dispatch_request(req, sip_t)
        except Exception as error:  # noqa: BLE001 - logged with its trace by the per-source limiter
            self.malformed.record(str(req.getSource()[0]), f"{type(error).__name__} in the request", exc_info=error)
            try:
                return (req.genResponse(500, "Server Internal Error"), None, None)
            except Exception:  # noqa: BLE001 - no answer can be built: sippy drops the transaction
                return None

    def _dispatch_request(self, req: Any, sip_t: Any) -> Any:
        method = req.getMethod()
        if self.draining and method in ("INVITE", "OPTIONS"):
            return (req.genResponse(503, "Service Unavailable"), None, None)
        if method == "INVITE":
            return self._on_invite(req, sip_t)
        if method == "OPTIONS":
            return (req.genResponse(200, "OK"), None, None)
        if method in ("BYE", "CANCEL", "ACK"):
            return (req.genResponse(481, "Call Leg/Transaction Does Not Exist"), None, None)
        return (req.genResponse(405, "Method Not Allowed"), None, None)

    def _refuse(self, req: Any, status: int, phrase: str, reason: str) -> Any:
        """A final answer to an out-of-dialog request we will not take, counted and logged per source."""
        self.malformed.record(str(req.getSource()[0]), f"{status}: {reason}")
        return (req.genResponse(status, phrase), None, None)

    def _on_invite(self, req: Any, sip_t: Any) -> Any:
        body = req.getBody()
        try:
            if body is None:
                raise sdp.SdpError("INVITE without an offer (late offer is not supported)")
            offer = sdp.parse(str(body))
            if offer.port == 0:  # RFC 3264 5.1/6: port 0 rejects the stream, and audio is the only one we take
                raise sdp.SdpError("the offer rejects its audio stream (m=audio 0)")
            sdp.negotiate_answer(offer, preferred=self.config.codecs)
        except sdp.SdpError as error:
            self.rejected_offers += 1
            return self._refuse(req, 488, "Not Acceptable Here", str(error)[:200])
        call_id = uuid.uuid4().hex
        try:
            from_header, to_header = req.getHFBody("from"), req.getHFBody("to")
            incoming = IncomingCall(
                call_id=call_id,
                from_user=str(from_header.getUrl().username or ""),
                to_user=str(to_header.getUrl().username or ""),
                from_display_name=from_header.getUri().name or None,
                headers={header.name: str(header.getBody()) for header in req.headers if header.name.startswith("x-")},
                sip_call_id=str(req.getHFBody("call-id")),
            )
        except Exception as error:  # noqa: BLE001 - sippy's parser raises anything; answered 400, counted
            return self._refuse(req, 400, "Bad Request", f"unparsable From/To ({type(error).__name__})")
        ua = UA(self._global_config, event_cb=self._sippy_event_handler(call_id))
        transfer_aware(ua, self._refer_decision(call_id))
        ua.local_ua = None
        answer = ua.recvRequest(req, sip_t)  # raises on what sippy cannot take: then no call is presented
        self._post(self._register_inbound, call_id, ua, offer, incoming)
        return answer

    def _sippy_event_handler(self, call_id: str) -> Callable[[Any, Any], None]:
        def on_event(event: Any, ua: Any) -> None:
            if isinstance(event, CCEventTry):
                return  # the inbound INVITE itself: already presented as IncomingCall
            self._post(self._on_signal, call_id, _flatten(event))

        return on_event

    # ---- asyncio side: signalling ----------------------------------------------------------------

    def _register_inbound(self, call_id: str, ua: Any, offer: sdp.AudioDescription, incoming: IncomingCall) -> None:
        self._calls[call_id] = _Call(call_id, CallDirection.INBOUND, ua, CallState.OFFERED, offer=offer)
        self._emit(incoming)

    def _on_signal(self, call_id: str, signal: _Signal) -> None:
        call = self._calls.get(call_id)
        if call is None or call.state is CallState.ENDED:
            return
        if signal.kind == "ring":
            self._on_ring(call, signal)
        elif signal.kind == "connect":
            self._on_connect(call, signal)
        elif signal.kind == "update":
            self._on_reinvite(call, signal)
        elif signal.kind in ("fail", "redirect"):
            self._end(
                call,
                CallEnded(
                    call_id,
                    HangupInitiator.REMOTE,
                    answered=False,
                    sip_status=signal.status,
                    sip_reason_phrase=signal.phrase,
                    reason=signal.reason,
                ),
            )
        elif signal.kind == "disconnect":
            answered = call.state is CallState.ANSWERED
            cancelled = call.direction is CallDirection.INBOUND and not answered
            self._end(
                call,
                CallEnded(
                    call_id,
                    HangupInitiator.REMOTE,
                    answered=answered,
                    sip_status=487 if cancelled else None,
                    sip_reason_phrase="Request Terminated" if cancelled else None,
                    reason=signal.reason,
                ),
            )

    def _on_ring(self, call: _Call, signal: _Signal) -> None:
        if call.direction is not CallDirection.OUTBOUND or signal.status is None or signal.status < 180:
            return
        if signal.sdp_text is not None and self._apply_answer(call, signal.sdp_text):
            if call.state is not CallState.EARLY_MEDIA:
                call.state = CallState.EARLY_MEDIA
                self._emit(CallEarlyMedia(call.call_id, signal.status))
        elif call.state is CallState.DIALING:
            call.state = CallState.RINGING
            self._emit(CallRinging(call.call_id, signal.status))

    def _on_connect(self, call: _Call, signal: _Signal) -> None:
        if call.direction is not CallDirection.OUTBOUND:
            return
        if signal.sdp_text is not None and not self._apply_answer(call, signal.sdp_text):
            log.warning("call %s answered with an unusable SDP; hanging up", call.call_id)
            self._send_disconnect(call, SipReasonHeader("Q.850", 88, "Incompatible destination"), None)
            self._end(call, CallEnded(call.call_id, HangupInitiator.ENGINE, answered=True, sip_status=200))
            return
        if call.channel is None or call.channel.negotiated is None:
            log.warning("call %s answered without any SDP; hanging up", call.call_id)
            self._send_disconnect(call, SipReasonHeader("Q.850", 88, "Incompatible destination"), None)
            self._end(call, CallEnded(call.call_id, HangupInitiator.ENGINE, answered=True, sip_status=200))
            return
        self._cancel_ring_timer(call)
        call.state = CallState.ANSWERED
        self._emit(CallAnswered(call.call_id))

    def _on_reinvite(self, call: _Call, signal: _Signal) -> None:
        """Answer a re-INVITE: follow the far end's new address and direction (hold puts them on
        sendonly, so we stop sending), keep our port, and answer with the same codec when we can."""
        channel = call.channel
        if channel is None:
            _call_in_reactor(call.ua.recvEvent, CCEventFail((488, "Not Acceptable Here")))
            return
        if signal.sdp_text is not None:
            try:
                offer = sdp.parse(signal.sdp_text)
                current = channel.negotiated
                preferred = self.config.codecs if current is None else (current.codec, *self.config.codecs)
                negotiated = sdp.negotiate_answer(offer, preferred=preferred)
            except sdp.SdpError as error:
                log.info("call %s: refusing a re-INVITE with 488: %s", call.call_id, error)
                _call_in_reactor(call.ua.recvEvent, CCEventFail((488, "Not Acceptable Here")))
                return
            if current is not None and negotiated.codec in offer.codec_pts() and current.codec in offer.codec_pts():
                negotiated = sdp.Negotiated(
                    current.codec,
                    negotiated.telephone_event_pt,
                    negotiated.remote_address,
                    negotiated.remote_port,
                    negotiated.direction,
                )
            channel.reconfigure(negotiated)
        active = channel.negotiated
        assert active is not None  # a channel of a call in progress has been configured
        call.local_sdp = sdp.build(
            address=self.config.rtp_host,
            port=channel.local_port,
            codecs=(active.codec,),
            telephone_event_pt=active.telephone_event_pt,
            session_id=call.session_id,
            direction=active.direction,
        )
        _call_in_reactor(call.ua.recvEvent, CCEventConnect((200, "OK", MsgBody(call.local_sdp))))

    def _apply_answer(self, call: _Call, sdp_text: str) -> bool:
        if call.channel is None:
            return False
        try:
            negotiated = sdp.accept_answer(sdp.parse(sdp_text), offered=self.config.codecs)
        except sdp.SdpError as error:
            log.warning("call %s: unusable SDP answer: %s", call.call_id, error)
            return False
        call.channel.configure(negotiated)
        return True

    def _end(self, call: _Call, event: CallEnded) -> None:
        if call.state is CallState.ENDED:
            return
        call.state = CallState.ENDED
        try:
            self._cancel_ring_timer(call)
            self._stop_shared(call.call_id)
            self._leave_mix(call.call_id)
            if call.playback_task is not None:
                call.playback_task.cancel()
            if call.digit_queue is not None:
                call.digit_queue.put_nowait(HANGUP_MARK)
        finally:
            if call.channel is not None:
                call.channel.close()  # the sockets go whatever failed above
        self._finish_recording(call)
        self._calls.pop(call.call_id, None)
        self._emit(event)

    def _cancel_ring_timer(self, call: _Call) -> None:
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None

    def _call(self, call_id: str) -> _Call:
        if self._loop is None:
            raise EngineNotRunning
        call = self._calls.get(call_id)
        if call is None or call.state is CallState.ENDED:
            raise CallNotFound(f"no live call {call_id}")
        return call

    # ---- commands: answering side ----------------------------------------------------------------

    async def send_ringing(self, call_id: str) -> None:
        call = self._call(call_id)
        if call.direction is not CallDirection.INBOUND or call.state not in (CallState.OFFERED, CallState.RINGING):
            raise CallStateConflict("ringing is sent only for an inbound call that is not answered")
        call.state = CallState.RINGING
        _call_in_reactor(call.ua.recvEvent, CCEventRing((180, "Ringing", None)))

    async def _prepare_inbound_media(self, call: _Call) -> str:
        async with call.media_lock:
            return await self._prepare_inbound_media_once(call)

    async def _prepare_inbound_media_once(self, call: _Call) -> str:
        if call.local_sdp is not None:
            return call.local_sdp
        assert call.offer is not None  # inbound calls always keep their offer
        negotiated = sdp.negotiate_answer(call.offer, preferred=self.config.codecs)
        channel = self._new_channel(call)
        try:
            port = await channel.open(self.config.rtp_host, self.config.rtp_port_range)
        except OSError:
            if call.state is CallState.ENDED:  # closed by the caller's CANCEL while we bound the ports
                raise CallNotFound(f"call {call.call_id} ended") from None
            raise
        if call.state is CallState.ENDED:  # the caller cancelled while we bound the port
            channel.close()
            raise CallNotFound(f"call {call.call_id} ended")
        channel.configure(negotiated)
        call.local_sdp = sdp.build(
            address=self.config.rtp_host,
            port=port,
            codecs=(negotiated.codec,),
            telephone_event_pt=negotiated.telephone_event_pt,
            session_id=call.session_id,
            direction=negotiated.direction,
        )
        return call.local_sdp

    async def pre_answer(self, call_id: str) -> None:
        call = self._call(call_id)
        if call.direction is not CallDirection.INBOUND or call.state not in (CallState.OFFERED, CallState.RINGING):
            raise CallStateConflict("pre-answer is for an inbound call that is not answered")
        local_sdp = await self._prepare_inbound_media(call)
        call.state = CallState.EARLY_MEDIA
        _call_in_reactor(call.ua.recvEvent, CCEventRing((183, "Session Progress", MsgBody(local_sdp))))

    async def answer(self, call_id: str) -> None:
        call = self._call(call_id)
        if call.direction is not CallDirection.INBOUND or call.state not in _LIVE_BEFORE_ANSWER:
            raise CallStateConflict("only an unanswered inbound call can be answered")
        local_sdp = await self._prepare_inbound_media(call)
        call.state = CallState.ANSWERED
        _call_in_reactor(call.ua.recvEvent, CCEventConnect((200, "OK", MsgBody(local_sdp))))
        self._emit(CallAnswered(call_id))

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
        if call.direction is not CallDirection.INBOUND or call.state is CallState.ANSWERED:
            raise CallStateConflict("only an unanswered inbound call can be rejected")
        if not 300 <= status <= 699:
            raise CallStateConflict(f"a reject needs a final non-2xx status, not {status}")
        phrase = reason_phrase or _REASON_PHRASES.get(status, "Rejected")
        extra = _custom_headers(headers)

        def send() -> None:
            event = CCEventFail((status, phrase))
            if reason is not None:
                event.reason_rfc3326 = _sip_reason(reason)
            if extra is not None:
                event.extra_headers = extra
            call.ua.recvEvent(event)

        _call_in_reactor(send)
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
        if call.direction is CallDirection.INBOUND and call.state is not CallState.ANSWERED:
            await self.reject(call_id, status=480, reason=reason, headers=headers)
            return
        self._send_disconnect(call, reason, _custom_headers(headers))
        self._end(
            call, CallEnded(call_id, HangupInitiator.LOCAL, answered=call.state is CallState.ANSWERED, reason=reason)
        )

    def _send_disconnect(self, call: _Call, reason: SipReasonHeader | None, extra: tuple[Any, ...] | None) -> None:
        def send() -> None:
            event = CCEventDisconnect()
            if reason is not None:
                event.reason_rfc3326 = _sip_reason(reason)
            if extra is not None:
                event.extra_headers = extra
            call.ua.recvEvent(event)

        _call_in_reactor(send)

    # ---- commands: calling side ------------------------------------------------------------------

    async def dial(self, request: OutboundCall) -> str:
        if self._loop is None:
            raise EngineNotRunning
        extra = _custom_headers(request.headers)
        display_name = _quoted_name(request.from_display_name, request.from_user, request.to_user, request.trunk.host)
        call_id = uuid.uuid4().hex
        call = _Call(call_id, CallDirection.OUTBOUND, None, CallState.DIALING)
        channel = self._new_channel(call)
        port = await channel.open(self.config.rtp_host, self.config.rtp_port_range)
        offer = sdp.build(
            address=self.config.rtp_host, port=port, codecs=self.config.codecs, session_id=call.session_id
        )
        call.local_sdp = offer
        self._calls[call_id] = call
        trunk = request.trunk
        ready = threading.Event()

        def send_invite() -> None:
            try:
                ua = UA(
                    self._global_config,
                    event_cb=self._sippy_event_handler(call_id),
                    username=trunk.username,
                    password=trunk.password,
                    nh_address=(trunk.host, trunk.port),
                )
                if trunk.address:  # the address the target policy checked: no second lookup (the R-URI keeps host)
                    ua.rAddr = ((trunk.address, trunk.port), ua.rAddr[1])
                transfer_aware(ua, self._refer_decision(call_id))
                call.ua = ua
                event = CCEventTry(
                    (SipCallId(), request.from_user, request.to_user, MsgBody(offer), None, display_name)
                )
                if extra is not None:
                    event.extra_headers = extra
                ua.recvEvent(event)
            finally:
                ready.set()

        _call_in_reactor(send_invite)
        await asyncio.to_thread(ready.wait, 5.0)
        if call.ua is None:
            self._end(call, CallEnded(call_id, HangupInitiator.ENGINE, answered=False))
            raise CallStateConflict("the INVITE could not be sent")
        if request.ring_timeout_s is not None:
            call.ring_timer = self._loop.call_later(request.ring_timeout_s, self._ring_timeout, call_id)
        return call_id

    def _ring_timeout(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is None or call.state not in _LIVE_BEFORE_ANSWER:
            return
        self._send_disconnect(call, NO_ANSWER, None)
        self._end(call, CallEnded(call_id, HangupInitiator.ENGINE, answered=False, sip_status=487, reason=NO_ANSWER))

    # ---- media -----------------------------------------------------------------------------------

    def _new_channel(self, call: _Call) -> MediaChannel:
        call_id = call.call_id

        def on_digit(digit: str) -> None:
            self._emit(DtmfReceived(call_id, digit))
            live = self._calls.get(call_id)
            if live is not None and live.digit_queue is not None:
                live.digit_queue.put_nowait(digit)

        def on_failure(error: BaseException) -> None:
            live = self._calls.get(call_id)
            if live is not None and live.state is not CallState.ENDED:
                self._send_disconnect(live, SipReasonHeader("Q.850", 41, "Temporary failure"), None)
                self._end(live, CallEnded(call_id, HangupInitiator.ENGINE, answered=live.state is CallState.ANSWERED))

        channel = MediaChannel(clock=self.clock, on_digit=on_digit, on_failure=on_failure, label=call_id[:8])
        call.channel = channel
        return channel

    def _media_channel(self, call_id: str) -> tuple[_Call, MediaChannel]:
        call = self._call(call_id)
        if call.channel is None or call.channel.negotiated is None:
            raise CallStateConflict("the call has no media yet (answer or pre-answer it first)")
        return call, call.channel

    async def load(self, source: PlaySource) -> Pcm:
        """Decode or synthesise a source (cached), e.g. to warm the cache before calls arrive."""
        try:
            if isinstance(source, SpeechSource):
                return await self.speech.speak(
                    source.text, voice=source.voice, words_per_minute=source.words_per_minute
                )
            if isinstance(source, UrlSource):
                return await self.library.url(source.url)
            if isinstance(source, ToneSource):
                return cadence_tone(source.frequencies_hz, source.on_ms, source.off_ms)
            return await self.library.file(source.path)
        except AudioUnavailable as error:
            raise MediaUnavailable(str(error)) from error

    async def play(
        self,
        call_id: str,
        source: PlaySource,
        *,
        loop_count: int = 1,
        offset_ms: int = 0,
        timeout_ms: int | None = None,
    ) -> str:
        call, channel = self._media_channel(call_id)
        samples = await self.load(source)
        call, channel = self._media_channel(call_id)  # the call may have ended while we decoded
        playback_id = uuid.uuid4().hex
        done = channel.play(PcmPlayer(samples, loop_count=loop_count, offset_ms=offset_ms, timeout_ms=timeout_ms))
        call.playback_id = playback_id

        async def report() -> None:
            completed = await done
            self._emit(PlaybackFinished(call_id, playback_id, completed))

        call.playback_task = asyncio.get_running_loop().create_task(report())
        call.playback_task.add_done_callback(_report_finished_on_cancel(self, call_id, playback_id))
        return playback_id

    async def stop_playback(self, call_id: str) -> None:
        _, channel = self._media_channel(call_id)
        channel.stop_playback()

    async def start_recording(
        self,
        call_id: str,
        path: Path,
        channels: RecordingChannels = RecordingChannels.MONO,
        *,
        max_silence_s: float | None = None,
        max_duration_s: float | None = None,
    ) -> None:
        call, channel = self._media_channel(call_id)
        if call.recorder is not None:
            raise CallStateConflict("the call is already being recorded")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            recorder = WavRecorder(
                path,
                channels,
                max_silence_ms=None if max_silence_s is None else round(max_silence_s * 1000),
                max_duration_ms=None if max_duration_s is None else round(max_duration_s * 1000),
            )
        except OSError as error:  # a full disk, a path that is not a folder: the call goes on unrecorded
            raise MediaUnavailable(f"cannot write the recording: {error}") from error
        loop = asyncio.get_running_loop()

        def reached() -> None:  # seen while the channel hands out a frame: the recording ends just after
            loop.call_soon_threadsafe(self._finish_recording_of, call, recorder)

        recorder.on_limit = reached
        call.recorder = recorder
        channel.add_sink(recorder)

    def _finish_recording_of(self, call: _Call, recorder: WavRecorder) -> None:
        if call.recorder is recorder:
            self._finish_recording(call)

    async def stop_recording(self, call_id: str) -> RecordingFinished | None:
        call = self._call(call_id)
        return self._finish_recording(call)

    def _finish_recording(self, call: _Call) -> RecordingFinished | None:
        recorder, call.recorder = call.recorder, None
        if recorder is None:
            return None
        if call.channel is not None:
            call.channel.remove_sink(recorder)
        recorder.close()
        finished = RecordingFinished(call.call_id, recorder.path, recorder.duration_ms)
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
        _, channel = self._media_channel(call_id)
        try:
            done = channel.send_dtmf(digits)
        except ValueError as error:
            raise CallStateConflict(str(error)) from error
        await done

    async def bridge(self, call_id: str, other_call_id: str) -> None:
        if call_id == other_call_id:
            raise CallStateConflict("a call cannot be bridged to itself")
        _, first = self._media_channel(call_id)
        _, second = self._media_channel(other_call_id)
        if call_id in self._mix_of or other_call_id in self._mix_of:
            raise CallStateConflict("a call in a mix cannot be bridged")
        for channel in (first, second):
            if channel.bridge_peer is not None:
                raise CallStateConflict("the call is already bridged")
        first.bridge_peer = second
        second.bridge_peer = first

    async def play_to_bridge(self, call_id: str, source: PlaySource, *, loop_count: int = 1) -> str:
        """Play to both parties of the bridge `call_id` is in, mixed over what each hears from the other.

        The prompt is one clock participant read once per tick and mixed by both channels in the same tick.
        A new prompt replaces the bridge's current one; PlaybackFinished names `call_id`.
        """
        _, channel = self._media_channel(call_id)
        if channel.bridge_peer is None:
            raise CallStateConflict("the call is not bridged")
        samples = await self.load(source)
        _, channel = self._media_channel(call_id)  # the call may have ended while we decoded
        peer = channel.bridge_peer
        if peer is None:
            raise CallStateConflict("the call is not bridged")
        self._stop_shared(call_id)
        playback_id = uuid.uuid4().hex
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        prompt = SharedPrompt(PcmPlayer(samples, loop_count=loop_count), done)
        peer_id = next((other for other, call in self._calls.items() if call.channel is peer), None)
        legs = [call_id] + ([peer_id] if peer_id is not None else [])
        for leg in legs:
            self._shared[leg] = (playback_id, prompt)
        self.clock.add(prompt)
        channel.add_shared(prompt)
        peer.add_shared(prompt)

        def finished(future: asyncio.Future[bool]) -> None:
            self.clock.remove(prompt)
            for leg in legs:
                if self._shared.get(leg, (None, None))[1] is prompt:
                    del self._shared[leg]
            self._emit(PlaybackFinished(call_id, playback_id, future.result()))

        done.add_done_callback(finished)
        return playback_id

    async def stop_bridge_playback(self, call_id: str) -> None:
        self._call(call_id)
        self._stop_shared(call_id)

    def _stop_shared(self, call_id: str) -> None:
        found = self._shared.get(call_id)
        if found is not None:
            found[1].finish(completed=False)  # its done callback takes it off the clock and reports it

    def _refer_decision(self, call_id: str) -> ReferDecision:
        """REFER (reactor thread): accepted for a call bridged with another (there is a party to hand over), which
        the engine then reports as TransferRequested; refused (603) otherwise."""

        def decide(user: str, host: str, port: int | None, refer_to: str, referred_by: str | None) -> bool:
            call = self._calls.get(call_id)
            if call is None or call.channel is None or call.channel.bridge_peer is None:
                return False
            self._post(self._emit, TransferRequested(call_id, user, host, port, refer_to, referred_by))
            return True

        return decide

    async def notify_transfer(self, call_id: str, status: int, reason_phrase: str) -> None:
        call = self._call(call_id)
        _call_in_reactor(lambda: notify(call.ua, status, reason_phrase, final=status >= 200))

    async def unbridge(self, call_id: str) -> None:
        _, channel = self._media_channel(call_id)
        self._stop_shared(call_id)
        peer = channel.bridge_peer
        channel.bridge_peer = None
        if peer is not None:
            peer.bridge_peer = None

    # ---- mixes (conference rooms, media/mixer.py) -------------------------------------------------

    def _mix(self, mix_id: str) -> Mix:
        if self._loop is None:
            raise EngineNotRunning
        mix = self._mixes.get(mix_id)
        if mix is None:
            raise MixNotFound(f"no mix {mix_id}")
        return mix

    async def create_mix(self, mix_id: str) -> None:
        if self._loop is None:
            raise EngineNotRunning
        if mix_id in self._mixes:
            raise CallStateConflict(f"mix {mix_id} exists")

        def prompt_finished(playback_id: str, completed: bool) -> None:
            self._emit(PlaybackFinished(mix_id, playback_id, completed))

        def failed(error: BaseException) -> None:
            log.error("mix %s failed; its members leave it", mix_id, exc_info=error)
            found = self._mixes.get(mix_id)
            if found is not None:
                self._destroy_mix(found)

        mix = Mix(mix_id, on_prompt_finished=prompt_finished, on_failure=failed)
        self._mixes[mix_id] = mix
        self.clock.add(mix)

    async def join_mix(self, mix_id: str, call_id: str, *, muted: bool = False, deaf: bool = False) -> None:
        self._call(call_id)
        mix = self._mix(mix_id)
        _, channel = self._media_channel(call_id)
        if call_id in self._mix_of:
            raise CallStateConflict("the call is already in a mix")
        if channel.bridge_peer is not None:
            raise CallStateConflict("a bridged call cannot join a mix")
        mix.add(call_id, channel, muted=muted, deaf=deaf)
        self._mix_of[call_id] = mix_id

    async def update_mix_member(self, call_id: str, *, muted: bool | None = None, deaf: bool | None = None) -> None:
        self._call(call_id)
        mix_id = self._mix_of.get(call_id)
        if mix_id is None:
            raise CallStateConflict("the call is in no mix")
        self._mixes[mix_id].update(call_id, muted=muted, deaf=deaf)

    async def leave_mix(self, call_id: str) -> None:
        self._call(call_id)
        self._leave_mix(call_id)

    def _leave_mix(self, call_id: str) -> None:
        mix_id = self._mix_of.pop(call_id, None)
        if mix_id is not None and mix_id in self._mixes:
            self._mixes[mix_id].remove(call_id)

    async def play_to_mix(self, mix_id: str, source: PlaySource, *, loop_count: int = 1) -> str:
        self._mix(mix_id)
        if loop_count < 1:
            raise ValueError("loop_count must be at least 1")
        samples = await self.load(source)
        mix = self._mix(mix_id)  # the mix may have been destroyed while we decoded
        playback_id = uuid.uuid4().hex
        mix.play(playback_id, PcmPlayer(samples, loop_count=loop_count))
        return playback_id

    async def stop_mix_playback(self, mix_id: str) -> None:
        self._mix(mix_id).stop_prompt()

    async def start_mix_recording(self, mix_id: str, path: Path, *, member_dir: Path | None = None) -> None:
        mix = self._mix(mix_id)
        if mix.recording:
            raise CallStateConflict("the mix is already being recorded")
        mix.start_recording(path, member_dir)  # makes the folders

    async def stop_mix_recording(self, mix_id: str) -> MixRecordingFinished | None:
        return self._finish_mix_recording(self._mix(mix_id))

    def _finish_mix_recording(self, mix: Mix) -> MixRecordingFinished | None:
        recorded = mix.stop_recording()
        if recorded is None:
            return None
        finished = MixRecordingFinished(mix.mix_id, recorded.path, recorded.duration_ms, recorded.member_paths)
        self._emit(finished)
        return finished

    async def destroy_mix(self, mix_id: str) -> None:
        self._destroy_mix(self._mix(mix_id))

    def _destroy_mix(self, mix: Mix) -> None:
        self._mixes.pop(mix.mix_id, None)
        self.clock.remove(mix)
        for call_id in list(mix.members):
            mix.remove(call_id)
            self._mix_of.pop(call_id, None)
        mix.stop_prompt()
        self._finish_mix_recording(mix)

    def mix_members(self, mix_id: str) -> list[str]:
        """The calls in a mix (tests, bench)."""
        return list(self._mix(mix_id).members)

    # ---- registration ----------------------------------------------------------------------------

    async def register(self, registration: TrunkRegistration) -> str:
        if self._loop is None:
            raise EngineNotRunning
        registration_id = uuid.uuid4().hex
        trunk = registration.trunk
        created = threading.Event()

        def on_ok(_expires_at: object, _contact: object, _arg: object) -> None:
            self._post(self._emit, RegistrationChanged(registration_id, registered=True, status_line="200 OK"))

        def on_fail(status_line: object, _arg: object) -> None:
            self._post(self._emit, RegistrationChanged(registration_id, registered=False, status_line=str(status_line)))

        def on_unregistered(status_line: str) -> None:
            self._post(self._emit, RegistrationChanged(registration_id, registered=False, status_line=status_line))

        def start() -> None:
            try:
                aor = SipURL(username=registration.user, host=trunk.host, port=trunk.port)
                contact = SipURL(username=registration.user, host=self.config.sip_host, port=self.config.sip_port)
                agent = FixedRegistrationAgent(
                    self._global_config,
                    aor,
                    contact,
                    user=trunk.username,
                    passw=trunk.password,
                    exp=registration.expires_s,
                    rok_cb=on_ok,
                    rfail_cb=on_fail,
                    target=((trunk.host, trunk.port), "udp"),
                )
                agent.on_unregistered = on_unregistered
                self._registrations[registration_id] = agent
                agent.doregister()
            finally:
                created.set()

        _call_in_reactor(start)
        await asyncio.to_thread(created.wait, 5.0)
        if registration_id not in self._registrations:
            raise CallStateConflict("the registration could not be started")
        return registration_id

    async def unregister(self, registration_id: str) -> None:
        """REGISTER with expires=0; RegistrationChanged(registered=False) follows the registrar's answer."""
        agent = self._registrations.pop(registration_id, None)
        if agent is not None:
            _call_in_reactor(agent.unregister)

    # ---- audio taps -------------------------------------------------------------------------------

    async def add_audio_tap(self, call_id: str, tap: AudioTap) -> str:
        call, channel = self._media_channel(call_id)
        tap_id = uuid.uuid4().hex
        call.taps[tap_id] = tap
        channel.add_tap(tap)
        return tap_id

    async def remove_audio_tap(self, call_id: str, tap_id: str) -> None:
        call = self._call(call_id)
        tap = call.taps.pop(tap_id, None)
        if tap is not None and call.channel is not None:
            call.channel.remove_tap(tap)

    async def replace_inbound_audio(self, call_id: str, source: AudioSource | None) -> None:
        _, channel = self._media_channel(call_id)
        channel.replace_inbound(source)

    # ---- introspection (tests, bench) ------------------------------------------------------------

    def live_call_ids(self) -> list[str]:
        return list(self._calls)

    def channel(self, call_id: str) -> MediaChannel | None:
        call = self._calls.get(call_id)
        return None if call is None else call.channel


def _report_finished_on_cancel(
    engine: SippyCallEngine, call_id: str, playback_id: str
) -> Callable[[asyncio.Task[None]], None]:
    """A playback cut short by the hangup still reports PlaybackFinished(completed=False)."""

    def callback(task: asyncio.Task[None]) -> None:
        if task.cancelled():
            engine._emit(PlaybackFinished(call_id, playback_id, completed=False))

    return callback


__all__ = ["FixedRegistrationAgent", "SippyCallEngine"]
