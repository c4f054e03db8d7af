"""A mix (conference room) on the wire: three sipp callees, each streaming its own tone, in one mix of the real
engine. What each sipp leg *received* is captured on the loopback interface (an AF_PACKET socket: the RTP
datagrams the kernel delivered to sipp's media port) and checked by FFT, phase by phase: each leg hears the other
two tones and never its own; a muted leg's tone leaves the others; a deaf leg hears nothing; a prompt played to
the mix reaches every leg; a member's own playback reaches that member only. The mixed recording holds all three
tones, each member's file its own tone only.

Needs root (sipp's play_pcap_audio and the capture socket), as every sipp media test does."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from callplane.media.audio import read_wav
from callplane.media.engine import (
    CallAnswered,
    CallEnded,
    MixRecordingFinished,
    OutboundCall,
    PlaybackFinished,
    SipTrunk,
    ToneSource,
)
from callplane.media.g711 import Pcm
from callplane.media.sip import SippyCallEngine
from callplane.testing.sipp import (
    LoopbackCapture,
    Sipp,
    engine_config,
    free_even_port_pair,
    free_udp_port,
    next_event,
    render_scenario,
    rms,
    share,
    tone,
    write_rtp_pcap,
)

TONES = {"a": 600.0, "b": 1000.0, "c": 1500.0}  # no second-order product of two lands on the third
PROMPT_HZ = 2300.0
OWN_HZ = 2600.0  # c's own playback while in the mix: c alone hears it


def test_three_legs_in_a_mix_hear_each_other_not_themselves_with_mute_deaf_prompt_and_recordings(
    tmp_path: Path, media_cache: Path
) -> None:
    asyncio.run(_run(tmp_path, media_cache))


async def _run(tmp_path: Path, media_cache: Path) -> None:
    engine = SippyCallEngine(engine_config(media_cache))
    await engine.start()
    events = engine.subscribe()
    sipps: dict[str, Sipp] = {}
    capture: LoopbackCapture | None = None
    try:
        for name, frequency in TONES.items():
            directory = tmp_path / name
            directory.mkdir()
            pcap = directory / "tone.pcap"
            write_rtp_pcap(pcap, tone(frequency, 30.0))
            scenario = render_scenario(
                "uas_mix_tone.xml", directory, TONE_PCAP=str(pcap), RING_MS="100", BYE_TIMEOUT_MS="60000"
            )
            sipps[name] = Sipp(
                scenario,
                sip_port=free_udp_port(),
                media_port=free_even_port_pair(),
                extra=["-m", "1", "-timeout", "90s"],
            )
            await sipps[name].start()
        capture = LoopbackCapture({sipp.media_port for sipp in sipps.values()})
        capture.start()
        legs: dict[str, str] = {}
        for name, sipp in sipps.items():
            legs[name] = await engine.dial(OutboundCall(to_user=name, trunk=SipTrunk("127.0.0.1", sipp.sip_port)))
        assert {(await next_event(events, CallAnswered)).call_id for _ in legs} == set(legs.values())

        await engine.create_mix("room")
        recording_started = time.monotonic()
        await engine.start_mix_recording("room", tmp_path / "room.wav", member_dir=tmp_path / "members")
        for call_id in legs.values():
            await engine.join_mix("room", call_id)

        async def phase(seconds: float = 1.2) -> tuple[float, float]:
            """The stretch of a phase to analyse: its first 300 ms (jitter buffers, in flight) left out."""
            started = time.monotonic()
            await asyncio.sleep(seconds)
            return started + 0.3, time.monotonic()

        everyone = await phase(1.5)
        await engine.update_mix_member(legs["a"], muted=True)
        a_muted = await phase()
        await engine.update_mix_member(legs["a"], muted=False)
        await engine.update_mix_member(legs["b"], deaf=True)
        b_deaf = await phase()
        await engine.update_mix_member(legs["b"], deaf=False)
        playback_id = await engine.play_to_mix("room", ToneSource((PROMPT_HZ,), 1000, 0), loop_count=30)
        prompted = await phase()
        await engine.stop_mix_playback("room")
        stopped = await next_event(events, PlaybackFinished)
        assert (stopped.call_id, stopped.playback_id, stopped.completed) == ("room", playback_id, False)
        own = await engine.play(legs["c"], ToneSource((OWN_HZ,), 1000, 0), loop_count=30)
        c_plays = await phase()
        await engine.stop_playback(legs["c"])
        finished = await next_event(events, PlaybackFinished)
        assert (finished.call_id, finished.playback_id, finished.completed) == (legs["c"], own, False)
        recorded = await engine.stop_mix_recording("room")
        await engine.destroy_mix("room")
        for call_id in legs.values():
            await engine.hangup(call_id)
        assert {(await next_event(events, CallEnded)).call_id for _ in legs} == set(legs.values())
        capture.stop()
        for sipp in sipps.values():
            result = await sipp.finished(30)
            assert result.returncode == 0, result.output
    finally:
        if capture is not None:
            capture.stop()
        for sipp in sipps.values():
            sipp.kill()
        await engine.stop()

    def heard(name: str, window: tuple[float, float]) -> Pcm:
        return capture.audio(sipps[name].media_port, *window)

    others = {name: [TONES[other] for other in TONES if other != name] for name in TONES}
    for name, frequency in TONES.items():  # everyone talks: each hears the two others, never itself
        received = heard(name, everyone)
        assert all(share(received, other) > 0.25 for other in others[name]), (name, received)
        assert share(received, frequency) < 0.01, name
    for name in ("b", "c"):  # a muted: b and c hear only each other
        received = heard(name, a_muted)
        assert share(received, TONES["a"]) < 0.01, name
        assert share(received, TONES["c" if name == "b" else "b"]) > 0.8, name
    assert share(heard("a", a_muted), TONES["b"]) > 0.25 and share(heard("a", a_muted), TONES["c"]) > 0.25
    assert rms(heard("b", b_deaf)) < 30  # b deaf: silence (G.711's zero decodes to +-8)
    for name in ("a", "c"):  # ... while the others still hear b
        assert share(heard(name, b_deaf), TONES["b"]) > 0.25, name
    for name in TONES:  # the prompt reaches every leg, over the others' voices
        received = heard(name, prompted)
        assert share(received, PROMPT_HZ) > 0.1, name
        assert all(share(received, other) > 0.1 for other in others[name]), name

    assert share(heard("c", c_plays), OWN_HZ) > 0.1  # c's own playback, over the room
    assert share(heard("c", c_plays), TONES["a"]) > 0.1 and share(heard("c", c_plays), TONES["b"]) > 0.1
    for name in ("a", "b"):  # ... heard by c alone
        assert share(heard(name, c_plays), OWN_HZ) < 0.01, name

    assert recorded is not None and isinstance(recorded, MixRecordingFinished)
    room, channels = read_wav(recorded.path)
    assert channels == 1 and len(room) == 8 * recorded.duration_ms

    def recorded_in(samples: Pcm, window: tuple[float, float]) -> Pcm:
        """A phase of a recording (the recording started on the tick after `recording_started`)."""
        start, end = window
        return samples[int((start - recording_started) * 8000) : int((end - recording_started - 0.1) * 8000)]

    assert all(share(recorded_in(room, everyone), frequency) > 0.2 for frequency in TONES.values())
    assert share(recorded_in(room, a_muted), TONES["a"]) < 0.01
    assert share(recorded_in(room, prompted), PROMPT_HZ) > 0.1
    assert share(recorded_in(room, c_plays), OWN_HZ) < 0.01  # a member's own playback is not the room's
    assert set(recorded.member_paths) == set(legs.values())
    for name, frequency in TONES.items():
        track, _ = read_wav(recorded.member_paths[legs[name]])
        assert len(track) == len(room)
        assert share(track, frequency) > 0.9, name  # its own voice only: no other leg, no prompt
        assert share(recorded_in(track, everyone), frequency) > 0.9, name
        assert all(share(track, other) < 0.01 for other in (*others[name], PROMPT_HZ)), name
    assert rms(recorded_in(read_wav(recorded.member_paths[legs["a"]])[0], a_muted)) == 0  # silence while muted
