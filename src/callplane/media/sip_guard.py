"""What the SIP port does with hostile or malformed input: one log line per source per interval, RFC 3261 answers.

Anyone who can reach the SIP port can send it anything. sippy printed a ten-line traceback per unparsable
datagram (an unauthenticated log amplifier) and let malformed INVITEs ring. Here: the checks that decide the
status a malformed request gets, the answer to a request sippy cannot parse at all, the per-source log
limiter, and the socket receive buffer. Everything here runs in the sippy reactor thread (no locking).
"""

from __future__ import annotations

import importlib
import logging
import re
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

OTHER_SOURCES = "other"  # the shared bucket once an interval has logged `max_sources_per_interval` sources


@dataclass(slots=True)
class _SourceState:
    logged_at: float
    suppressed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


class MalformedSipLog:
    """Malformed SIP is logged once per source address per interval, as one JSON line with counters.

    The first problem from a source is logged at once; the next ones within `interval_s` are only counted, and
    the next line for that source (the next problem after the interval, or `flush()`, which the engine calls
    every interval) says how many were dropped since the previous line and why. At most
    `max_sources_per_interval` sources get lines of their own per interval; the rest share one bucket, so
    spoofed source addresses cannot multiply the lines either.
    """

    def __init__(
        self,
        interval_s: float = 60.0,
        *,
        max_sources_per_interval: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self.max_sources_per_interval = max_sources_per_interval
        self._clock = clock
        self._sources: dict[str, _SourceState] = {}
        self.total = 0  # every malformed datagram or request seen, logged or not
        self.lines = 0

    def record(self, source: str, reason: str, *, exc_info: BaseException | None = None) -> None:
        self.total += 1
        now = self._clock()
        key = source if source in self._sources or self._has_room(now) else OTHER_SOURCES
        state = self._sources.get(key)
        if state is not None and now - state.logged_at < self.interval_s:
            state.suppressed += 1
            state.reasons[reason] += 1
            return
        count = 1 + (state.suppressed if state is not None else 0)
        reasons = Counter({reason: 1}) + (state.reasons if state is not None else Counter())
        self._sources[key] = _SourceState(logged_at=now)
        self._emit(key, reason, count, reasons, exc_info)

    def flush(self, *, everything: bool = False) -> None:
        """Report what was counted but not logged; forget sources that have been quiet for an interval."""
        now = self._clock()
        for key, state in list(self._sources.items()):
            if not everything and now - state.logged_at < self.interval_s:
                continue
            if state.suppressed:
                reason = state.reasons.most_common(1)[0][0]
                self._emit(key, reason, state.suppressed, state.reasons, None)
                self._sources[key] = _SourceState(logged_at=now)
            else:
                del self._sources[key]

    def _has_room(self, now: float) -> bool:
        if len(self._sources) < self.max_sources_per_interval:
            return True
        self.flush()  # drops the sources that went quiet, making room
        return len(self._sources) < self.max_sources_per_interval

    def _emit(
        self, source: str, reason: str, count: int, reasons: Counter[str], exc_info: BaseException | None
    ) -> None:
        self.lines += 1
        log.warning(
            "malformed SIP from %s: %s (%d since the last line for this source)",
            source,
            reason,
            count,
            exc_info=exc_info,
            extra={
                "fields": {
                    "event": "sip_malformed",
                    "source": source,
                    "reason": reason,
                    "count": count,
                    "reasons": dict(reasons.most_common(10)),
                    "interval_s": self.interval_s,
                }
            },
        )


@dataclass(frozen=True, slots=True)
class Refusal:
    """A final response for a request we will not process, and why (for the log line)."""

    status: int
    phrase: str
    reason: str


_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")  # RFC 3261 token (method names)
# Linear on purpose (hosts are attacker-controlled, up to 8 KB): a host name or IPv4, or a bracketed IPv6.
_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,253}|\[[0-9A-Fa-f:.]{2,45}\]")


def version_refusal(request_line: str) -> Refusal | None:
    """505 for a request in any SIP version but 2.0 (RFC 3261 8.2.2 is silent, 21.5.6 names the code)."""
    parts = request_line.split()
    if len(parts) == 3 and parts[2].upper().startswith("SIP/") and parts[2] != "SIP/2.0":
        return Refusal(505, "Version Not Supported", f"SIP version {parts[2][:20]!r}")
    return None


def screen_request(req: Any) -> Refusal | None:
    """What sippy would process but RFC 3261 refuses; `req` is a parsed sippy SipRequest.

    - CSeq whose method differs from the request's: 400 (8.1.1.5, "the method MUST match the Request-Line").
    - An empty Call-ID, an unparsable To, or an out-of-dialog INVITE whose From, To or Contact names no SIP
      party (the Contact is mandatory in an INVITE, 8.1.1.8) or whose Expires is not a number: 400. sippy
      would raise on each of these inside its transaction or UA, leaving the INVITE unanswered.
    - Max-Forwards 0 on an out-of-dialog request: 483 (8.1.1.6 / 16.3; OPTIONS may be answered at 0, ACK and
      CANCEL follow their INVITE).
    The ACK gets no answer whatever it holds (the caller drops it).
    """
    method = req.getMethod()
    try:
        cseq_method = req.getHFBody("cseq").getCSeqMethod()
    except Exception:  # noqa: BLE001 - sippy's parsers raise whatever their split()s raise
        return Refusal(400, "Bad Request", "unparsable CSeq")
    if cseq_method != method:
        return Refusal(400, "Bad Request", f"CSeq method {str(cseq_method)[:20]!r} does not match {method[:20]!r}")
    if not str(req.getHFBody("call-id")).strip():
        return Refusal(400, "Bad Request", "empty Call-ID")
    if method in ("ACK", "CANCEL"):
        return None
    try:
        in_dialog = req.getHFBody("to").getTag() is not None
    except Exception:  # noqa: BLE001 - as above
        return Refusal(400, "Bad Request", "unparsable To")
    if in_dialog:  # its dialog's UA decides; nothing is left to forward
        return None
    if method == "INVITE":
        for name in ("from", "to", "contact"):
            problem = party_problem(req, name) if req.countHFs(name) > 0 else "missing"
            if problem is not None:
                return Refusal(400, "Bad Request", f"{name.capitalize()}: {problem}")
        if req.countHFs("expires") > 0:
            try:
                int(req.getHFBody("expires").getNum())
            except Exception:  # noqa: BLE001 - as above
                return Refusal(400, "Bad Request", "unparsable Expires")
    if method == "OPTIONS" or req.countHFs("max-forwards") == 0:
        return None
    try:
        hops = int(req.getHFBody("max-forwards").getNum())
    except Exception:  # noqa: BLE001 - as above
        return Refusal(400, "Bad Request", "unparsable Max-Forwards")
    if hops <= 0:
        return Refusal(483, "Too Many Hops", "Max-Forwards 0")
    return None


def party_problem(req: Any, name: str) -> str | None:
    """Why the From, To or Contact (`name`) of an INVITE cannot name a party (sippy's relaxed parser accepts
    `From: garbage<<>>` as a URL with host `<`); None when it is usable. sippy parses headers lazily, so this
    may be the first parse of the header."""
    try:
        url = req.getHFBody(name).getUrl()
        host = str(url.host or "")
        scheme = str(getattr(url, "scheme", "sip") or "sip")
    except Exception:  # noqa: BLE001 - sippy's parsers raise whatever their split()s raise
        return "unparsable"
    if scheme not in ("sip", "sips"):
        return f"unsupported scheme {scheme[:10]!r}"
    if not _HOST.fullmatch(host):
        return f"invalid host {host[:40]!r}"
    return None


_COPIED_HEADERS = {
    "via": "Via", "v": "Via", "from": "From", "f": "From", "to": "To", "t": "To",
    "call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq",
}  # fmt: skip


def raw_response(data: str, refusal: Refusal, server_name: str) -> str | None:
    """A final response to a request sippy could not parse, built from its raw header lines (RFC 3261 8.2.6.2
    copies Via, From, To, Call-ID and CSeq). None when the text is not a request that can be answered: no
    request line, an ACK, or no Via / Call-ID / CSeq to match the answer to."""
    head = data.replace("\r\n", "\n").split("\n\n", 1)[0]
    lines = head.split("\n")
    parts = lines[0].split()
    if len(parts) != 3 or not _TOKEN.match(parts[0]) or parts[0] == "ACK" or not parts[2].upper().startswith("SIP/"):
        return None
    copied: list[str] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        canonical = _COPIED_HEADERS.get(name.strip().lower())
        if colon and canonical is not None:
            copied.append(f"{canonical}: {value.strip()}")
    present = {line.split(":", 1)[0] for line in copied}
    if not {"Via", "Call-ID", "CSeq"} <= present:
        return None
    return "\r\n".join(
        [f"SIP/2.0 {refusal.status} {refusal.phrase}", *copied, f"Server: {server_name}", "Content-Length: 0", "", ""]
    )


_SENT_BY_PORT = re.compile(r"^\s*SIP\s*/\s*2\.0\s*/\s*UDP\s+[^\s;:]+:(\d{1,5})", re.IGNORECASE)


def reply_address(data: str, source: tuple[str, int]) -> tuple[str, int]:
    """Where a response without a transaction goes (RFC 3261 18.2.2): the source address, at the port of the top
    Via's sent-by when it names one (never another host: no reflecting answers to a third party)."""
    for line in data.replace("\r\n", "\n").split("\n\n", 1)[0].split("\n")[1:]:
        name, colon, value = line.partition(":")
        if colon and name.strip().lower() in ("via", "v"):
            match = _SENT_BY_PORT.match(value)
            if match is not None and 0 < int(match.group(1)) < 65536:
                return (source[0], int(match.group(1)))
            break
    return source


_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux; lets root go past net.core.rmem_max


def raise_receive_buffer(sock: socket.socket, requested: int) -> int:
    """Ask for `requested` bytes of receive buffer (a burst of CANCELs overflowed the default 208 KB); returns
    what the kernel reports. Linux caps SO_RCVBUF at net.core.rmem_max; as root SO_RCVBUFFORCE passes the cap.
    The reported figure is twice the usable one on Linux (it counts its bookkeeping overhead)."""
    if requested <= 0:
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, requested)
    granted = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    if granted < requested:
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, requested)
        except OSError:  # not root (no CAP_NET_ADMIN): keep what rmem_max allowed
            pass
        granted = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    return granted


# sippy modules that report what they repaired or refused in a message from the network with a bare print():
# SipMsg "Truncated SIP body ... fixing", SipURL "non-compliant URI detected", SipRequest "BUG: Double exception",
# SipTransactionManager "INVITE transaction stuck", the UAC/UA states' "tag-less 200 OK" and keep-alive lines.
_PRINTING_SIPPY_MODULES = (
    "sippy.SipMsg",
    "sippy.SipURL",
    "sippy.SipRequest",
    "sippy.SipTransactionManager",
    "sippy.UacStateTrying",
    "sippy.UacStateRinging",
    "sippy.UaStateConnected",
)
_sippy_log = logging.getLogger("sippy")


def _sippy_print(*args: object, **_kwargs: object) -> None:
    _sippy_log.debug("%s", " ".join(str(arg) for arg in args))


def route_sippy_prints() -> None:
    """The one monkeypatch of the SIP stack, isolated here: each module above gets a module-level `print` that
    shadows the builtin for that module's code only, and sends the text to the `sippy` logger at DEBUG.

    Why not a subclass: anyone can trigger those prints once per datagram (a Content-Length two bytes too
    long, `sip:a@host:` with an empty port), and no override reaches them: SipRequest calls
    `SipMsg.init_body(self)` by class, and URLs are parsed lazily deep inside sippy's header classes. Not
    `contextlib.redirect_stdout` either: that swaps `sys.stdout` for every thread (`callplane phone` writes its
    events there). Idempotent; our own code and every other module keep the real print."""
    for name in _PRINTING_SIPPY_MODULES:
        module = importlib.import_module(name)
        module.print = _sippy_print  # type: ignore[attr-defined]
