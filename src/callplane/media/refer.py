"""SIP REFER from the far end (RFC 3515, a blind transfer): accepted (202, then NOTIFYs with a message/sipfrag body
saying how the transfer goes) or refused (603 Decline) as the engine's policy says, instead of sippy's default (202
and a BYE at once).

Runs in sippy's reactor thread. A call's UA gets `transfer_aware(ua, decide)`: its connected state answers REFER by
asking `decide(refer_to_url, referred_by)` (True: accepted; the engine reports TransferRequested) and `notify(ua,
status, phrase, final=...)` sends the progress NOTIFYs (100 Trying at once; the final status when the control plane
knows it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sippy.MsgBody import MsgBody
from sippy.SipContentType import SipContentType
from sippy.SipGenericHF import SipGenericHF
from sippy.SipHeader import SipHeader
from sippy.UaStateConnected import UaStateConnected

# decide(user, host, port, refer_to, referred_by) -> accepted?
ReferDecision = Callable[[str, str, int | None, str, str | None], bool]


class _Verbatim(SipGenericHF):  # type: ignore[misc]
    """A header written with its usual casing (sippy would write `Subscription-state`)."""

    def __init__(self, value: str, name: str) -> None:
        super().__init__(value, name)
        self.display_name = name

    def getCanName(self, name: str, compact: bool = False) -> str:
        return self.display_name

    def getCopy(self) -> _Verbatim:
        return _Verbatim(self.body, self.display_name)


def _on_refer(state: Any, req: Any) -> None:
    decide: ReferDecision | None = getattr(state.ua, "callplane_refer", None)
    if req.countHFs("refer-to") == 0:
        req.sendResponse(400, "Bad Request")
        return None
    try:
        url = req.getHFBody("refer-to").getUrl()
        referred_by = str(req.getHFBody("referred-by")) if req.countHFs("referred-by") else None
        target = (str(url.username or ""), str(url.host or ""), int(url.port) if url.port else None)
    except Exception:  # noqa: BLE001 - sippy's parser raises anything on a broken Refer-To
        req.sendResponse(400, "Bad Request")
        return None
    refer_to = f"sip:{target[0]}@{target[1]}" + (f":{target[2]}" if target[2] else "")
    if decide is None or not target[0] or not target[1] or not decide(*target, refer_to, referred_by):
        req.sendResponse(603, "Decline")
        return None
    req.sendResponse(202, "Accepted")
    notify(state.ua, 100, "Trying", final=False)
    return None


class TransferAwareConnected(UaStateConnected):  # type: ignore[misc]
    recv_request_handlers = {**UaStateConnected.recv_request_handlers, "REFER": _on_refer}


def transfer_aware(ua: Any, decide: ReferDecision) -> None:
    """The UA's connected state answers REFER through `decide` (refused when it says no)."""
    ua.UaStateConnected = TransferAwareConnected
    ua.callplane_refer = decide


def notify(ua: Any, status: int, phrase: str, *, final: bool) -> None:
    """An in-dialog NOTIFY of the refer subscription with the transfer's progress as a sipfrag status line."""
    content_type = SipContentType("message/sipfrag;version=2.0")
    content_type.parse()
    body = MsgBody(f"SIP/2.0 {status} {phrase}\r\n", mtype=content_type)
    state = "terminated;reason=noresource" if final else "active;expires=60"
    headers = (
        SipHeader(name="event", body=_Verbatim("refer", "Event")),
        SipHeader(name="subscription-state", body=_Verbatim(state, "Subscription-State")),
    )
    request = ua.genRequest("NOTIFY", body=body, extra_headers=headers)
    ua.newTransaction(request)
