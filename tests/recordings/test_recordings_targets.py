"""SSRF address rules: which resolved addresses a fetch may connect to."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callplane.core.recordings.errors import HostNotFound, TargetRefused
from callplane.core.recordings.targets import TargetPolicy, forbidden_reason

REFUSED = [
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "private"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("100.64.0.1", "shared"),
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.0.0.9", "IETF"),
    ("192.0.2.1", "private"),  # TEST-NET-1
    ("192.168.1.1", "private"),
    ("198.18.0.1", "private"),  # benchmarking
    ("198.51.100.7", "private"),
    ("203.0.113.7", "private"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "private"),  # Python files 240/4 under private
    ("255.255.255.255", "private"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fe80::1", "link-local"),
    ("fec0::1", "site-local"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("2001:db8::1", "private"),  # documentation
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:10.1.2.3", "IPv4-mapped private"),
    ("::ffff:169.254.169.254", "IPv4-mapped link-local"),
    ("::ffff:0.0.0.0", "IPv4-mapped unspecified"),
    ("64:ff9b::7f00:1", "NAT64-embedded loopback"),
    ("64:ff9b::a9fe:a9fe", "NAT64-embedded link-local"),
    ("64:ff9b:1::1", "local-use NAT64"),
    ("2002:7f00:1::", "6to4-embedded loopback"),
    ("2002:c0a8:101::", "6to4-embedded private"),
    ("::7f00:1", "reserved"),  # deprecated IPv4-compatible
    ("100::1", "private"),  # discard-only
]

ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "52.95.110.1", "2606:4700::1111", "2a00:1450:4001::200e",
           "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::"]  # fmt: skip


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_non_public_addresses_are_refused_with_their_reason(address: str, reason: str) -> None:
    found = forbidden_reason(ipaddress.ip_address(address))
    assert found is not None and reason in found
    with pytest.raises(TargetRefused) as caught:
        TargetPolicy().check(ipaddress.ip_address(address))
    assert caught.value.permanent
    assert "allow-list" in caught.value.message


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None
    TargetPolicy().check(ipaddress.ip_address(address))


def test_allow_list_admits_its_network_only() -> None:
    policy = TargetPolicy.from_config(["127.0.0.1", "10.20.0.0/16"])
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None  # same host, mapped
    assert policy.refusal(ipaddress.ip_address("10.20.30.40")) is None
    assert policy.refusal(ipaddress.ip_address("127.0.0.2")) == "loopback"
    assert policy.refusal(ipaddress.ip_address("10.21.0.1")) == "private"
    assert policy.refusal(ipaddress.ip_address("::1")) == "loopback"


def test_allow_list_never_admits_unspecified_or_multicast() -> None:
    policy = TargetPolicy.from_config(["0.0.0.0/0", "::/0"], hosts=["anything.example"])
    assert policy.refusal(ipaddress.ip_address("0.0.0.0")) == "unspecified"
    assert policy.refusal(ipaddress.ip_address("::")) == "unspecified"
    assert policy.refusal(ipaddress.ip_address("224.0.0.251"), "anything.example") == "multicast"


def test_allowed_host_lifts_the_rule_for_that_name_only() -> None:
    policy = TargetPolicy.from_config(hosts=["Recordings.Internal."])
    assert policy.refusal(ipaddress.ip_address("10.0.0.5"), "recordings.internal") is None
    assert policy.refusal(ipaddress.ip_address("10.0.0.5"), "other.internal") == "private"


def test_resolution_checks_every_address_of_a_name() -> None:
    with pytest.raises(TargetRefused, match=r"localhost resolves to (127\.0\.0\.1|::1)"):
        asyncio.run(TargetPolicy().resolve("localhost", 80))
    # a numeric host name in another notation still resolves, and is still checked
    with pytest.raises(TargetRefused, match="loopback"):
        asyncio.run(TargetPolicy().resolve("2130706433", 80))
    assert asyncio.run(TargetPolicy.from_config(["127.0.0.0/8", "::1"]).resolve("localhost", 80))


def test_unknown_host_is_a_clear_error() -> None:
    with pytest.raises(HostNotFound, match="does not resolve"):
        asyncio.run(TargetPolicy().resolve("no-such-host.invalid", 80))


_PRIVATE_V4 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10",
               "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4"]  # fmt: skip
_PRIVATE_V6 = ["fc00::/7", "fe80::/10", "ff00::/8", "::1/128", "fec0::/10"]


@given(st.sampled_from(_PRIVATE_V4 + _PRIVATE_V6).flatmap(lambda net: st.ip_addresses(network=net)))
def test_every_address_in_a_non_public_range_is_refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert forbidden_reason(ip) is not None


@given(st.ip_addresses(v=4))
def test_ipv4_embedded_in_ipv6_gets_the_same_verdict(ip: ipaddress.IPv4Address) -> None:
    verdict = forbidden_reason(ip) is None
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(ip))
    assert (forbidden_reason(mapped) is None) == verdict
    assert (forbidden_reason(nat64) is None) == verdict


@given(st.ip_addresses(network="10.20.0.0/16"))
def test_every_address_in_an_allowed_network_is_admitted(ip: ipaddress.IPv4Address) -> None:
    assert TargetPolicy.from_config(["10.20.0.0/16"]).refusal(ip) is None
