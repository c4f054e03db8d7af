"""Inbound calls from sipp: the IVR path end to end, and what the caller can do to us."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from callplane.media.audio import CollectionEnd, read_wav
from callplane.media.engine import (
    CallAnswered,
    CallEnded,
    HangupInitiator,
    IncomingCall,
    PlaybackFinished,
    RecordingChannels,
    SpeechSource,
)
from callplane.media.sip import SippyCallEngine
from tests.media.sippkit import (
    SIPP_PCAPS,
    Sipp,
    best_correlation,
    dominant_frequency,
    engine_config,
    free_even_port_pair,
    free_udp_port,
    next_event,
    render_scenario,
    rms,
    tone,
    write_rtp_pcap,
)

PROMPT = SpeechSource("Welcome to call plane. Please enter your code, then press the pound key.")
CALLER_TONE_HZ = 700.0


def test_inbound_ivr_answers_speaks_collects_dtmf_records_and_hangs_up(tmp_path: Path, media_cache: Path) -> None:
    async def scenario() -> None:
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        events = engine.subscribe()
        write_rtp_pcap(tmp_path / "tone.pcap", tone(CALLER_TONE_HZ, 1.0))
        caller = Sipp(
            render_scenario(
                "uac_ivr.xml", tmp_path, TONE_PCAP=str(tmp_path / "tone.pcap"), TONE_MS="1300",
                PCAPS=str(SIPP_PCAPS), BYE_TIMEOUT_MS="10000",
            ),
            sip_port=free_udp_port(),
            media_port=free_even_port_pair(),
            extra=[f"127.0.0.1:{engine.config.sip_port}", "-s", "ivr", "-m", "1", "-timeout", "30s"],
        )  # fmt: skip
        try:
            await caller.start()
            incoming = await next_event(events, IncomingCall)
            assert isinstance(incoming, IncomingCall)
            assert incoming.to_user == "ivr"
            assert incoming.from_user == "sipp"
            assert incoming.from_display_name == "Sipp Caller"
            assert incoming.headers.get("x-customer-id") == "cust-42"
            call_id = incoming.call_id

            await engine.send_ringing(call_id)
            await asyncio.sleep(0.1)
            await engine.answer(call_id)
            await next_event(events, CallAnswered)
            recording = tmp_path / "call.wav"
            await engine.start_recording(call_id, recording, RecordingChannels.STEREO)
            await engine.play(call_id, PROMPT)
            collected = await engine.collect_dtmf(
                call_id, max_length=6, terminator="#", first_digit_timeout_s=10, inter_digit_timeout_s=5
            )
            assert collected.digits == "15"
            assert collected.ended_by is CollectionEnd.TERMINATOR
            await engine.hangup(call_id)
            ended = await next_event(events, CallEnded)
            assert isinstance(ended, CallEnded)
            assert ended.initiator is HangupInitiator.LOCAL and ended.answered
            finished = await next_event(events, PlaybackFinished)
            assert isinstance(finished, PlaybackFinished)

            result = await caller.finished()
            assert result.returncode == 0, result.output
            prompt = await engine.load(PROMPT)
        finally:
            caller.kill()
            await engine.stop()

        samples, channels = read_wav(recording)
        assert channels == 2
        heard, sent = samples[0::2], samples[1::2]
        # Left: the caller's tone, decoded from PCMA through the jitter buffer at the right pitch.
        loud = np.flatnonzero(np.abs(heard) > 2000)
        assert len(loud) > 0.6 * 8000, "the caller's one-second tone is missing from the recording"
        segment = heard[loud[0] : loud[0] + 4000]
        assert abs(dominant_frequency(segment) - CALLER_TONE_HZ) < 10
        # Right: what we sent is the synthesised prompt itself.
        assert rms(sent) > 300
        assert best_correlation(prompt[4000:12000], sent) > 0.95

    asyncio.run(scenario())
