"""One contract for every CallEngine: the in-memory FakeCallEngine and the real SippyCallEngine (with sipp as the
far end) run the same tests and must show the same events, in the same order, and the same errors.

Each far end is described once per engine by `Peers`: sipp scenarios for the real engine, `FarEnd` scripts for the
fake. The tests themselves only see the CallEngine Protocol.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from callplane.media.audio import CollectionEnd, read_wav, write_wav
from callplane.media.engine import (
    CallAnswered,
    CallEnded,
    CallEngine,
    CallNotFound,
    CallRinging,
    CallStateConflict,
    DtmfReceived,
    EngineEvent,
    FileSource,
    HangupInitiator,
    IncomingCall,
    MixNotFound,
    MixRecordingFinished,
    OutboundCall,
    PlaybackFinished,
    RecordingChannels,
    RecordingFinished,
    RegistrationChanged,
    SipReasonHeader,
    SipTrunk,
    ToneSource,
    TrunkRegistration,
)
from callplane.media.g711 import Pcm
from callplane.media.sip import SippyCallEngine
from callplane.testing.engine import RINGS_FOREVER, WAITS, Failure, FakeCallEngine, FarEnd
from callplane.testing.sipp import (
    SIPP_PCAPS,
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

CALLER_HEADERS = {"X-Customer-Id": "cust-42"}
EARLY_HANGUP = SipReasonHeader("Q.850", 31, "sipp side hangup")  # what uac_early.xml's BYE carries
CAMPAIGN = {"X-Campaign": "campaign-7"}  # uas_answer.xml checks our INVITE carries it
GAVE_UP = SipReasonHeader("Q.850", 16, "caller gave up")  # what uac_cancel.xml's CANCEL carries
SHORT_TONE = ToneSource((425.0,), 200, 0)


class Peers(ABC):
    """The far ends of one test, for one engine."""

    engine: CallEngine
    directory: Path  # the test's own folder

    @abstractmethod
    async def callee(self, to_user: str, *, fails: Failure | None = None, rings_forever: bool = False) -> OutboundCall:
        """A far end we dial: it rings, then answers (echoing our audio and DTMF, until our BYE) or fails."""

    @abstractmethod
    async def ivr_caller(self, to_user: str) -> None:
        """A caller whose INVITE carries CALLER_HEADERS; once answered it sends 1, 5, # and waits for our BYE."""

    @abstractmethod
    async def speaking_caller(self, to_user: str) -> None:
        """A caller that waits for our 180, then 200 ms after the answer sends 300 ms of a 700 Hz tone, then 1, 5, #
        and waits for our BYE."""

    @abstractmethod
    async def rejected_caller(self, to_user: str, status: int, cause: int) -> None:
        """A caller that must be refused with `status` and a Q.850 Reason with `cause`."""

    @abstractmethod
    async def cancelling_caller(self, to_user: str) -> None:
        """A caller that gives up (CANCEL with GAVE_UP) once it hears ringing."""

    @abstractmethod
    async def early_caller(self, to_user: str) -> None:
        """A caller that takes our 183, then our 200, and hangs up (BYE with EARLY_HANGUP)."""

    @abstractmethod
    async def ringing_heard(self, call_id: str) -> None:
        """Our 180 reached the caller (the fake's caller acts on it here; sipp's scenario does on its own)."""

    @abstractmethod
    async def registrar(self) -> SipTrunk:
        """A registrar that accepts a REGISTER and then its expires=0."""

    @abstractmethod
    async def check(self) -> None:
        """Every far end got what its script expected."""

    @abstractmethod
    def close(self) -> None:
        """Whatever the test left running goes."""


class FakePeers(Peers):
    def __init__(self, directory: Path) -> None:
        self.fake = FakeCallEngine(playback_s=0.1)
        self.engine = self.fake
        self.directory = directory
        self._giving_up: set[str] = set()

    async def callee(self, to_user: str, *, fails: Failure | None = None, rings_forever: bool = False) -> OutboundCall:
        far_end = RINGS_FOREVER if rings_forever else FarEnd(answer_after_s=0.05, fail=fails, echo_dtmf=True)
        self.fake.route(to_user, far_end)
        return OutboundCall(to_user=to_user, trunk=SipTrunk("127.0.0.1", 5060), headers=CAMPAIGN)

    async def ivr_caller(self, to_user: str) -> None:
        caller = FarEnd(digits="15#", digits_after_s=0.2)
        self.fake.incoming(
            to_user, from_user="sipp", from_display_name="Sipp Caller", headers=CALLER_HEADERS, caller=caller
        )

    async def speaking_caller(self, to_user: str) -> None:
        caller = FarEnd(audio=tone(700.0, 0.3), audio_after_s=0.2, digits="15#", digits_after_s=0.5)
        self.fake.incoming(to_user, from_user="sipp", caller=caller)

    async def rejected_caller(self, to_user: str, status: int, cause: int) -> None:
        self.fake.incoming(to_user, from_user="sipp")

    async def cancelling_caller(self, to_user: str) -> None:
        self._giving_up.add(to_user)
        self.fake.incoming(to_user, from_user="sipp")

    async def early_caller(self, to_user: str) -> None:
        self.fake.incoming(to_user, from_user="sipp", caller=FarEnd(hangup_after_s=0.3, hangup_reason=EARLY_HANGUP))

    async def ringing_heard(self, call_id: str) -> None:
        call = self.fake.calls[call_id]
        assert call.ringing_sent
        if call.to_user in self._giving_up:
            self.fake.far_end(call_id).hang_up(GAVE_UP)

    async def registrar(self) -> SipTrunk:
        return SipTrunk("127.0.0.1", 5060)

    async def check(self) -> None:
        assert not self.fake.live_calls()

    def close(self) -> None:
        return None


class SippPeers(Peers):
    def __init__(self, directory: Path, media_cache: Path) -> None:
        self.engine = SippyCallEngine(engine_config(media_cache))
        self.directory = directory
        self.sipps: list[Sipp] = []

    def _scenario(self, name: str, **values: str) -> Path:
        directory = self.directory / f"peer-{len(self.sipps)}"
        directory.mkdir()
        return render_scenario(name, directory, **values)

    async def _start(self, scenario: Path, *extra: str) -> Sipp:
        sipp = Sipp(scenario, sip_port=free_udp_port(), media_port=free_even_port_pair(), extra=["-m", "1", *extra])
        self.sipps.append(sipp)
        await sipp.start()
        return sipp

    async def callee(self, to_user: str, *, fails: Failure | None = None, rings_forever: bool = False) -> OutboundCall:
        if rings_forever:
            scenario = self._scenario("uas_ring_forever.xml")
        elif fails is not None:
            assert fails.reason is not None
            scenario = self._scenario(
                "uas_fail.xml",
                STATUS=str(fails.status),
                PHRASE=fails.phrase,
                CAUSE=str(fails.reason.cause),
                REASON_TEXT=fails.reason.text or "",
            )
        else:
            scenario = self._scenario("uas_answer.xml", BYE_TIMEOUT_MS="15000")
        sipp = await self._start(scenario, "-timeout", "20s", "-rtp_echo")
        await asyncio.sleep(0.2)  # sipp binds its port
        return OutboundCall(to_user=to_user, trunk=SipTrunk("127.0.0.1", sipp.sip_port), headers=CAMPAIGN)

    async def _caller(self, scenario: Path, to_user: str) -> None:
        assert isinstance(self.engine, SippyCallEngine)
        remote = f"127.0.0.1:{self.engine.config.sip_port}"
        await self._start(scenario, remote, "-s", to_user, "-timeout", "30s")

    async def ivr_caller(self, to_user: str) -> None:
        pcap = self.directory / "tone.pcap"
        write_rtp_pcap(pcap, tone(700.0, 0.3))
        scenario = self._scenario(
            "uac_ivr.xml", TONE_PCAP=str(pcap), TONE_MS="500", PCAPS=str(SIPP_PCAPS), BYE_TIMEOUT_MS="15000"
        )
        await self._caller(scenario, to_user)

    async def speaking_caller(self, to_user: str) -> None:
        await self.ivr_caller(to_user)

    async def rejected_caller(self, to_user: str, status: int, cause: int) -> None:
        await self._caller(self._scenario("uac_reject.xml", STATUS=str(status), CAUSE=str(cause)), to_user)

    async def cancelling_caller(self, to_user: str) -> None:
        await self._caller(self._scenario("uac_cancel.xml"), to_user)

    async def early_caller(self, to_user: str) -> None:
        pcap = self.directory / "early.pcap"
        write_rtp_pcap(pcap, tone(700.0, 0.3))
        await self._caller(self._scenario("uac_early.xml", TONE_PCAP=str(pcap), HOLD_MS="300"), to_user)

    async def ringing_heard(self, call_id: str) -> None:
        return None

    async def registrar(self) -> SipTrunk:
        sipp = await self._start(self._scenario("uas_register_unregister.xml"), "-timeout", "20s")
        await asyncio.sleep(0.2)
        return SipTrunk("127.0.0.1", sipp.sip_port)

    async def check(self) -> None:
        for sipp in self.sipps:
            result = await sipp.finished(30)
            assert result.returncode == 0, result.output

    def close(self) -> None:
        for sipp in self.sipps:
            sipp.kill()


Scenario = Callable[[Peers, "asyncio.Queue[EngineEvent]"], Awaitable[None]]


@pytest.fixture(params=["fake", "sippy"])
def contract(request: pytest.FixtureRequest, tmp_path: Path, media_cache: Path) -> Callable[[Scenario], None]:
    """Runs a scenario on one engine: started, subscribed, its far ends checked, then stopped."""

    def run(scenario: Scenario) -> None:
        async def main() -> None:
            peers: Peers = FakePeers(tmp_path) if request.param == "fake" else SippPeers(tmp_path, media_cache)
            await peers.engine.start()
            events = peers.engine.subscribe()
            try:
                await scenario(peers, events)
                await peers.check()
            finally:
                peers.close()
                await peers.engine.stop()

        asyncio.run(main())

    return run


async def _digits(events: asyncio.Queue[EngineEvent], count: int) -> str:
    received = ""
    while len(received) < count:
        received += (await next_event(events, DtmfReceived)).digit
    return received


# ---- outbound -----------------------------------------------------------------------------------


def test_a_dialled_call_rings_answers_plays_echoes_dtmf_records_and_ends_on_our_hangup(
    contract: Callable[[Scenario], None], tmp_path: Path
) -> None:
    prompt = tmp_path / "prompt.wav"
    write_wav(prompt, tone(1200.0, 0.3))

    async def scenario(peers: Peers, events: asyncio.Queue[EngineEvent]) -> None:
        engine = peers.engine
        call_id = await engine.dial(await peers.callee("alice"))
        ringing = await next_event(events, CallRinging)
        assert (ringing.call_id, ringing.status) == (call_id, 180)
        assert (await next_event(events, CallAnswered)).call_id == call_id
        with pytest.raises(CallStateConflict):
            await engine.answer(call_id)  # ours, and answered already
        recording = tmp_path / "recordings" / "outbound.wav"
        await engine.start_recording(call_id, recording, RecordingChannels.STEREO)
        with pytest.raises(CallStateConflict):
            await engine.start_recording(call_id, tmp_path / "twice.wav")
        playback_id = await engine.play(call_id, FileSource(prompt))
        finished = await next_event(events, PlaybackFinished)
        assert (finished.call_id, finished.playback_id, finished.completed) == (call_id, playback_id, True)
        await engine.send_dtmf(call_id, "42#")
        assert await _digits(events, 3) == "42#"
        stopped = await engine.stop_recording(call_id)
        assert stopped is not None and stopped.path == recording and stopped.duration_ms > 0
        assert stopped.duration_ms % 20 == 0
        reported = await next_event(events, RecordingFinished)
        assert reported == stopped
        samples, channels = read_wav(recording)
        assert channels == 2 and len(samples) == 2 * 8 * stopped.duration_ms
        assert await engine.stop_recording(call_id) is None  # nothing records any more
        await engine.hangup(call_id)
        ended = await next_event(events, CallEnded)
        assert (ended.call_id, ended.initiator, ended.answered) == (call_id, HangupInitiator.LOCAL, True)
        with pytest.raises(CallNotFound):
            await engine.hangup(call_id)

    contract(scenario)


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(Failure(486, "Busy Here", SipReasonHeader("Q.850", 17, "User busy")), id="busy"),
        pytest.param(Failure(603, "Decline", SipReasonHeader("Q.850", 21, "Call rejected")), id="decline"),
        pytest.param(Failure(404, "Not Found", SipReasonHeader("Q.850", 1, "Unallocated")), id="not-found"),
    ],
)
def test_a_far_end_failure_ends_the_call_with_its_status_and_reason(
    contract: Callable[[Scenario], None], failure: Failure
) -> None:
    async def scenario(peers: Peers, events: asyncio.Queue[EngineEvent]) -> None:
        call_id = await peers.engine.dial(await peers.callee("bob", fails=failure))
        await next_event(events, CallRinging)
        ended = await next_event(events, CallEnded)
        assert (ended.call_id, ended.initiator, ended.answered) == (call_id, HangupInitiator.REMOTE, False)
        assert (ended.sip_status, ended.sip_reason_phrase, ended.reason) == (
            failure.status,
            failure.phrase,
            failure.reason,
        )

    contract(scenario)


def test_an_unanswered_call_refuses_media_and_answering_and_our_hangup_cancels_it_with_our_reason(
    contract: Callable[[Scenario], None],
) -> None:
    async def scenario(peers: Peers, events: asyncio.Queue[EngineEvent]) -> None:
        engine = peers.engine
        call_id = await engine.dial(await peers.callee("carol", rings_forever=True))
        await next_event(events, CallRinging)
        for refused in (
            engine.play(call_id, SHORT_TONE),
            engine.send_dtmf(call_id, "1"),
            engine.answer(call_id),
            engine.reject(call_id),
            engine.send_ringing(call_id),
        ):
            with pytest.raises(CallStateConflict):
                await refused
        gave_up = SipReasonHeader("Q.850", 19, "No answer")  # uas_ring_forever.xml checks the CANCEL's cause
        await engine.hangup(call_id, reason=gave_up)
        ended = await next_event(events, CallEnded)
        assert (ended.initiator, ended.answered, ended.reason) == (HangupInitiator.LOCAL, False, gave_up)
        for gone in (engine.hangup(call_id), engine.play(call_id, SHORT_TONE), engine.stop_recording(call_id)):
            with pytest.raises(CallNotFound):
                await gone

    contract(scenario)


def test_the_ring_timeout_ends_the_call_with_the_no_answer_cause(contract: Callable[[Scenario], None]) -> None:
    async def scenario(peers: Peers, events: asyncio.Queue[EngineEvent]) -> None:
        callee = await peers.callee("dave", rings_forever=True)
        call_id = await peers.engine.dial(OutboundCall(to_user=callee.to_user, trunk=callee.trunk, ring_timeout_s=0.5))
        await next_event(events, CallRinging)
        ended = await next_event(events, CallEnded)
        assert (ended.call_id, ended.initiator, ended.answered) == (call_id, HangupInitiator.ENGINE, False)
        assert ended.reason is not None and ended.reason.cause == 19

    contract(scenario)


def test_playback_stopped_and_cut_by_the_hangup_reports_it_incomplete(contract: Callable[[Scenario], None]) -> None:
    async def scenario(peers: Peers, events: asyncio.Queue[EngineEvent]) -> None:
        engine = peers.engine
        call_id = await engine.dial(await peers.callee("erin"))
        await next_event(events, CallAnswered)
        first = await engine.play(call_id, SHORT_TONE, loop_count=100)
        second = await engine.play(call_id, SHORT_TONE, loop_count=100)  # replaces the first
        replaced = await next_event(events, PlaybackFinished)
        assert (replaced.playback_id, replaced.completed) == (first, False)
        await engine.stop_playback(call_id)
        stopped = await next_event(events, PlaybackFinished)
        assert (stopped.playback_id, stopped.completed) == (second, False)
        third = await engine.play(call_id, SHORT_TONE, loop_count=100)
        recording = peers.directory / "cut.wav"
        await engine.start_recording(call_id, recording)
        await engine.hangup(call_id)
        # the recording closes before the call is reported ended; the playback's end is reported after it
        finished = await next_event(events, RecordingFinished)
        assert finished.path == recording and recording.is_file()
        after: list[EngineEvent] = []
        while not any(isinstance(event, PlaybackFinished) for event in after):
            after.append(await asyncio.wait_for(events.get(), 10))
        assert [type(event) for event in after] == [CallEnded, PlaybackFinished]
        cut = after[-1]
        assert isinstance(cut, PlaybackFinished) and (cut.playback_id, cut.completed) == (third, False)

    contract(scenario)


def test_a_recording_ends_by_itself_after_its_max_duration_or_max_silence(
    contract: Callable[[Scenario], None],
) -> None:
    """start-recording's maxDuration and maxSilence are the engine's: it ends the recording (RecordingFinished, as a
    stop would) and the call goes on. Nothing plays, so what is recorded is silence on both engines."""

    async def scenario(peers: Peers, events: asyncio.Queue[EngineEvent]) -> None:
        engine = peers.engine
        call_id = await engine.dial(await peers.callee("frank"))
        await next_event(events, CallAnswered)
        bounded = peers.directory / "bounded.wav"
        await engine.start_recording(call_id, bounded, max_duration_s=0.4, max_silence_s=30)
        finished = await next_event(events, RecordingFinished)
        assert finished.path == bounded and finished.duration_ms >= 400
        assert len(read_wav(bounded)[0]) == 8 * finished.duration_ms
        assert await engine.stop_recording(call_id) is None  # it had ended already
        quiet = peers.directory / "quiet.wav"
        await engine.start_recording(call_id, quiet, max_silence_s=0.3)
        finished = await next_event(events, RecordingFinished)
        assert finished.path == quiet and finished.duration_ms >= 300
        await engine.hangup(call_id)
        ended = await next_event(events, CallEnded)
        assert (ended.initiator, ended.answered) == (HangupInitiator.LOCAL, True)

    contract(scenario)


def test_two_answered_calls_are_bridged_and_share_a_prompt(contract: Callable[[Scenario], None]) -> None:
    async def scenario(peers: Peers, events: asyncio.Queue[EngineEvent]) -> None:
        engine = peers.engine
        first = await engine.dial(await peers.callee("frank"))
        second = await engine.dial(await peers.callee("grace"))
        answered = {(await next_event(events, CallAnswered)).call_id for _ in range(2)}
        assert answered == {first, second}
        with pytest.raises(CallStateConflict):
            await engine.bridge(first, first)
        with pytest.raises(CallStateConflict):
            await engine.play_to_bridge(first, SHORT_TONE)  # not bridged yet
        await engine.bridge(first, second)
        with pytest.raises(CallStateConflict):
            await engine.bridge(second, first)
        playback_id = await engine.play_to_bridge(second, SHORT_TONE)
        finished = await next_event(events, PlaybackFinished)
        assert (finished.call_id, finished.playback_id, finished.completed) == (second, playback_id, True)
        looping = await engine.play_to_bridge(first, SHORT_TONE, loop_count=100)
        await engine.stop_bridge_playback(second)  # either leg stops the bridge's prompt
        stopped = await next_event(events, PlaybackFinished)
        assert (stopped.call_id, stopped.playback_id, stopped.completed) == (first, looping, False)
        await engine.unbridge(first)
        await engine.bridge(second, first)  # free to bridge again
        await engine.hangup(first)
        await engine.hangup(second)
        ended = {(await next_event(events, CallEnded)).call_id for _ in range(2)}
        assert ended == {first, second}

    contract(scenario)


# ---- inbound ------------------------------------------------------------------------------------


def test_an_inbound_call_is_offered_rung_answered_collects_dtmf_and_ends_on_our_hangup(
    contract: Callable[[Scenario], None],
) -> None:
    async def scenario(peers: Peers, events: asyncio.Queue[EngineEvent]) -> None:
        engine = peers.engine
        await peers.ivr_caller("ivr")
        incoming = await next_event(events, IncomingCall)
        assert (incoming.to_user, incoming.from_user, incoming.from_display_name) == ("ivr", "sipp", "Sipp Caller")
        assert incoming.headers.get("x-customer-id") == "cust-42" and incoming.sip_call_id
        call_id = incoming.call_id
        with pytest.raises(CallStateConflict):
            await engine.play(call_id, SHORT_TONE)  # no media before the answer
        await engine.send_ringing(call_id)
        await engine.answer(call_id)
        assert (await next_event(events, CallAnswered)).call_id == call_id
        with pytest.raises(CallStateConflict):
            await engine.reject(call_id)  # answered already
        collected = await engine.collect_dtmf(
            call_id, max_length=6, terminator="#", first_digit_timeout_s=10, inter_digit_timeout_s=5
        )
        assert (collected.digits, collected.ended_by) == ("15", CollectionEnd.TERMINATOR)
        await engine.hangup(call_id)
        ended = await next_event(events, CallEnded)
        assert (ended.call_id, ended.initiator, ended.answered) == (call_id, HangupInitiator.LOCAL, True)

    contract(scenario)


class _Tap:
    def __init__(self) -> None:
        self.inbound: list[Pcm] = []
        self.writes = 0

    def write(self, inbound: Pcm | None, outbound: Pcm | None) -> None:
        self.writes += 1
        if inbound is not None:
            self.inbound.append(inbound.copy())


class _Replacement:
    def __init__(self) -> None:
        self.reads = 0

    def read_frame(self) -> Pcm | None:
        self.reads += 1
        return None


def test_an_audio_tap_hears_the_far_end_and_a_replacement_source_is_read_until_cleared(
    contract: Callable[[Scenario], None],
) -> None:
    async def scenario(peers: Peers, events: asyncio.Queue[EngineEvent]) -> None:
        engine = peers.engine
        await peers.speaking_caller("tapped")
        call_id = (await next_event(events, IncomingCall)).call_id
        with pytest.raises(CallStateConflict):
            await engine.add_audio_tap(call_id, _Tap())  # no media before the answer
        with pytest.raises(CallStateConflict):
            await engine.replace_inbound_audio(call_id, _Replacement())
        await engine.send_ringing(call_id)  # the caller waits for it
        await engine.answer(call_id)
        tap, replacement = _Tap(), _Replacement()
        tap_id = await engine.add_audio_tap(call_id, tap)
        await engine.replace_inbound_audio(call_id, replacement)
        assert await _digits(events, 1) == "1"  # the tone came before the digits
        heard = np.concatenate(tap.inbound)
        assert abs(dominant_frequency(heard) - 700.0) < 20  # the far end's own audio, though replaced
        assert replacement.reads > 0
        await engine.replace_inbound_audio(call_id, None)
        await engine.remove_audio_tap(call_id, tap_id)
        reads, writes = replacement.reads, tap.writes
        assert await _digits(events, 2) == "5#"
        assert (replacement.reads, tap.writes) == (reads, writes)  # neither is called any more
        await engine.remove_audio_tap(call_id, tap_id)  # unknown now: ignored
        await engine.hangup(call_id)
        assert (await next_event(events, CallEnded)).call_id == call_id
        with pytest.raises(CallNotFound):
            await engine.remove_audio_tap(call_id, tap_id)

    contract(scenario)


def test_an_inbound_call_is_rejected_with_our_status_and_reason(contract: Callable[[Scenario], None]) -> None:
    async def scenario(peers: Peers, events: asyncio.Queue[EngineEvent]) -> None:
        engine = peers.engine
        await peers.rejected_caller("svc", 603, 21)
        incoming = await next_event(events, IncomingCall)
        with pytest.raises(CallStateConflict):
            await engine.reject(incoming.call_id, status=200)
        await engine.reject(
            incoming.call_id,
            status=603,
            reason=SipReasonHeader("Q.850", 21, "rejected by test"),
            headers={"X-Reject-Rule": "blocked-by-rule"},
        )
        ended = await next_event(events, CallEnded)
        assert (ended.call_id, ended.initiator, ended.answered) == (incoming.call_id, HangupInitiator.LOCAL, False)
        assert (ended.sip_status, ended.sip_reason_phrase) == (603, "Decline")

    contract(scenario)


def test_a_caller_who_gives_up_while_ringing_ends_487_with_their_reason(contract: Callable[[Scenario], None]) -> None:
    async def scenario(peers: Peers, events: asyncio.Queue[EngineEvent]) -> None:
        await peers.cancelling_caller("queue")
        incoming = await next_event(events, IncomingCall)
        await peers.engine.send_ringing(incoming.call_id)
        await peers.ringing_heard(incoming.call_id)
        ended = await next_event(events, CallEnded)
        assert (ended.call_id, ended.initiator, ended.answered) == (incoming.call_id, HangupInitiator.REMOTE, False)
        assert (ended.sip_status, ended.reason) == (487, GAVE_UP)

    contract(scenario)


def test_early_media_then_answer_and_the_callers_hangup_ends_a_collection_and_the_call(
    contract: Callable[[Scenario], None],
) -> None:
    async def scenario(peers: Peers, events: asyncio.Queue[EngineEvent]) -> None:
        engine = peers.engine
        await peers.early_caller("early")
        incoming = await next_event(events, IncomingCall)
        await engine.pre_answer(incoming.call_id)
        playback_id = await engine.play(incoming.call_id, SHORT_TONE)  # media flows before the answer
        finished = await next_event(events, PlaybackFinished)
        assert (finished.playback_id, finished.completed) == (playback_id, True)
        await engine.answer(incoming.call_id)
        await next_event(events, CallAnswered)
        collected = await engine.collect_dtmf(incoming.call_id, max_length=4, first_digit_timeout_s=10)
        assert (collected.digits, collected.ended_by) == ("", CollectionEnd.HANGUP)  # the caller left meanwhile
        ended = await next_event(events, CallEnded)
        assert (ended.call_id, ended.initiator, ended.answered) == (incoming.call_id, HangupInitiator.REMOTE, True)
        assert ended.reason == EARLY_HANGUP

    contract(scenario)


# ---- registration -------------------------------------------------------------------------------


def test_a_registration_is_reported_registered_then_unregistered(contract: Callable[[Scenario], None]) -> None:
    async def scenario(peers: Peers, events: asyncio.Queue[EngineEvent]) -> None:
        engine = peers.engine
        registration_id = await engine.register(TrunkRegistration(trunk=await peers.registrar(), user="1001"))
        registered = await next_event(events, RegistrationChanged)
        assert (registered.registration_id, registered.registered) == (registration_id, True)
        await engine.unregister(registration_id)
        unregistered = await next_event(events, RegistrationChanged)
        assert (unregistered.registration_id, unregistered.registered) == (registration_id, False)
        assert unregistered.status_line is not None and "200" in unregistered.status_line

    contract(scenario)


def test_commands_on_an_unknown_call_are_refused_as_not_found(contract: Callable[[Scenario], None]) -> None:
    async def scenario(peers: Peers, events: asyncio.Queue[EngineEvent]) -> None:
        engine = peers.engine
        for refused in (
            engine.answer("no-such-call"),
            engine.hangup("no-such-call"),
            engine.play("no-such-call", SHORT_TONE),
            engine.send_dtmf("no-such-call", "1"),
            engine.collect_dtmf("no-such-call", max_length=1),
            engine.stop_recording("no-such-call"),
        ):
            with pytest.raises(CallNotFound):
                await refused

    contract(scenario)


def test_the_fake_far_end_waits_for_commands() -> None:
    """The fake's own scripting: a far end that only acts on command, and one that hangs up by itself."""

    async def scenario() -> None:
        fake = FakeCallEngine()
        await fake.start()
        events = fake.subscribe()
        fake.route("held", WAITS)
        fake.route("short", FarEnd(digits="9", hangup_after_s=0.01))
        held = await fake.dial(OutboundCall(to_user="held", trunk=SipTrunk("127.0.0.1")))
        await asyncio.sleep(0.05)
        assert fake.events == [] and fake.calls[held].state == "DIALING"
        fake.far_end(held).early_media()
        fake.far_end(held).answer()
        fake.far_end(held).send_digits("12")
        assert [type(event).__name__ for event in fake.events] == [
            "CallEarlyMedia",
            "CallAnswered",
            "DtmfReceived",
            "DtmfReceived",
        ]
        await fake.play(held, SHORT_TONE)
        await fake.hangup(held)
        short = await fake.dial(OutboundCall(to_user="short", trunk=SipTrunk("127.0.0.1")))
        ended = await next_event(events, CallEnded)
        while ended.call_id != short:
            ended = await next_event(events, CallEnded)
        assert ended.initiator is HangupInitiator.REMOTE and fake.calls[short].received_dtmf == "9"
        assert fake.calls_to("held")[0].played[0].source == SHORT_TONE
        assert fake.calls[held].played[0].completed is False  # cut by the hangup
        await fake.stop()

    asyncio.run(scenario())


# ---- mixes (conference rooms) ------------------------------------------------------------------


def test_calls_join_a_mix_hear_a_prompt_are_recorded_and_leave_it(
    contract: Callable[[Scenario], None], tmp_path: Path
) -> None:
    async def scenario(peers: Peers, events: asyncio.Queue[EngineEvent]) -> None:
        engine = peers.engine
        legs = [await engine.dial(await peers.callee(name)) for name in ("mix-a", "mix-b", "mix-c")]
        assert {(await next_event(events, CallAnswered)).call_id for _ in legs} == set(legs)
        first, second, third = legs
        await engine.create_mix("room-1")
        with pytest.raises(CallStateConflict):
            await engine.create_mix("room-1")
        with pytest.raises(MixNotFound):
            await engine.join_mix("no-such-mix", first)
        with pytest.raises(CallNotFound):
            await engine.join_mix("room-1", "no-such-call")
        with pytest.raises(CallStateConflict):
            await engine.update_mix_member(first, muted=True)  # in no mix yet
        await engine.leave_mix(first)  # in no mix: nothing happens
        await engine.bridge(second, third)
        with pytest.raises(CallStateConflict):
            await engine.join_mix("room-1", second)  # bridged
        await engine.unbridge(second)
        await engine.join_mix("room-1", first)
        await engine.join_mix("room-1", second, muted=True)
        await engine.join_mix("room-1", third, deaf=True)
        with pytest.raises(CallStateConflict):
            await engine.join_mix("room-1", first)  # already in it
        with pytest.raises(CallStateConflict):
            await engine.bridge(first, second)  # members are not bridged
        await engine.update_mix_member(second, muted=False)
        await engine.update_mix_member(third, deaf=False)
        recording = tmp_path / "mix" / "room.wav"
        await engine.start_mix_recording("room-1", recording, member_dir=tmp_path / "mix" / "members")
        with pytest.raises(CallStateConflict):
            await engine.start_mix_recording("room-1", tmp_path / "twice.wav")
        playback_id = await engine.play_to_mix("room-1", SHORT_TONE)
        finished = await next_event(events, PlaybackFinished)
        assert (finished.call_id, finished.playback_id, finished.completed) == ("room-1", playback_id, True)
        looping = await engine.play_to_mix("room-1", SHORT_TONE, loop_count=100)
        await engine.stop_mix_playback("room-1")
        stopped = await next_event(events, PlaybackFinished)
        assert (stopped.call_id, stopped.playback_id, stopped.completed) == ("room-1", looping, False)
        own = await engine.play(first, SHORT_TONE)  # a member's own playback, heard by it alone
        mine = await next_event(events, PlaybackFinished)
        assert (mine.call_id, mine.playback_id, mine.completed) == (first, own, True)
        await engine.leave_mix(third)  # stays up
        await engine.play(third, SHORT_TONE)
        assert (await next_event(events, PlaybackFinished)).call_id == third
        await engine.hangup(second)  # a member whose call ends leaves by itself
        assert (await next_event(events, CallEnded)).call_id == second
        stopped_recording = await engine.stop_mix_recording("room-1")
        assert stopped_recording is not None and await next_event(events, MixRecordingFinished) == stopped_recording
        assert stopped_recording.path == recording and stopped_recording.duration_ms > 0
        assert set(stopped_recording.member_paths) == {first, second, third}
        samples, channels = read_wav(recording)
        assert channels == 1 and len(samples) == 8 * stopped_recording.duration_ms
        for path in stopped_recording.member_paths.values():
            assert len(read_wav(path)[0]) == len(samples)  # every track aligned with the room's
        assert await engine.stop_mix_recording("room-1") is None
        await engine.start_mix_recording("room-1", tmp_path / "mix" / "again.wav")
        await engine.play_to_mix("room-1", SHORT_TONE, loop_count=100)
        await engine.destroy_mix("room-1")  # the prompt stops, then the recording closes; nobody is hung up
        cut = await next_event(events, PlaybackFinished)
        assert (cut.call_id, cut.completed) == ("room-1", False)
        closed = await next_event(events, MixRecordingFinished)
        assert closed.path == tmp_path / "mix" / "again.wav" and closed.member_paths == {}
        with pytest.raises(MixNotFound):
            await engine.play_to_mix("room-1", SHORT_TONE)
        await engine.create_mix("room-1")  # the id is free again
        await engine.join_mix("room-1", first)  # the destroyed mix's members are free
        await engine.destroy_mix("room-1")
        await engine.bridge(first, third)
        for call_id in (first, third):
            await engine.hangup(call_id)
        assert {(await next_event(events, CallEnded)).call_id for _ in range(2)} == {first, third}

    contract(scenario)
