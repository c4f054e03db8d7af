"""What an application may put on an outbound INVITE (core/voice/outbound.py): SIP targets under the outbound
target policy, custom headers, display names and URI parts checked before anything is sent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from callplane.core.recordings.errors import HostNotFound, InvalidTargetUrl, TargetRefused
from callplane.core.recordings.targets import TargetPolicy
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.voice import trunks
from callplane.core.voice.outbound import (
    FORBIDDEN_HEADERS,
    InvalidSipValue,
    SipTargetRefused,
    check_host_port,
    check_sip_values,
    checked_addresses,
    custom_header_problems,
    split_host_port,
)
from callplane.core.voice.trunk_models import SipTrunk, TrunkKind, TrunkRegistrationStatus
from callplane.live import registrar as registrar_module
from callplane.live.nodes import detached_engine
from callplane.live.registrar import pinned_peer
from callplane.media.engine import SipTrunk as SipPeer
from tests.voice.support import database

BOX = SecretBox("0" * 43 + "=")
STRICT = TargetPolicy()
LOOPBACK = TargetPolicy.from_config(["127.0.0.1/32"])

# Every spelling of a loopback, unspecified, private or link-local target, and the reason the refusal names.
REFUSED_HOSTS = [
    ("127.0.0.1", "127.0.0.1 is a loopback address"),
    ("localhost", "localhost resolves to"),
    ("2130706433", "2130706433 resolves to 127.0.0.1, a loopback"),  # decimal
    ("0x7f.1", "0x7f.1 resolves to 127.0.0.1, a loopback"),  # hex, short form
    ("127.1", "127.1 resolves to 127.0.0.1, a loopback"),  # short form
    ("0177.0.0.1", "resolves to 127.0.0.1, a loopback"),  # octal
    ("0.0.0.0", "0.0.0.0 is a unspecified address"),
    ("0", "resolves to 0.0.0.0, a unspecified"),
    ("::1", "::1 is a loopback address"),
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:10.0.0.1", "IPv4-mapped private"),
    ("fe80::1", "link-local"),
    ("10.0.0.1", "10.0.0.1 is a private address"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "169.254.169.254 is a link-local address"),
    ("100.64.0.1", "shared (carrier-grade NAT)"),
    ("224.0.0.1", "multicast"),
    ("240.0.0.1", "private"),
]


@pytest.mark.parametrize(("host", "reason"), REFUSED_HOSTS)
def test_non_public_sip_targets_are_refused_in_every_spelling(host: str, reason: str) -> None:
    with pytest.raises(SipTargetRefused) as caught:
        asyncio.run(checked_addresses(STRICT, host, 5060, what=f"SIP host {host}"))
    message = caught.value.message
    assert message.startswith(f"refusing to call SIP host {host}: ")
    assert reason in message
    assert "CALLPLANE_FETCH_ALLOWED_NETWORKS" in message  # what an operator would allow-list, if intended


def test_allow_listed_loopback_is_admitted_and_the_invite_is_pinned_to_the_checked_address() -> None:
    for host in ("127.0.0.1", "2130706433", "0x7f.1", "127.1"):
        peer = asyncio.run(pinned_peer(LOOPBACK, SipPeer(host=host, port=5070), what="t"))
        assert (peer.host, peer.port, peer.address) == (host, 5070, "127.0.0.1")  # the Request-URI keeps the name
    mapped = asyncio.run(
        pinned_peer(TargetPolicy.from_config(["::ffff:127.0.0.1/128"]), SipPeer(host="::ffff:127.0.0.1"), what="t")
    )
    assert mapped.address == "127.0.0.1"
    # allow-listing one loopback address lifts the rule for it only
    with pytest.raises(SipTargetRefused, match=r"127\.0\.0\.2 is a loopback"):
        asyncio.run(pinned_peer(LOOPBACK, SipPeer(host="127.0.0.2"), what="t"))
    # an allow-listed host name lifts it for that name
    named = TargetPolicy.from_config(hosts=["localhost"])
    assert asyncio.run(pinned_peer(named, SipPeer(host="localhost"), what="t")).address == "127.0.0.1"
    # unspecified is never a target, allow-listed or not
    with pytest.raises(SipTargetRefused, match="unspecified"):
        asyncio.run(pinned_peer(TargetPolicy.from_config(["0.0.0.0/0"]), SipPeer(host="0.0.0.0"), what="t"))


def test_public_targets_pass_and_unknown_names_are_clear_errors_at_dial_time_only() -> None:
    assert asyncio.run(pinned_peer(STRICT, SipPeer(host="8.8.8.8"), what="t")).address == "8.8.8.8"
    with pytest.raises(InvalidSipValue, match="does not resolve"):
        asyncio.run(pinned_peer(STRICT, SipPeer(host="no-such-pbx.invalid"), what="t"))
    # at request time a stored name that does not resolve yet is accepted: the dial-time check decides
    asyncio.run(check_host_port(STRICT, "no-such-pbx.invalid:5062", what="t"))
    with pytest.raises(SipTargetRefused):
        asyncio.run(check_host_port(STRICT, "2130706433:5062", what="t"))


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1:5070", ("127.0.0.1", 5070)),
        ("pbx.example.com", ("pbx.example.com", 5060)),
        ("pbx.example.com.:5080", ("pbx.example.com.", 5080)),
        ("[::1]:5062", ("::1", 5062)),
        ("::1", ("::1", 5060)),
        ("0x7f.1", ("0x7f.1", 5060)),
    ],
)
def test_host_port_parsing(text: str, parsed: tuple[str, int]) -> None:
    assert split_host_port(text) == parsed


@pytest.mark.parametrize(
    "text", ["", "a b", "pbx\r\nVia: SIP/2.0/UDP evil", "h:0", "h:65536", "h:x", "[::1]x", "-x.com", "h:", "a@b"]
)
def test_malformed_hosts_are_refused(text: str) -> None:
    with pytest.raises(InvalidSipValue):
        split_host_port(text)


@pytest.mark.parametrize("name", sorted(FORBIDDEN_HEADERS | {"VIA", "Call-Id", "m", "v", "i"}))
def test_headers_the_stack_owns_or_that_route_authenticate_or_assert_identity_are_refused(name: str) -> None:
    problems = custom_header_problems({name: "x"})
    assert len(problems) == 1 and "may not be given" in problems[0]


def test_custom_header_names_follow_the_token_grammar_and_values_hold_no_control_characters() -> None:
    assert custom_header_problems({"X-Campaign": "campaign-7", "X-Tab": "a\tb", "X-Utf8": "Zoë"}) == []
    assert custom_header_problems({"P-Charging-Vector": "icid-value=1"}) == []  # extension headers pass
    for name in ("X Bad", "X-Bad:", "X-\u00e9", "", "X-Bad\r\nVia", "X(1)", "X-Bad\x00"):
        assert "not a SIP token" in custom_header_problems({name: "v"})[0], name
    for value in ("a\r\nContact: <sip:evil@10.0.0.1>", "a\nb", "a\rb", "a\x00b", "a\x7fb", "a\x1bb", "a\x85b"):
        assert "control character" in custom_header_problems({"X-Ok": value})[0], value
    assert "given twice" in custom_header_problems({"X-A": "1", "x-a": "2"})[0]
    assert custom_header_problems({f"X-{i}": "v" for i in range(21)})[0] == "at most 20 custom headers"
    assert "longer than" in custom_header_problems({"X-Long": "v" * 513})[0]


def test_display_names_and_uri_users_are_checked_together() -> None:
    check_sip_values(headers={}, display_name='Eve "the boss" \\ Zoë', users=("bob", "+4930123", "a.b_c-d%20"))
    with pytest.raises(InvalidSipValue) as caught:
        check_sip_values(
            headers={"Via": "SIP/2.0/UDP 10.0.0.1"},
            display_name="Eve\r\nContact: <sip:evil@10.0.0.1>",
            users=("bob\r\nX-Evil: 1", "a@b", "c d"),
        )
    problems = caught.value.problems
    assert len(problems) == 5
    assert "display name holds the control character '\\r'" in problems[1]
    assert all("is not a SIP user" in problem for problem in problems[2:])


def test_url_targets_for_media_streams_and_webhooks_share_the_policy() -> None:
    with pytest.raises(TargetRefused, match="loopback"):
        asyncio.run(STRICT.check_url("wss://localhost/stream"))
    with pytest.raises(TargetRefused, match=r"2130706433 resolves to 127\.0\.0\.1"):
        asyncio.run(STRICT.check_url("ws://2130706433:8080/stream"))
    with pytest.raises(TargetRefused, match="link-local"):
        asyncio.run(STRICT.check_url("https://169.254.169.254/latest/meta-data"))
    assert [str(a) for a in asyncio.run(LOOPBACK.check_url("ws://127.0.0.1:8080/x", schemes=("ws", "wss")))] == [
        "127.0.0.1"
    ]
    for url in ("ftp://example.com/x", "wss:///nohost", "ws://[::1/x", "javascript:alert(1)"):
        with pytest.raises(InvalidTargetUrl):
            asyncio.run(STRICT.check_url(url, schemes=("ws", "wss")))
    with pytest.raises(InvalidTargetUrl):
        asyncio.run(STRICT.check_url("http://8.8.8.8/", schemes=("ws", "wss")))  # not a scheme allowed here
    with pytest.raises(HostNotFound):
        asyncio.run(STRICT.check_url("wss://no-such-stream.invalid/x"))


def test_a_registered_trunk_whose_registrar_is_refused_is_not_registered(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with database(tmp_path) as (sessions, account_id):
            ids = []
            async with sessions() as session, session.begin():
                for host in ("10.0.0.1", "0x7f.2"):  # stored before the policy, or a name that resolves there now
                    spec = trunks.TrunkSpec(
                        name=host, kind=TrunkKind.REGISTERED, host=host, channel_limit=1, username="u", password="p"
                    )
                    trunk = await trunks.create_trunk(session=session, account_id=account_id, spec=spec, secret_box=BOX)
                    ids.append(trunk.id)
            # the detached engine refuses every command: a REGISTER attempt would fail this reconcile
            registrar = registrar_module.TrunkRegistrar(
                engine=detached_engine(), sessions=sessions, secret_box=BOX, policy=LOOPBACK
            )
            await registrar.reconcile()
            await registrar.reconcile()  # a later reconcile sends nothing either
            async with sessions() as session:
                found = {t.host: t for t in await session.scalars(select(SipTrunk).where(SipTrunk.id.in_(ids)))}
            assert found["10.0.0.1"].registration_status == TrunkRegistrationStatus.UNREGISTERED
            assert "10.0.0.1 is a private address" in (found["10.0.0.1"].registration_detail or "")
            assert "0x7f.2 resolves to 127.0.0.2, a loopback" in (found["0x7f.2"].registration_detail or "")

    asyncio.run(scenario())
