"""The SIP layer's own defence against header injection (media/sip.py), whoever calls it: what the engine puts
on the wire, read from a raw UDP socket standing in for the far end, and what it refuses to send at all."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path

import pytest

from callplane.media.engine import CallStateConflict, OutboundCall, SipTrunk
from callplane.media.sip import SippyCallEngine
from callplane.testing.sipp import engine_config


def _far_end() -> socket.socket:
    far = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    far.bind(("127.0.0.1", 0))
    far.settimeout(5.0)
    return far


def test_the_invite_carries_an_escaped_display_name_and_the_x_header_once_pinned_to_the_checked_address(
    media_cache: Path,
) -> None:
    async def scenario() -> str:
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        far = _far_end()
        try:
            port = far.getsockname()[1]
            # The Request-URI names the host; the datagram goes to the address the target policy checked.
            trunk = SipTrunk(host="pbx.example.com", port=port, address="127.0.0.1")
            call = OutboundCall(
                to_user="bob", trunk=trunk, from_user="alice", from_display_name='Eve "the boss" \\ Ops',
                headers={"X-Campaign": "c-7"},
            )  # fmt: skip
            await engine.dial(call)
            data = await asyncio.to_thread(far.recv, 65535)
            return data.decode()
        finally:
            far.close()
            await engine.stop()

    invite = asyncio.run(scenario())
    head = invite.split("\r\n\r\n", 1)[0].split("\r\n")
    assert head[0].startswith("INVITE sip:bob@pbx.example.com") and head[0].endswith(" SIP/2.0")
    names = [line.split(":", 1)[0].lower() for line in head[1:]]
    for name in ("via", "from", "to", "call-id", "cseq", "contact", "max-forwards", "content-length"):
        assert names.count(name) == 1, (name, invite)
    [from_line] = [line for line in head if line.lower().startswith("from:")]
    assert from_line.startswith('From: "Eve \\"the boss\\" \\\\ Ops" <sip:alice@'), from_line
    assert "X-Campaign: c-7" in head


@pytest.mark.parametrize(
    "call",
    [
        OutboundCall(to_user="bob", trunk=SipTrunk(host="127.0.0.1"), from_display_name="Eve\r\nVia: SIP/2.0/UDP x"),
        OutboundCall(to_user="bob", trunk=SipTrunk(host="127.0.0.1"), from_display_name="Eve\nContact: <sip:x@y>"),
        OutboundCall(to_user="bob\r\nVia: SIP/2.0/UDP x", trunk=SipTrunk(host="127.0.0.1")),
        OutboundCall(to_user="bob", trunk=SipTrunk(host="127.0.0.1"), from_user="a\rb"),
        OutboundCall(to_user="bob", trunk=SipTrunk(host="127.0.0.1"), headers={"X-A": "1\r\nVia: x"}),
        OutboundCall(to_user="bob", trunk=SipTrunk(host="127.0.0.1"), headers={"X-A": "1\x00"}),
        OutboundCall(to_user="bob", trunk=SipTrunk(host="127.0.0.1"), headers={"X-A\r\nVia": "1"}),
    ],
    ids=["display-crlf", "display-lf", "to-user", "from-user", "header-value", "header-nul", "header-name"],
)
def test_control_characters_never_reach_the_wire(media_cache: Path, call: OutboundCall) -> None:
    async def scenario() -> None:
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        far = _far_end()
        try:
            trunk = SipTrunk(host=call.trunk.host, port=far.getsockname()[1])
            with pytest.raises(CallStateConflict):
                await engine.dial(dataclasses.replace(call, trunk=trunk))
            far.settimeout(1.0)
            with pytest.raises(TimeoutError):
                await asyncio.to_thread(far.recv, 65535)
        finally:
            far.close()
            await engine.stop()

    asyncio.run(scenario())
