"""Media streaming on the wire: the real engine, sipp legs streaming tones, and examples/media_stream_server.py on
loopback as the WebSocket server (sink, band-pass and stall modes).

- the preamble, then whole 20 ms frames of the configured rate (1920 bytes at 48 kHz), about 50 a second, holding
  the tone the caller sent (FFT);
- replaceMedia through the band-pass server: the bridged peer then hears the leg's tone without its low part;
- a server that stops reading: frames are dropped and counted, the clock and the call go on as before.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from callplane.media.engine import CallAnswered, CallEnded, OutboundCall, SipTrunk
from callplane.media.g711 import Pcm
from callplane.media.jitter import FRAME_SAMPLES
from callplane.media.sip import SippyCallEngine
from callplane.media.streaming import Downsampler, MediaStream, StreamEnd, StreamTarget, Upsampler
from callplane.observability.metrics import STREAMS
from callplane.testing.sipp import (
    Sipp,
    dominant_frequency,
    engine_config,
    free_even_port_pair,
    free_udp_port,
    next_event,
    render_scenario,
    tone,
    write_rtp_pcap,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "media_stream_server.py"


def example_server() -> ModuleType:
    name = "media_stream_server_example"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def share(samples: Pcm, frequency_hz: float, rate: int = 8000) -> float:
    """The part of the signal's energy within 25 Hz of a frequency."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples)))) ** 2
    frequencies = np.fft.rfftfreq(len(samples), 1 / rate)
    total = float(spectrum.sum())
    return 0.0 if total == 0 else float(spectrum[np.abs(frequencies - frequency_hz) < 25].sum() / total)


def peak(samples: Pcm, rate: int) -> float:
    """The frequency of the spectrum's peak."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


class _Heard:
    """A tap on a leg: what its far end is sent (the outbound direction), with when."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, Pcm]] = []

    def write(self, inbound: Pcm | None, outbound: Pcm | None) -> None:
        frame = np.zeros(FRAME_SAMPLES, dtype=np.int16) if outbound is None else outbound
        self.frames.append((time.monotonic(), frame))

    def between(self, start: float, end: float) -> Pcm:
        return np.concatenate([frame for at, frame in self.frames if start <= at < end])


def _callee_scenario(directory: Path, samples: Pcm) -> Path:
    directory.mkdir()
    pcap = directory / "tone.pcap"
    write_rtp_pcap(pcap, samples)
    return render_scenario("uas_mix_tone.xml", directory, TONE_PCAP=str(pcap), RING_MS="50", BYE_TIMEOUT_MS="60000")


def _run_legs(tmp_path: Path, media_cache: Path, tones: list[Pcm], body: object) -> None:
    """Dial one sipp callee per tone (each streams its tone once answered), run `body(engine, legs)`, hang up."""

    scenarios = [_callee_scenario(tmp_path / f"leg-{index}", samples) for index, samples in enumerate(tones)]

    async def main() -> None:
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        events = engine.subscribe()
        sipps: list[Sipp] = []
        try:
            for scenario in scenarios:
                extra = ["-m", "1", "-timeout", "90s"]
                sipps.append(Sipp(scenario, sip_port=free_udp_port(), media_port=free_even_port_pair(), extra=extra))
                await sipps[-1].start()
            await asyncio.sleep(0.2)  # sipp binds its ports
            legs = []
            for index, sipp in enumerate(sipps):
                trunk = SipTrunk("127.0.0.1", sipp.sip_port)
                legs.append(await engine.dial(OutboundCall(to_user=f"leg{index}", trunk=trunk)))
            assert {(await next_event(events, CallAnswered)).call_id for _ in legs} == set(legs)
            assert asyncio.iscoroutinefunction(body)
            await body(engine, legs)
            for call_id in legs:
                await engine.hangup(call_id)
            assert {(await next_event(events, CallEnded)).call_id for _ in legs} == set(legs)
            for sipp in sipps:
                result = await sipp.finished(30)
                assert result.returncode == 0, result.output
        finally:
            for sipp in sipps:
                sipp.kill()
            await engine.stop()

    asyncio.run(main())


# ---- resampling ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_resampling_up_and_back_keeps_a_tone_frame_by_frame(rate: int) -> None:
    up, down = Upsampler(rate), Downsampler(rate)
    source = tone(1000.0, 1.0)
    frames = [source[i : i + FRAME_SAMPLES] for i in range(0, len(source), FRAME_SAMPLES)]
    wide = [up(frame) for frame in frames]
    assert all(len(frame) == rate // 50 for frame in wide)
    widened = np.concatenate(wide)
    assert abs(peak(widened, rate) - 1000.0) < 5
    back = np.concatenate([down(frame) for frame in wide])
    assert len(back) == len(source)
    assert abs(dominant_frequency(back[800:]) - 1000.0) < 5
    level = float(np.sqrt(np.mean(back[800:].astype(np.float64) ** 2)))
    original = float(np.sqrt(np.mean(source.astype(np.float64) ** 2)))
    assert 0.8 < level / original < 1.2


# ---- on the wire ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [48000, 16000])
def test_the_preamble_then_whole_frames_at_the_rate_carrying_the_callers_tone(
    tmp_path: Path, media_cache: Path, rate: int
) -> None:
    module = example_server()

    async def body(engine: SippyCallEngine, legs: list[str]) -> None:
        async with module.MediaStreamServer("sink") as server:
            target = StreamTarget(server.url, call_id="call-1", sample_rate=rate, custom_data={"k": "v"})
            stream = MediaStream(target)
            tap_id = await engine.add_audio_tap(legs[0], stream)
            task = asyncio.create_task(stream.run())
            started = time.monotonic()
            await asyncio.sleep(2.5)
            stream.stop()
            assert await task is StreamEnd.STOPPED
            elapsed = time.monotonic() - started
            await engine.remove_audio_tap(legs[0], tap_id)
            await asyncio.sleep(0.2)
        (session,) = server.sessions
        assert session.preamble == {
            "callId": "call-1",
            "sampleRate": rate,
            "packetizationTime": 20,
            "customData": {"k": "v"},
        }
        frame_bytes = rate // 50 * 2
        assert frame_bytes == (1920 if rate == 48000 else 640)
        assert all(size % frame_bytes == 0 and size > 0 for size in session.message_sizes)
        frames = len(session.audio) // frame_bytes
        assert frames == stream.stats.frames_sent
        assert stream.stats.dropped_backpressure == 0
        assert 0.8 < frames / (elapsed / 0.02) < 1.1  # one frame per 20 ms tick
        assert session.message_sizes.count(frame_bytes) > 0.8 * len(session.message_sizes)  # coalesced only rarely
        received = session.samples()
        heard = received[rate // 2 :]  # past the jitter buffer's start
        assert abs(peak(heard, rate) - 1000.0) < 10

    _run_legs(tmp_path, media_cache, [tone(1000.0, 30.0)], body)


def test_replaced_media_through_the_band_pass_server_is_what_the_bridged_peer_hears(
    tmp_path: Path, media_cache: Path
) -> None:
    module = example_server()
    low, high = 120.0, 1000.0
    speaker = (tone(low, 30.0, 6000).astype(np.int32) + tone(high, 30.0, 6000)).astype(np.int16)
    heard = _Heard()

    async def body(engine: SippyCallEngine, legs: list[str]) -> None:
        a, b = legs
        await engine.bridge(a, b)
        await engine.add_audio_tap(b, heard)
        await asyncio.sleep(1.5)
        plain = (time.monotonic() - 1.0, time.monotonic())
        async with module.MediaStreamServer("bandpass") as server:
            stream = MediaStream(StreamTarget(server.url, call_id="a", sample_rate=48000, replace_media=True))
            await engine.add_audio_tap(a, stream)
            await engine.replace_inbound_audio(a, stream)
            task = asyncio.create_task(stream.run())
            await asyncio.sleep(2.5)
            filtered = (time.monotonic() - 1.5, time.monotonic())
            await engine.replace_inbound_audio(a, None)
            stream.stop()
            assert await task is StreamEnd.STOPPED
        assert stream.stats.frames_returned > 0 and stream.stats.replaced_ticks > 0
        before = heard.between(*plain)
        after = heard.between(*filtered)
        assert share(before, low) > 0.3 and share(before, high) > 0.3  # B heard A as it is
        assert share(after, high) > 0.8  # then what the band-pass server returned: 1 kHz kept ...
        assert share(after, low) < 0.1 * share(before, low)  # ... 120 Hz (below 300 Hz) removed

    _run_legs(tmp_path, media_cache, [speaker, tone(2500.0, 30.0)], body)


def test_a_server_that_stops_reading_costs_dropped_frames_not_the_clock(tmp_path: Path, media_cache: Path) -> None:
    module = example_server()

    async def body(engine: SippyCallEngine, legs: list[str]) -> None:
        channel = engine.channel(legs[0])
        assert channel is not None
        dropped_before = STREAMS.dropped_backpressure
        async with module.MediaStreamServer("stall") as server:
            stream = MediaStream(StreamTarget(server.url, call_id="a", sample_rate=48000))
            await engine.add_audio_tap(legs[0], stream)
            task = asyncio.create_task(stream.run())
            ticks, skipped, sent = (
                engine.clock.stats.ticks,
                engine.clock.stats.skipped_ticks,
                channel.stats.packets_sent,
            )
            started = time.monotonic()
            while stream.stats.dropped_backpressure < 50 and time.monotonic() - started < 30:  # noqa: ASYNC110
                await asyncio.sleep(0.25)
            elapsed = time.monotonic() - started
            ticked = engine.clock.stats.ticks - ticks
            packets = channel.stats.packets_sent - sent
            stream.stop()
            assert await task is StreamEnd.STOPPED  # stopping does not wait on the stalled server
        assert stream.stats.dropped_backpressure >= 50
        assert STREAMS.dropped_backpressure - dropped_before >= stream.stats.dropped_backpressure
        assert engine.clock.stats.skipped_ticks == skipped
        assert 0.9 < ticked / (elapsed / 0.02) < 1.1  # the clock kept its 20 ms
        assert packets >= ticked - 2  # and the call its packets
        assert engine.channel(legs[0]) is channel  # the call is up

    _run_legs(tmp_path, media_cache, [tone(1000.0, 60.0)], body)
