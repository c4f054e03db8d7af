"""What an application may put on an outbound INVITE: where it goes and what it carries (docs/voice.md).

Where: every SIP peer a customer names (a call's `host`, a trunk's host, an agent's phone, a promo number's
destination) goes through the outbound target policy that recording fetches and webhooks use
(`TargetPolicy`, allow-listed by `fetch_allowed_networks` / `fetch_allowed_hosts`). A name is resolved once,
every address it resolves to is checked, and the INVITE goes to the checked address, so no DNS change can
slip between the check and the packet.

What: custom header names are RFC 3261 tokens outside a deny-list of the headers the SIP stack writes itself
or that route, authenticate or assert identity; header values, display names and URI parts hold no control
characters (a CR LF would start a new header line).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from callplane.core.recordings.errors import HostNotFound
from callplane.core.recordings.targets import IPAddress, TargetPolicy, describe
from callplane.errors import InvalidInput

DEFAULT_SIP_PORT = 5060
MAX_CUSTOM_HEADERS = 20
MAX_HEADER_NAME_LENGTH = 64
MAX_HEADER_VALUE_LENGTH = 512
MAX_DISPLAY_NAME_LENGTH = 128
MAX_SIP_USER_LENGTH = 128
MAX_HOST_LENGTH = 255  # the endpoint_host columns

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~").
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# RFC 3261 §25.1 user: unreserved / escaped / user-unreserved (no "@", ":", "<", ">", quotes, spaces, controls).
_SIP_USER = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+")
# A DNS host name (labels of letters, digits and hyphens); IP literals are parsed separately.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}\.?$){_LABEL}(?:\.{_LABEL})*\.?")

# Headers an application may not set (lower case). The stack writes the dialog, transaction and body headers
# itself (a second Via, Contact or Content-Length corrupts the message); routing and authentication headers
# would steer or authorise the call on someone else's behalf; identity headers assert a caller id a trunk
# may trust. Single-letter names are the compact forms of standard headers (RFC 3261 §7.3.3) and are refused
# too. X- headers and other extension headers pass.
FORBIDDEN_HEADERS = frozenset(
    {
        # dialog and transaction
        "via", "from", "to", "call-id", "cseq", "contact", "max-forwards",
        # body
        "content-length", "content-type", "content-encoding", "content-disposition", "content-language",
        "mime-version",
        # routing
        "route", "record-route", "path", "service-route",
        # authentication
        "authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate", "authentication-info",
        # capabilities and session timers the stack negotiates
        "allow", "allow-events", "supported", "require", "proxy-require", "unsupported", "accept",
        "accept-encoding", "accept-language", "session-expires", "min-se", "rseq", "rack", "expires",
        "min-expires", "event", "subscription-state", "refer-to", "referred-by", "replaces", "join",
        "security-client", "security-server", "security-verify", "user-agent", "server",
        # identity a trunk may trust
        "p-asserted-identity", "p-preferred-identity", "identity", "identity-info", "remote-party-id", "privacy",
    }
)  # fmt: skip


class InvalidSipValue(InvalidInput):
    """A SIP header, display name or URI part is not valid."""


class SipTargetRefused(InvalidInput):
    """The SIP destination is not an address callplane may send to."""


def header_name_problem(name: str) -> str | None:
    """Why `name` may not be a custom header, or None."""
    if not _TOKEN.fullmatch(name):
        return f"custom header name {name!r} is not a SIP token (letters, digits and -.!%*_+`'~)"
    if len(name) > MAX_HEADER_NAME_LENGTH:
        return f"custom header name {name[:20]!r}... is longer than {MAX_HEADER_NAME_LENGTH} characters"
    if len(name) == 1 or name.lower() in FORBIDDEN_HEADERS:
        return f"custom header {name!r} is set by callplane and may not be given (use an X- header)"
    return None


def _control_character(text: str, *, tab: bool = False) -> str | None:
    for ch in text:
        if (ord(ch) < 0x20 and not (tab and ch == "\t")) or 0x7F <= ord(ch) <= 0x9F:
            return repr(ch)
    return None


def header_value_problem(name: str, value: str) -> str | None:
    bad = _control_character(value, tab=True)
    if bad is not None:
        return f"custom header {name!r} holds the control character {bad} (CR, LF and NUL are never sent)"
    if len(value) > MAX_HEADER_VALUE_LENGTH:
        return f"custom header {name!r} is longer than {MAX_HEADER_VALUE_LENGTH} characters"
    return None


def custom_header_problems(headers: Mapping[str, str]) -> list[str]:
    """Everything wrong with an application's custom headers (empty when they may go on the INVITE)."""
    problems: list[str] = []
    if len(headers) > MAX_CUSTOM_HEADERS:
        problems.append(f"at most {MAX_CUSTOM_HEADERS} custom headers")
    seen: set[str] = set()
    for name, value in headers.items():
        problem = header_name_problem(name) or header_value_problem(name, value)
        if problem is None and name.lower() in seen:
            problem = f"custom header {name!r} is given twice"
        seen.add(name.lower())
        if problem is not None:
            problems.append(problem)
    return problems


def display_name_problem(name: str) -> str | None:
    bad = _control_character(name)
    if bad is not None:
        return f"the display name holds the control character {bad}"
    if len(name) > MAX_DISPLAY_NAME_LENGTH:
        return f"the display name is longer than {MAX_DISPLAY_NAME_LENGTH} characters"
    return None


def sip_user_problem(user: str) -> str | None:
    if len(user) > MAX_SIP_USER_LENGTH:
        return f"the SIP user is longer than {MAX_SIP_USER_LENGTH} characters"
    if not _SIP_USER.fullmatch(user):
        return f"{user[:40]!r} is not a SIP user (letters, digits, -_.!~*'()&=+$,;?/ and %XX escapes)"
    return None


def check_sip_values(
    *, headers: Mapping[str, str], display_name: str | None, users: tuple[str | None, ...] = ()
) -> None:
    """Raise `InvalidSipValue` listing every problem of what goes into the INVITE's headers and URIs."""
    problems = custom_header_problems(headers)
    if display_name:
        problems.extend(p for p in [display_name_problem(display_name)] if p)
    problems.extend(p for p in (sip_user_problem(user) for user in users if user is not None) if p)
    if problems:
        raise InvalidSipValue("; ".join(problems), problems=problems)


# ---- where the INVITE goes ------------------------------------------------------------------------


def split_host_port(text: str) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]:port`, `v6` or an IP literal -> (host, port); raises `InvalidSipValue`."""
    value = text.strip()
    if not value or len(value) > MAX_HOST_LENGTH:
        raise InvalidSipValue(f"host must be host[:port], at most {MAX_HOST_LENGTH} characters")
    host, port_text = value, ""
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise InvalidSipValue(f"{value!r} is not host[:port]")
        port_text = rest[1:]
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    if port_text or value.endswith(":"):
        if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise InvalidSipValue(f"{value!r}: the port must be 1-65535")
    if not _is_ip_literal(host) and not _HOST_NAME.fullmatch(host):
        raise InvalidSipValue(f"{host[:60]!r} is not a host name or IP address")
    return host, int(port_text) if port_text else DEFAULT_SIP_PORT


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


async def checked_addresses(policy: TargetPolicy, host: str, port: int, *, what: str) -> list[IPAddress]:
    """Resolve `host` and check every address against the policy; raises `SipTargetRefused` naming the reason
    (and what to allow-list when it is intended), or `InvalidSipValue` when the name does not resolve."""
    try:
        addresses = await policy.addresses(host, port)
    except HostNotFound as exc:
        raise InvalidSipValue(f"cannot call {what}: {exc.message}") from exc
    for address in addresses:
        reason = policy.refusal(address, host)
        if reason is not None:
            raise SipTargetRefused(
                f"refusing to call {what}: {describe(address, host, reason)}; SIP calls go only to public "
                "addresses unless an operator allow-lists the network or host (CALLPLANE_FETCH_ALLOWED_NETWORKS, "
                "CALLPLANE_FETCH_ALLOWED_HOSTS)"
            )
    return addresses


async def pinned_address(policy: TargetPolicy, host: str, port: int, *, what: str) -> str:
    """The first checked IPv4 address of `host` (the engine's SIP socket is IPv4): the INVITE is sent there while
    the Request-URI keeps the name (live/registrar.py `pinned_peer`)."""
    addresses = await checked_addresses(policy, host, port, what=what)
    usable = [a.ipv4_mapped or a if isinstance(a, ipaddress.IPv6Address) else a for a in addresses]
    usable = [a for a in usable if isinstance(a, ipaddress.IPv4Address)]
    if not usable:
        raise InvalidSipValue(f"cannot call {what}: {host} has no IPv4 address (SIP runs over IPv4 here)")
    return str(usable[0])


async def check_target(policy: TargetPolicy, host: str, port: int, *, what: str) -> None:
    """The request-time check of a stored SIP target: when the name resolves now, every address it resolves to.
    A name that does not resolve yet is accepted (a carrier's DNS may come later): the dial-time check, which
    every INVITE goes through, decides then."""
    try:
        await checked_addresses(policy, host, port, what=what)
    except SipTargetRefused:
        raise
    except InvalidSipValue:
        return


async def check_host_port(policy: TargetPolicy, host_port: str, *, what: str) -> None:
    """`check_target` of a `host[:port]` text, after checking its syntax."""
    host, port = split_host_port(host_port)
    await check_target(policy, host, port, what=what)
