"""Outbound calls to sipp acting as a trunk or phone: answer with echo, failures, ring timeout, digest auth,
REGISTER, and a two-party bridge."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
import socket
from pathlib import Path

import numpy as np
import pytest

from callplane.media.audio import read_wav, write_wav
from callplane.media.engine import (
    CallAnswered,
    CallEnded,
    CallRinging,
    CallStateConflict,
    DtmfReceived,
    FileSource,
    HangupInitiator,
    IncomingCall,
    OutboundCall,
    PlaybackFinished,
    RecordingChannels,
    RegistrationChanged,
    SipReasonHeader,
    SipTrunk,
    TrunkRegistration,
)
from callplane.media.g711 import PayloadType
from callplane.media.sip import SippyCallEngine
from callplane.testing.sipp import (
    Sipp,
    best_correlation,
    dominant_frequency,
    engine_config,
    free_even_port_pair,
    free_udp_port,
    next_event,
    render_scenario,
    tone,
    write_rtp_pcap,
)

PROMPT_TONE_HZ = 1200.0


def _callee(scenario: Path, *extra: str) -> Sipp:
    return Sipp(
        scenario,
        sip_port=free_udp_port(),
        media_port=free_even_port_pair(),
        extra=["-m", "1", "-timeout", "20s", *extra],
    )


def _trunk(callee: Sipp, **credentials: str) -> SipTrunk:
    return SipTrunk(host="127.0.0.1", port=callee.sip_port, **credentials)


def test_outbound_call_rings_answers_and_our_audio_and_dtmf_come_back_from_an_echo(
    tmp_path: Path, media_cache: Path
) -> None:
    async def scenario() -> None:
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        events = engine.subscribe()
        prompt_file = tmp_path / "prompt.wav"
        write_wav(prompt_file, tone(PROMPT_TONE_HZ, 1.0))
        callee = _callee(render_scenario("uas_answer.xml", tmp_path, BYE_TIMEOUT_MS="15000"), "-rtp_echo")
        try:
            await callee.start()
            await asyncio.sleep(0.2)  # sipp binds its port
            call_id = await engine.dial(
                OutboundCall(
                    to_user="alice",
                    trunk=_trunk(callee),
                    from_user="1001",
                    from_display_name="Callplane Test",
                    headers={"X-Campaign": "campaign-7"},
                )
            )
            ringing = await next_event(events, CallRinging)
            assert isinstance(ringing, CallRinging) and ringing.status == 180
            await next_event(events, CallAnswered)
            recording = tmp_path / "outbound.wav"
            await engine.start_recording(call_id, recording, RecordingChannels.STEREO)
            await engine.play(call_id, FileSource(prompt_file))
            finished = await next_event(events, PlaybackFinished)
            assert isinstance(finished, PlaybackFinished) and finished.completed
            await engine.send_dtmf(call_id, "42#")
            digits = ""
            while len(digits) < 3:
                event = await next_event(events, DtmfReceived)
                assert isinstance(event, DtmfReceived)
                digits += event.digit
            assert digits == "42#"
            await engine.hangup(call_id)
            ended = await next_event(events, CallEnded)
            assert isinstance(ended, CallEnded) and ended.answered and ended.initiator is HangupInitiator.LOCAL
            result = await callee.finished()
            assert result.returncode == 0, result.output
        finally:
            callee.kill()
            await engine.stop()

        samples, _ = read_wav(recording)
        heard, sent = samples[0::2], samples[1::2]
        loud = np.flatnonzero(np.abs(heard) > 2000)
        assert len(loud) > 0.8 * 8000, "the echo of our tone did not come back"
        assert abs(dominant_frequency(heard[loud[0] : loud[0] + 4000]) - PROMPT_TONE_HZ) < 10
        sent_start = int(np.flatnonzero(np.abs(sent) > 2000)[0])
        assert best_correlation(sent[sent_start + 800 : sent_start + 4800], heard) > 0.95

    asyncio.run(scenario())


def test_far_end_failure_status_and_reason_are_reported(tmp_path: Path, media_cache: Path) -> None:
    async def scenario() -> None:
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        events = engine.subscribe()
        callee = _callee(
            render_scenario(
                "uas_fail.xml", tmp_path, STATUS="486", PHRASE="Busy Here", CAUSE="17", REASON_TEXT="User busy"
            )
        )
        try:
            await callee.start()
            await asyncio.sleep(0.2)
            await engine.dial(OutboundCall(to_user="bob", trunk=_trunk(callee)))
            await next_event(events, CallRinging)
            ended = await next_event(events, CallEnded)
            assert isinstance(ended, CallEnded)
            assert ended.initiator is HangupInitiator.REMOTE and not ended.answered
            assert (ended.sip_status, ended.sip_reason_phrase) == (486, "Busy Here")
            assert ended.reason == SipReasonHeader("Q.850", 17, "User busy")
            result = await callee.finished()
            assert result.returncode == 0, result.output
        finally:
            callee.kill()
            await engine.stop()

    asyncio.run(scenario())


def test_ring_timeout_cancels_with_no_answer_cause(tmp_path: Path, media_cache: Path) -> None:
    async def scenario() -> None:
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        events = engine.subscribe()
        callee = _callee(render_scenario("uas_ring_forever.xml", tmp_path))
        try:
            await callee.start()
            await asyncio.sleep(0.2)
            await engine.dial(OutboundCall(to_user="carol", trunk=_trunk(callee), ring_timeout_s=1.0))
            await next_event(events, CallRinging)
            ended = await next_event(events, CallEnded)
            assert isinstance(ended, CallEnded)
            assert ended.initiator is HangupInitiator.ENGINE and ended.reason is not None
            assert ended.reason.cause == 19
            result = await callee.finished()
            assert result.returncode == 0, result.output
        finally:
            callee.kill()
            await engine.stop()

    asyncio.run(scenario())


def _digest_is_valid(credentials: str, *, method: str, username: str, password: str) -> bool:
    """RFC 2617 qop=auth check of the header sipp logged (sipp's verifyauth cannot do Proxy-Authorization)."""
    fields = {name: quoted or bare for name, quoted, bare in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]+))', credentials)}
    assert fields["username"] == username and fields["qop"] == "auth"

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{username}:{fields['realm']}:{password}")
    ha2 = md5(f"{method}:{fields['uri']}")
    expected = md5(f"{ha1}:{fields['nonce']}:{fields['nc']}:{fields['cnonce']}:auth:{ha2}")
    return bool(fields["response"] == expected)


CHALLENGES = [
    pytest.param("401", "Unauthorized", "WWW-Authenticate", "Authorization", id="401"),
    pytest.param("407", "Proxy Authentication Required", "Proxy-Authenticate", "Proxy-Authorization", id="407"),
]


@pytest.mark.parametrize(("code", "phrase", "challenge_header", "auth_header"), CHALLENGES)
def test_outbound_invite_answers_a_digest_challenge(
    tmp_path: Path, media_cache: Path, code: str, phrase: str, challenge_header: str, auth_header: str
) -> None:
    async def scenario() -> None:
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        events = engine.subscribe()
        callee = _callee(
            render_scenario(
                "uas_auth.xml", tmp_path, CODE=code, PHRASE=phrase,
                CHALLENGE_HEADER=challenge_header, AUTH_HEADER=auth_header,
            )
        )  # fmt: skip
        try:
            await callee.start()
            await asyncio.sleep(0.2)
            call_id = await engine.dial(
                OutboundCall(to_user="trunkuser", trunk=_trunk(callee, username="alice", password="s3cret"))
            )
            await next_event(events, CallAnswered)
            await engine.hangup(call_id)
            result = await callee.finished()
            assert result.returncode == 0, result.output
        finally:
            callee.kill()
            await engine.stop()
        logged = re.search(r"CREDENTIALS\s+(.*)", result.logs())
        assert logged is not None, result.logs()
        assert logged.group(1).startswith("Digest ")
        assert _digest_is_valid(logged.group(1), method="INVITE", username="alice", password="s3cret")

    asyncio.run(scenario())


@pytest.mark.parametrize(("code", "phrase", "challenge_header", "auth_header"), CHALLENGES)
def test_register_answers_a_digest_challenge(
    tmp_path: Path, media_cache: Path, code: str, phrase: str, challenge_header: str, auth_header: str
) -> None:
    async def scenario() -> None:
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        events = engine.subscribe()
        registrar = _callee(
            render_scenario(
                "uas_register.xml", tmp_path, CODE=code, PHRASE=phrase,
                CHALLENGE_HEADER=challenge_header, AUTH_HEADER=auth_header,
            )
        )  # fmt: skip
        try:
            await registrar.start()
            await asyncio.sleep(0.2)
            registration_id = await engine.register(
                TrunkRegistration(trunk=_trunk(registrar, username="alice", password="s3cret"), user="1001")
            )
            changed = await next_event(events, RegistrationChanged)
            assert isinstance(changed, RegistrationChanged)
            assert changed.registration_id == registration_id and changed.registered
            await engine.unregister(registration_id)
            result = await registrar.finished()
            assert result.returncode == 0, result.output
        finally:
            registrar.kill()
            await engine.stop()
        logged = re.search(r"CREDENTIALS\s+(.*)", result.logs())
        assert logged is not None, result.logs()
        assert _digest_is_valid(logged.group(1), method="REGISTER", username="alice", password="s3cret")

    asyncio.run(scenario())


def test_bridge_carries_each_partys_audio_to_the_other(tmp_path: Path, media_cache: Path) -> None:
    """A (inbound, sipp plays a 700 Hz tone) bridged to B (outbound, sipp echoes): A's tone reaches B and,
    echoed, comes back to A."""

    async def scenario() -> None:
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        events = engine.subscribe()
        write_rtp_pcap(tmp_path / "tone.pcap", tone(700.0, 1.5), payload_type=PayloadType.PCMU)
        a_dir, b_dir = tmp_path / "a", tmp_path / "b"
        a_dir.mkdir()
        b_dir.mkdir()
        callee = _callee(render_scenario("uas_answer.xml", b_dir, BYE_TIMEOUT_MS="15000"), "-rtp_echo")
        caller = Sipp(
            render_scenario("uac_early.xml", a_dir, TONE_PCAP=str(tmp_path / "tone.pcap"), HOLD_MS="2500"),
            sip_port=free_udp_port(),
            media_port=free_even_port_pair(),
            extra=[f"127.0.0.1:{engine.config.sip_port}", "-s", "bridge", "-m", "1", "-timeout", "20s"],
        )
        try:
            await callee.start()
            await caller.start()
            incoming = await next_event(events, IncomingCall)
            a_id = incoming.call_id
            await engine.pre_answer(a_id)
            b_id = await engine.dial(
                OutboundCall(to_user="agent", trunk=_trunk(callee), headers={"X-Campaign": "campaign-7"})
            )
            await next_event(events, CallAnswered)
            await engine.answer(a_id)
            await engine.bridge(a_id, b_id)
            await engine.start_recording(a_id, tmp_path / "a.wav", RecordingChannels.STEREO)
            await engine.start_recording(b_id, tmp_path / "b.wav", RecordingChannels.STEREO)
            ended = await next_event(events, CallEnded)
            assert isinstance(ended, CallEnded) and ended.call_id == a_id
            await engine.hangup(b_id)
            for sipp in (caller, callee):
                result = await sipp.finished()
                assert result.returncode == 0, result.output
        finally:
            caller.kill()
            callee.kill()
            await engine.stop()
        for name in ("a.wav", "b.wav"):
            samples, _ = read_wav(tmp_path / name)
            sent = samples[1::2]
            loud = np.flatnonzero(np.abs(sent) > 2000)
            assert len(loud) > 0.5 * 8000, f"nothing bridged into {name}"
            assert abs(dominant_frequency(sent[loud[0] : loud[0] + 2400]) - 700.0) < 10

    asyncio.run(scenario())


def test_a_busy_sip_port_fails_start_cleanly_and_a_second_engine_is_refused(media_cache: Path) -> None:
    async def scenario() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
            squatter.bind(("127.0.0.1", 0))
            taken = squatter.getsockname()[1]
            blocked = SippyCallEngine(dataclasses.replace(engine_config(media_cache), sip_port=taken))
            with pytest.raises(OSError):
                await blocked.start()
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        try:
            with pytest.raises(CallStateConflict):
                await SippyCallEngine(engine_config(media_cache)).start()
        finally:
            await engine.stop()

    asyncio.run(scenario())


def test_unregister_sends_expires_zero_and_reports_it(tmp_path: Path, media_cache: Path) -> None:
    async def scenario() -> None:
        engine = SippyCallEngine(engine_config(media_cache))
        await engine.start()
        events = engine.subscribe()
        registrar = _callee(render_scenario("uas_register_unregister.xml", tmp_path))
        try:
            await registrar.start()
            await asyncio.sleep(0.2)
            registration_id = await engine.register(TrunkRegistration(trunk=_trunk(registrar), user="1001"))
            registered = await next_event(events, RegistrationChanged)
            assert registered.registered
            await engine.unregister(registration_id)
            unregistered = await next_event(events, RegistrationChanged)
            assert unregistered.registration_id == registration_id and not unregistered.registered
            assert unregistered.status_line is not None and "200" in unregistered.status_line
            result = await registrar.finished()
            assert result.returncode == 0, result.output
        finally:
            registrar.kill()
            await engine.stop()

    asyncio.run(scenario())
