"""Which network addresses a recording fetch, a webhook or a SIP call may connect to (SSRF defence).

Customers hand us URLs and SFTP hosts; without this a URL such as ``http://169.254.169.254/`` or a name that
resolves to ``10.0.0.5`` would let them read our internal network. Following the OWASP SSRF cheat sheet and
Stripe's Smokescreen, the check runs on the addresses a name *resolves to*, every one of them, and the
connection then goes to exactly the address that was checked (no second lookup, so no DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from callplane.core.recordings.errors import HostNotFound, InvalidTargetUrl, TargetRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The schemes `TargetPolicy.check_url` knows, with the port each implies.
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "sip": 5060, "sips": 5061}

# IPv6 prefixes that embed an IPv4 address; the embedded address decides.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
# Ranges Python's ``ipaddress`` (3.11) does not classify as non-global although they are not public unicast.
_EXTRA_FORBIDDEN: tuple[tuple[IPNetwork, str], ...] = (
    (ipaddress.IPv4Network("100.64.0.0/10"), "shared (carrier-grade NAT)"),
    (ipaddress.IPv4Network("192.0.0.0/24"), "IETF protocol assignment"),
    (ipaddress.IPv6Network("fec0::/10"), "site-local"),
    (_NAT64_LOCAL, "local-use NAT64"),
)


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address, or None when it is one."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            inner = forbidden_reason(ip.ipv4_mapped)
            return f"IPv4-mapped {inner}" if inner else None
        if ip in _NAT64:
            inner = forbidden_reason(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
            return f"NAT64-embedded {inner}" if inner else None
        if ip.sixtofour is not None:
            inner = forbidden_reason(ip.sixtofour)
            return f"6to4-embedded {inner}" if inner else None
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    for network, reason in _EXTRA_FORBIDDEN:
        if ip.version == network.version and ip in network:
            return reason
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "non-global"
    return None


def _as_address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """Where fetches may go: public unicast addresses, plus operator-listed networks and host names.

    An allow-listed network or host lifts the public-address rule (for on-premises recording servers and
    tests on loopback), but unspecified and multicast addresses are never connectable targets.
    """

    allowed_networks: tuple[IPNetwork, ...] = ()
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_config(cls, networks: Iterable[str] = (), hosts: Iterable[str] = ()) -> TargetPolicy:
        """Build from settings strings such as ``["10.20.0.0/16", "127.0.0.1"]`` and ``["sftp.internal"]``."""
        return cls(
            allowed_networks=tuple(ipaddress.ip_network(n, strict=False) for n in networks),
            allowed_hosts=frozenset(_normalize_host(h) for h in hosts),
        )

    def refusal(self, ip: IPAddress, host: str | None = None) -> str | None:
        """Why connecting to ``ip`` (reached through ``host``) is refused, or None when it is allowed."""
        ip = ipaddress.ip_address(ip.compressed.split("%", 1)[0])  # drop an IPv6 zone id
        if ip.is_unspecified or ip.is_multicast:
            return "unspecified" if ip.is_unspecified else "multicast"
        if host is not None and _normalize_host(host) in self.allowed_hosts:
            return None
        candidates = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        for candidate in candidates:
            if any(candidate.version == net.version and candidate in net for net in self.allowed_networks):
                return None
        return forbidden_reason(ip)

    def check(self, ip: IPAddress, host: str | None = None) -> None:
        """Raise ``TargetRefused`` naming the reason, so an operator knows what to allow-list if intended."""
        reason = self.refusal(ip, host)
        if reason is not None:
            raise TargetRefused(
                f"refusing to fetch from {describe(ip, host, reason)}; recordings are fetched only from public "
                "addresses unless an operator allow-lists the network or host"
            )

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Resolve ``host`` and check every address; all must be allowed (a mixed answer is an attack smell)."""
        addresses = await self.addresses(host, port)
        for address in addresses:
            self.check(address, host)
        return addresses

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        """Every address ``host`` resolves to, not yet checked (an IP literal is itself; other numeric forms
        such as ``2130706433`` or ``0x7f.1`` resolve as the C library reads them). Raises ``HostNotFound``."""
        name = _normalize_host(host)
        literal = _as_address(name)
        if literal is not None:
            return [literal]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except socket.gaierror as exc:
            error = HostNotFound(f"the host name {name!r} does not resolve ({exc.strerror})")
            # "name unknown" will not fix itself; a failing resolver might.
            error.permanent = exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
            raise error from exc
        except UnicodeError as exc:
            raise HostNotFound(f"the host name {name!r} is not a valid DNS name") from exc
        addresses: list[IPAddress] = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise HostNotFound(f"the host name {name!r} has no addresses")
        return addresses

    async def check_url(self, url: str, *, schemes: Iterable[str] = DEFAULT_PORTS) -> list[IPAddress]:
        """Resolve and check the host of ``url`` (e.g. a media-stream ``wss://`` URL) before connecting to it.

        Returns the checked addresses: connect to one of them, not to the name again. Raises
        ``InvalidTargetUrl``, ``HostNotFound`` or ``TargetRefused``.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise InvalidTargetUrl(f"{url!r} is not a valid URL ({exc})") from exc
        scheme = parts.scheme.lower()
        if scheme not in set(schemes) or scheme not in DEFAULT_PORTS:
            raise InvalidTargetUrl(f"the URL scheme {scheme or '(none)'!r} is not allowed here")
        if not parts.hostname:
            raise InvalidTargetUrl(f"{url!r} names no host")
        return await self.resolve(parts.hostname, port or DEFAULT_PORTS[scheme])


def describe(ip: IPAddress, host: str | None, reason: str) -> str:
    """`localhost resolves to 127.0.0.1, a loopback address` or `10.0.0.5 is a private address`."""
    if host and _as_address(_normalize_host(host)) is None:
        return f"{host} resolves to {ip}, a {reason} address"
    return f"{ip} is a {reason} address"


def _normalize_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()
