"""A media node's own /metrics listener (`callplane media` has no API to mount it on): a sipp call to the real
engine moves the SIP response and RTP series, junk datagrams the malformed count, and the clock its ticks."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import numpy as np

from callplane.media.engine import CallEnded, IncomingCall
from callplane.media.g711 import PayloadType
from callplane.media.jitter import FRAME_SAMPLES, JitterBuffer
from callplane.media.sip import SippyCallEngine
from callplane.observability.endpoint import serve_metrics
from callplane.testing.sipp import (
    Sipp,
    engine_config,
    free_even_port_pair,
    free_udp_port,
    next_event,
    render_scenario,
    tone,
    write_rtp_pcap,
)
from tests.observability.conftest import Scrape, parse

TOKEN = "node-scrape-token"


def _free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _scrape(port: int, token: str = TOKEN) -> tuple[int, Scrape]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"})
    return response.status_code, parse(response.text) if response.status_code == 200 else Scrape()


def test_a_sipp_call_moves_sip_rtp_and_clock_series_on_the_nodes_listener(tmp_path: Path, media_cache: Path) -> None:
    async def scenario() -> None:
        port = _free_tcp_port()
        listener = await serve_metrics("127.0.0.1", port, (TOKEN,))
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        events = engine.subscribe()
        write_rtp_pcap(tmp_path / "tone.pcap", tone(700.0, 0.6), payload_type=PayloadType.PCMU)
        caller = Sipp(
            render_scenario("uac_early.xml", tmp_path, TONE_PCAP=str(tmp_path / "tone.pcap"), HOLD_MS="1000"),
            sip_port=free_udp_port(),
            media_port=free_even_port_pair(),
            extra=[f"127.0.0.1:{engine.config.sip_port}", "-s", "svc", "-m", "1", "-timeout", "20s"],
        )
        try:
            assert (await _scrape(port, "wrong"))[0] == 401
            status, before = await _scrape(port)
            assert status == 200
            await caller.start()
            incoming = await next_event(events, IncomingCall)
            await engine.pre_answer(incoming.call_id)
            channel = engine.channel(incoming.call_id)
            assert channel is not None
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
                junk.sendto(b"\x40" * 200, ("127.0.0.1", channel.local_port))  # not RTP version 2
            await engine.answer(incoming.call_id)
            await next_event(events, CallEnded)
            result = await caller.finished()
            assert result.returncode == 0, result.output
            # The jitter buffer of any call: a packet after its play-out time is a late drop.
            buffer = JitterBuffer()
            frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
            for index in range(4):
                buffer.push(ssrc=1, timestamp=index * FRAME_SAMPLES, samples=frame)
            for _ in range(3):
                buffer.pop()
            buffer.push(ssrc=1, timestamp=0, samples=frame)
            _, after = await _scrape(port)
        finally:
            caller.kill()
            await engine.stop()
            listener.close()

        def moved(name: str, **labels: str) -> float:
            return after.value(name, **labels) - before.value(name, **labels)

        # the engine answered 183 (early media) then 200, and received the 200 to its BYE... or sent one to sipp's
        assert moved("callplane_sip_responses_total", direction="sent", code="183") == 1
        assert moved("callplane_sip_responses_total", direction="sent", code="200") >= 1
        assert moved("callplane_rtp_packets_total", direction="received") > 10  # sipp's 0.6 s tone
        assert moved("callplane_rtp_packets_total", direction="sent") > 10  # our side of the call
        assert moved("callplane_rtp_packets_total", direction="malformed") == 1
        assert moved("callplane_media_ticks_total") > 25  # more than half a second of 20 ms ticks
        assert moved("callplane_jitter_buffer_drops_total", reason="late") == 1

    asyncio.run(scenario())
