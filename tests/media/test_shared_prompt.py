"""A dialog's prompt on the shared clock: both bridged channels send the same prompt frame in the same tick,
mixed over what each hears from the other; the prompt ends (or is stopped) once for both."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from callplane.media.audio import PcmPlayer, RecordingChannels, WavRecorder, compose_tracks, read_wav, write_wav
from callplane.media.channel import MediaChannel, SharedPrompt, mix
from callplane.media.clock import MediaClock
from callplane.media.g711 import Pcm
from callplane.media.jitter import FRAME_SAMPLES
from callplane.testing.sipp import dominant_frequency, tone


class _Tap:
    def __init__(self) -> None:
        self.sent: list[Pcm | None] = []
        self.heard: list[Pcm | None] = []

    def write(self, inbound: Pcm | None, outbound: Pcm | None) -> None:
        self.heard.append(inbound)
        self.sent.append(outbound)


def _channel(clock: MediaClock, heard: Pcm | None) -> tuple[MediaChannel, _Tap]:
    """A channel on the clock (no socket: sending is skipped) whose far end 'says' `heard` every tick."""
    channel = MediaChannel(clock=clock, on_digit=lambda digit: None)
    if heard is not None:
        channel.pull_inbound = lambda: setattr(channel, "inbound_frame", heard)  # type: ignore[method-assign]
    tap = _Tap()
    channel.add_sink(tap)
    clock.add(channel)
    return channel, tap


def test_mix_saturates() -> None:
    loud = np.full(FRAME_SAMPLES, 30000, dtype=np.int16)
    assert (mix(loud, loud) == 32767).all()
    assert (mix(-loud, -loud) == -32768).all()
    assert (mix(loud, -loud) == 0).all()


def test_both_legs_send_the_same_prompt_frame_mixed_over_the_other_party() -> None:
    async def run() -> None:
        clock = MediaClock()
        party_a = np.full(FRAME_SAMPLES, 1000, dtype=np.int16)
        a, tap_a = _channel(clock, party_a)
        b, tap_b = _channel(clock, None)  # B says nothing
        a.bridge_peer, b.bridge_peer = b, a
        samples = tone(400, 0.1)  # five frames
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        prompt = SharedPrompt(PcmPlayer(samples), done)
        clock.add(prompt)
        a.add_shared(prompt)
        b.add_shared(prompt)
        for _ in range(7):
            clock.tick()
        assert done.done() and done.result() is True
        for index in range(5):
            frame = samples[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES]
            sent_a, sent_b = tap_a.sent[index], tap_b.sent[index]
            assert sent_a is not None and sent_b is not None
            assert np.array_equal(sent_a, frame)  # A hears the prompt (B is silent)
            assert np.array_equal(sent_b, mix(frame, party_a))  # B hears A and the prompt, the same frame
        assert tap_a.sent[5] is None and np.array_equal(tap_b.sent[5], party_a)  # then only the bridge

    asyncio.run(run())


def test_a_stopped_prompt_reports_not_completed_and_leaves_the_bridge_alone() -> None:
    async def run() -> None:
        clock = MediaClock()
        a, tap_a = _channel(clock, None)
        b, _ = _channel(clock, None)
        a.bridge_peer, b.bridge_peer = b, a
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        prompt = SharedPrompt(PcmPlayer(tone(400, 2.0)), done)
        clock.add(prompt)
        a.add_shared(prompt)
        b.add_shared(prompt)
        clock.tick()
        prompt.finish(completed=False)
        clock.tick()
        assert done.result() is False
        assert tap_a.sent[0] is not None and tap_a.sent[1] is None

    asyncio.run(run())


def test_heard_recording_keeps_only_the_far_ends_audio(tmp_path: Path) -> None:
    path = tmp_path / "heard.wav"
    recorder = WavRecorder(path, RecordingChannels.HEARD)
    heard, sent = tone(700, 1.0), tone(1200, 1.0)
    for index in range(50):
        window = slice(index * FRAME_SAMPLES, (index + 1) * FRAME_SAMPLES)
        recorder.write(heard[window], sent[window])
    recorder.write(None, sent[:FRAME_SAMPLES])
    recorder.close()
    samples, channels = read_wav(path)
    assert channels == 1 and len(samples) == 51 * FRAME_SAMPLES
    assert abs(dominant_frequency(samples[: 50 * FRAME_SAMPLES]) - 700) < 10
    assert not samples[50 * FRAME_SAMPLES :].any()


def test_compose_tracks_mixes_or_keeps_one_channel_per_party(tmp_path: Path) -> None:
    parent, child = tmp_path / "parent.wav", tmp_path / "child.wav"
    write_wav(parent, tone(700, 1.0))
    write_wav(child, tone(1300, 0.5))  # shorter: padded with silence
    assert compose_tracks([parent, child], tmp_path / "mixed.wav") == 1000
    mixed, channels = read_wav(tmp_path / "mixed.wav")
    assert channels == 1 and len(mixed) == 8000
    assert np.array_equal(mixed[:4000], mix(tone(700, 1.0)[:4000], tone(1300, 0.5)))
    assert np.array_equal(mixed[4000:], tone(700, 1.0)[4000:])
    compose_tracks([parent, child], tmp_path / "stereo.wav", multi_channel=True)
    stereo, channels = read_wav(tmp_path / "stereo.wav")
    assert channels == 2
    assert np.array_equal(stereo[0::2], tone(700, 1.0)) and not stereo[1::2][4000:].any()
