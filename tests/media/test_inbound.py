"""Inbound calls from sipp: the IVR path end to end, and what the caller can do to us."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import numpy as np
import pytest

from callplane.media.audio import CollectionEnd, read_wav
from callplane.media.engine import (
    CallAnswered,
    CallEnded,
    HangupInitiator,
    IncomingCall,
    PlaybackFinished,
    RecordingChannels,
    SipReasonHeader,
    SpeechSource,
)
from callplane.media.g711 import PayloadType
from callplane.media.sip import SippyCallEngine
from callplane.testing.sipp import (
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
    wait_until,
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


def _caller(scenario: Path, engine: SippyCallEngine, *extra: str) -> Sipp:
    return Sipp(
        scenario,
        sip_port=free_udp_port(),
        media_port=free_even_port_pair(),
        extra=[f"127.0.0.1:{engine.config.sip_port}", "-s", "svc", "-m", "1", "-timeout", "20s", *extra],
    )


@pytest.mark.parametrize(("status", "cause"), [(486, 17), (603, 21), (404, 1)])
def test_reject_sends_the_chosen_status_reason_and_headers(
    tmp_path: Path, media_cache: Path, status: int, cause: int
) -> None:
    async def scenario() -> None:
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        events = engine.subscribe()
        caller = _caller(render_scenario("uac_reject.xml", tmp_path, STATUS=str(status), CAUSE=str(cause)), engine)
        try:
            await caller.start()
            incoming = await next_event(events, IncomingCall)
            await engine.reject(
                incoming.call_id,
                status=status,
                reason=SipReasonHeader("Q.850", cause, "rejected by test"),
                headers={"X-Reject-Rule": "blocked-by-rule"},
            )
            ended = await next_event(events, CallEnded)
            assert isinstance(ended, CallEnded)
            assert (ended.sip_status, ended.initiator, ended.answered) == (status, HangupInitiator.LOCAL, False)
            result = await caller.finished()
            assert result.returncode == 0, result.output
        finally:
            caller.kill()
            await engine.stop()

    asyncio.run(scenario())


def test_caller_cancel_while_ringing_is_reported_as_487_with_their_reason(tmp_path: Path, media_cache: Path) -> None:
    async def scenario() -> None:
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        events = engine.subscribe()
        caller = _caller(render_scenario("uac_cancel.xml", tmp_path), engine)
        try:
            await caller.start()
            incoming = await next_event(events, IncomingCall)
            await engine.send_ringing(incoming.call_id)
            ended = await next_event(events, CallEnded)
            assert isinstance(ended, CallEnded)
            assert ended.initiator is HangupInitiator.REMOTE
            assert (ended.sip_status, ended.answered) == (487, False)
            assert ended.reason == SipReasonHeader("Q.850", 16, "caller gave up")
            result = await caller.finished()
            assert result.returncode == 0, result.output
        finally:
            caller.kill()
            await engine.stop()

    asyncio.run(scenario())


def test_early_media_then_answer_and_the_callers_bye_reason(tmp_path: Path, media_cache: Path) -> None:
    """183 with SDP first (our tone flows before the answer), then 200; the caller hangs up with a Reason."""

    async def scenario() -> None:
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        events = engine.subscribe()
        write_rtp_pcap(tmp_path / "tone.pcap", tone(CALLER_TONE_HZ, 0.6), payload_type=PayloadType.PCMU)
        caller = _caller(
            render_scenario("uac_early.xml", tmp_path, TONE_PCAP=str(tmp_path / "tone.pcap"), HOLD_MS="1000"), engine
        )
        try:
            await caller.start()
            incoming = await next_event(events, IncomingCall)
            call_id = incoming.call_id
            await engine.pre_answer(call_id)
            recording = tmp_path / "early.wav"
            await engine.start_recording(call_id, recording, RecordingChannels.MONO)
            await asyncio.sleep(0.4)
            await engine.answer(call_id)
            ended = await next_event(events, CallEnded)
            assert isinstance(ended, CallEnded)
            assert ended.initiator is HangupInitiator.REMOTE and ended.answered
            assert ended.reason == SipReasonHeader("Q.850", 31, "sipp side hangup")
            result = await caller.finished()
            assert result.returncode == 0, result.output
        finally:
            caller.kill()
            await engine.stop()
        samples, channels = read_wav(recording)
        assert channels == 1
        loud = np.flatnonzero(np.abs(samples) > 2000)
        assert len(loud) > 0.3 * 8000
        assert abs(dominant_frequency(samples[loud[0] : loud[0] + 2400]) - CALLER_TONE_HZ) < 10

    asyncio.run(scenario())


GARBAGE_SDP = """      this is not a session description
      m=audio banana RTP/AVP x"""
NO_COMMON_CODEC_SDP = """      v=0
      o=user1 1 1 IN IP4 127.0.0.1
      s=-
      c=IN IP4 127.0.0.1
      t=0 0
      m=audio [media_port] RTP/AVP 18
      a=rtpmap:18 G729/8000"""


def test_garbage_datagrams_and_broken_offers_are_refused_and_the_engine_carries_on(
    tmp_path: Path, media_cache: Path
) -> None:
    async def scenario() -> None:
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        events = engine.subscribe()
        try:
            sip_address = ("127.0.0.1", engine.config.sip_port)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
                for junk in GARBAGE_DATAGRAMS:
                    attacker.sendto(junk, sip_address)
            for index, body in enumerate((GARBAGE_SDP, NO_COMMON_CODEC_SDP)):
                directory = tmp_path / f"offer{index}"
                directory.mkdir()
                caller = _caller(render_scenario("uac_bad_offer.xml", directory, BODY=body), engine)
                await caller.start()
                result = await caller.finished()
                assert result.returncode == 0, result.output
            assert engine.rejected_offers == 2
            assert engine.live_call_ids() == []

            # Still healthy: a good call is answered, and garbage on its RTP port is counted and dropped.
            write_rtp_pcap(tmp_path / "tone.pcap", tone(CALLER_TONE_HZ, 0.4), payload_type=PayloadType.PCMU)
            good = tmp_path / "good"
            good.mkdir()
            caller = _caller(
                render_scenario("uac_early.xml", good, TONE_PCAP=str(tmp_path / "tone.pcap"), HOLD_MS="800"), engine
            )
            await caller.start()
            incoming = await next_event(events, IncomingCall)
            await engine.pre_answer(incoming.call_id)
            channel = engine.channel(incoming.call_id)
            assert channel is not None
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
                for junk in (b"", b"\x00", b"\xff" * 11, b"\x40" * 200, b"\x80\x08" + b"\x00" * 9):
                    attacker.sendto(junk, ("127.0.0.1", channel.local_port))
            await engine.answer(incoming.call_id)
            ended = await next_event(events, CallEnded)
            assert isinstance(ended, CallEnded) and ended.answered
            assert channel.stats.malformed_datagrams >= 4
            assert channel.stats.packets_received > 10
            result = await caller.finished()
            assert result.returncode == 0, result.output
        finally:
            await engine.stop()

    asyncio.run(scenario())


GARBAGE_DATAGRAMS = [
    b"\x00" * 64,
    bytes(range(256)),
    b"\xff\xfe" * 40,  # not UTF-8
    b"INVITE  SIP/2.0\r\n\r\n" + b" " * 40,
    b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: garbage\r\nCSeq: banana\r\nFrom: <>\r\n\r\n",
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\nCSeq: 1 INVITE\r\n\r\n",
    b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n" * 3,
]


def test_hold_reinvite_is_answered_recvonly_and_we_stop_sending(tmp_path: Path, media_cache: Path) -> None:
    async def scenario() -> None:
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        events = engine.subscribe()
        caller = _caller(render_scenario("uac_hold.xml", tmp_path, HOLD_MS="600"), engine)
        try:
            await caller.start()
            incoming = await next_event(events, IncomingCall)
            await engine.answer(incoming.call_id)
            channel = engine.channel(incoming.call_id)
            assert channel is not None
            await wait_until(lambda: channel.negotiated is not None and channel.negotiated.direction == "sendonly")
            sent_when_held = channel.stats.packets_sent
            await asyncio.sleep(0.3)
            assert channel.stats.packets_sent == sent_when_held  # on hold: the caller only sends
            ended = await next_event(events, CallEnded)
            assert ended.initiator is HangupInitiator.REMOTE and ended.answered
            result = await caller.finished()
            assert result.returncode == 0, result.output
        finally:
            caller.kill()
            await engine.stop()

    asyncio.run(scenario())


class _ExplodingSource:
    """A media source with a bug: it raises on its third frame."""

    def __init__(self) -> None:
        self.frames = 0

    def read_frame(self) -> np.ndarray:
        self.frames += 1
        if self.frames == 3:
            raise RuntimeError("bug in a media source")
        return np.zeros(160, dtype=np.int16)


def test_a_failing_call_is_ended_alone_and_the_other_call_carries_on(tmp_path: Path, media_cache: Path) -> None:
    async def scenario() -> None:
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        events = engine.subscribe()
        write_rtp_pcap(tmp_path / "tone.pcap", tone(CALLER_TONE_HZ, 1.0), payload_type=PayloadType.PCMU)
        doomed_dir, healthy_dir = tmp_path / "doomed", tmp_path / "healthy"
        doomed_dir.mkdir()
        healthy_dir.mkdir()
        doomed = _caller(render_scenario("uac_wait_bye.xml", doomed_dir, CAUSE="41"), engine)
        healthy = _caller(
            render_scenario("uac_early.xml", healthy_dir, TONE_PCAP=str(tmp_path / "tone.pcap"), HOLD_MS="1500"),
            engine,
        )
        try:
            await doomed.start()
            doomed_call = await next_event(events, IncomingCall)
            await engine.answer(doomed_call.call_id)
            await healthy.start()
            healthy_call = await next_event(events, IncomingCall)
            await engine.pre_answer(healthy_call.call_id)
            await engine.answer(healthy_call.call_id)
            recording = tmp_path / "healthy.wav"
            await engine.start_recording(healthy_call.call_id, recording)

            channel = engine.channel(doomed_call.call_id)
            assert channel is not None
            channel.play(_ExplodingSource())
            first_end = await next_event(events, CallEnded)
            assert first_end.call_id == doomed_call.call_id
            assert first_end.initiator is HangupInitiator.ENGINE
            second_end = await next_event(events, CallEnded)
            assert second_end.call_id == healthy_call.call_id
            assert second_end.initiator is HangupInitiator.REMOTE and second_end.answered
            for sipp in (doomed, healthy):
                result = await sipp.finished()
                assert result.returncode == 0, result.output
            assert engine.clock.stats.failed_channels == 1
        finally:
            doomed.kill()
            healthy.kill()
            await engine.stop()
        samples, _ = read_wav(recording)
        loud = np.flatnonzero(np.abs(samples) > 2000)
        assert len(loud) > 0.6 * 8000, "the healthy call's audio stopped with the failing one"

    asyncio.run(scenario())
