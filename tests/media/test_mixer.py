"""The N-party mixer on the shared clock (media/mixer.py): every member hears the others and the room's prompt in
the same tick they were sent, never itself; mute, deaf, own playback, saturation, the recordings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from callplane.media.audio import PcmPlayer, read_wav
from callplane.media.channel import MediaChannel
from callplane.media.clock import MediaClock
from callplane.media.g711 import Pcm
from callplane.media.jitter import FRAME_SAMPLES
from callplane.media.mixer import Mix


class _Tap:
    def __init__(self) -> None:
        self.sent: list[Pcm | None] = []

    def write(self, inbound: Pcm | None, outbound: Pcm | None) -> None:
        self.sent.append(outbound)


class _Room:
    """A clock with channels whose far ends each 'say' a constant level every tick, and one mix."""

    def __init__(self, *, mix_first: bool) -> None:
        self.clock = MediaClock()
        self.finished: list[tuple[str, bool]] = []
        self.mix = Mix("room", on_prompt_finished=lambda playback_id, done: self.finished.append((playback_id, done)))
        self.channels: dict[str, MediaChannel] = {}
        self.taps: dict[str, _Tap] = {}
        if mix_first:
            self.clock.add(self.mix)
        self._mix_first = mix_first

    def party(
        self, name: str, level: int | None, *, join: bool = True, muted: bool = False, deaf: bool = False
    ) -> None:
        channel = MediaChannel(clock=self.clock, on_digit=lambda digit: None)
        frame = None if level is None else np.full(FRAME_SAMPLES, level, dtype=np.int16)
        channel.pull_inbound = lambda: setattr(channel, "inbound_frame", frame)  # type: ignore[method-assign]
        tap = _Tap()
        channel.add_sink(tap)
        self.clock.add(channel)
        self.channels[name], self.taps[name] = channel, tap
        if join:
            self.mix.add(name, channel, muted=muted, deaf=deaf)

    def start(self) -> None:
        if not self._mix_first:
            self.clock.add(self.mix)

    def heard(self, name: str) -> int | None:
        """The level `name` was sent on the last tick (None: nothing)."""
        frame = self.taps[name].sent[-1]
        if frame is None:
            return None
        assert (frame == frame[0]).all()
        return int(frame[0])


@pytest.mark.parametrize("mix_first", [True, False], ids=["mix-first", "mix-last"])
def test_each_member_hears_the_sum_of_the_others_in_the_same_tick(mix_first: bool) -> None:
    room = _Room(mix_first=mix_first)
    room.party("a", 100)
    room.party("b", 20)
    room.party("c", 3)
    room.party("d", None)  # its jitter buffer had nothing this tick
    room.start()
    room.clock.tick()
    assert [room.heard(name) for name in "abcd"] == [23, 103, 120, 123]


def test_muted_members_are_not_heard_and_deaf_members_hear_nothing_of_the_room() -> None:
    room = _Room(mix_first=True)
    room.party("a", 100, muted=True)
    room.party("b", 20, deaf=True)
    room.party("c", 3)
    room.start()
    room.clock.tick()
    assert [room.heard(name) for name in "abc"] == [23, None, 20]
    room.mix.update("a", muted=False)
    room.mix.update("b", deaf=False)
    room.clock.tick()
    assert [room.heard(name) for name in "abc"] == [23, 103, 120]
    room.mix.remove("c")
    room.clock.tick()
    assert [room.heard(name) for name in "abc"] == [20, 100, None]  # c left: it hears silence, it stays up


def test_the_prompt_reaches_every_member_but_the_deaf_and_own_playback_is_mixed_over_the_room() -> None:
    async def run() -> None:
        room = _Room(mix_first=False)
        room.party("a", 100)
        room.party("b", 20, deaf=True)
        room.party("c", None)
        room.start()
        prompt = np.full(3 * FRAME_SAMPLES, 5000, dtype=np.int16)
        room.mix.play("p1", PcmPlayer(prompt))
        own = np.full(10 * FRAME_SAMPLES, 7, dtype=np.int16)
        room.channels["b"].play(PcmPlayer(own))  # hold music for a deaf member: heard by b alone
        room.clock.tick()
        assert [room.heard(name) for name in "abc"] == [5020, 7, 5120]
        for _ in range(3):
            room.clock.tick()
        assert room.finished == [("p1", True)]
        assert [room.heard(name) for name in "abc"] == [20, 7, 120]
        room.mix.play("p2", PcmPlayer(prompt, loop_count=100))
        room.mix.play("p3", PcmPlayer(prompt, loop_count=100))  # replaces p2
        room.mix.stop_prompt()
        assert room.finished[1:] == [("p2", False), ("p3", False)]

    asyncio.run(run())


def test_the_room_saturates_per_listener() -> None:
    room = _Room(mix_first=True)
    room.party("a", 30000)
    room.party("b", 30000)
    room.party("c", -30000)
    room.start()
    room.clock.tick()
    assert [room.heard(name) for name in "abc"] == [0, 0, 32767]


def test_the_recording_holds_the_room_and_each_members_aligned_track(tmp_path: Path) -> None:
    room = _Room(mix_first=True)
    room.party("a", 100)
    room.party("b", 20, muted=True)
    room.party("c", 3, join=False)
    room.start()
    room.mix.start_recording(tmp_path / "room.wav", tmp_path / "members")
    room.clock.tick()
    room.clock.tick()
    room.mix.add("c", room.channels["c"])  # joins late: its track starts with silence
    room.clock.tick()
    room.mix.remove("a")  # leaves: silence from then on
    room.mix.update("b", muted=False)
    room.clock.tick()
    recorded = room.mix.stop_recording()
    assert recorded is not None and recorded.duration_ms == 80
    assert set(recorded.member_paths) == {"a", "b", "c"}
    assert room.mix.stop_recording() is None

    def levels(path: Path) -> list[int]:
        samples, channels = read_wav(path)
        assert channels == 1 and len(samples) == 4 * FRAME_SAMPLES
        return [int(samples[index * FRAME_SAMPLES]) for index in range(4)]

    assert levels(recorded.path) == [100, 100, 103, 23]
    assert levels(recorded.member_paths["a"]) == [100, 100, 100, 0]
    assert levels(recorded.member_paths["b"]) == [0, 0, 0, 20]
    assert levels(recorded.member_paths["c"]) == [0, 0, 3, 3]


def test_a_closed_member_channel_is_silent() -> None:
    room = _Room(mix_first=True)
    room.party("a", 100)
    room.party("b", 20)
    room.start()
    room.clock.tick()
    room.channels["a"].close()
    room.clock.tick()
    assert room.heard("b") == 0  # a is not heard any more (b alone: the room without b is silence)


def test_a_mix_that_raises_is_failed_alone_and_its_members_carry_on() -> None:
    room = _Room(mix_first=False)
    failures: list[BaseException] = []
    room.mix = Mix("room", on_prompt_finished=lambda playback_id, done: None, on_failure=failures.append)
    room.party("a", 100)
    room.party("b", 20)
    room.start()
    room.clock.tick()
    broken = np.zeros(FRAME_SAMPLES // 2, dtype=np.int16)  # a frame of the wrong length: the sum raises
    room.channels["a"].pull_inbound = lambda: setattr(room.channels["a"], "inbound_frame", broken)  # type: ignore[method-assign]
    room.clock.tick()
    assert len(failures) == 1 and room.clock.stats.failed_channels == 1  # the mix, not a call
    assert not room.channels["a"].closed and not room.channels["b"].closed
    assert room.heard("a") is None and room.heard("b") is None
