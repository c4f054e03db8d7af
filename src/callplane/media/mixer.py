"""N-party mixing ("mixes", the engine's conference rooms) on the shared 20 ms clock.

A `Mix` is a clock participant of its own, like a bridge's `SharedPrompt`. The clock's phase 1 pulls every channel's
inbound frame (and the mix reads its prompt's next frame); the mix is computed once, lazily, by the first phase-2
caller of the tick (a member's channel asking for what it hears, or the mix's own `push_outbound`), so every
member's frame of this tick is in the room in this tick: no latency beyond the bridge's.

The mix itself is vectorised: the members' frames go into one int32 matrix (muted members, and members whose jitter
buffer had nothing, are zero rows), the room is its column sum plus the prompt, and every member hears
`room - own row`, saturated to int16 by one minimum and one maximum over the whole matrix. Deaf members hear
nothing from the room (their own `play` still). The recording takes the saturated room and, per member, what it
sent into it.
"""

from __future__ import annotations

import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from callplane.media.audio import SAMPLE_RATE
from callplane.media.channel import AudioSource, MediaChannel
from callplane.media.g711 import Pcm
from callplane.media.jitter import FRAME_SAMPLES

__all__ = ["Mix", "MixMember", "MixTrack", "RecordedMix"]

_ZERO_CHUNK = bytes(2 * FRAME_SAMPLES * 50)  # one second of silence, for padding a late member's track


class MixMember:
    """One call in a mix: its channel asks `heard()` once per tick (channel.py `room`)."""

    __slots__ = ("_mix", "call_id", "channel", "deaf", "frame", "muted", "sent")

    def __init__(self, mix: Mix, call_id: str, channel: MediaChannel, *, muted: bool, deaf: bool) -> None:
        self._mix = mix
        self.call_id = call_id
        self.channel = channel
        self.muted = muted
        self.deaf = deaf
        self.frame: Pcm | None = None  # what it hears of the room this tick
        self.sent: Pcm | None = None  # what it put into the room this tick

    def heard(self) -> Pcm | None:
        self._mix.ensure_mixed()
        return self.frame


class MixTrack:
    """A mono 8 kHz WAV written one 20 ms frame at a time, buffered to about one write a second."""

    _FLUSH_FRAMES = 50

    def __init__(self, path: Path) -> None:
        self.path = path
        self._wave = wave.open(str(path), "wb")
        self._wave.setnchannels(1)
        self._wave.setsampwidth(2)
        self._wave.setframerate(SAMPLE_RATE)
        self._pending: list[bytes] = []
        self.frames_written = 0

    def write(self, frame: Pcm | None) -> None:
        self._pending.append(_SILENCE_BYTES if frame is None else frame.astype("<i2", copy=False).tobytes())
        self.frames_written += 1
        if len(self._pending) >= self._FLUSH_FRAMES:
            self._flush()

    def pad(self, frames: int) -> None:
        """`frames` of silence at once (a member joining a recording that already runs)."""
        self._flush()
        whole, rest = divmod(frames, 50)
        for _ in range(whole):
            self._wave.writeframesraw(_ZERO_CHUNK)
        if rest:
            self._wave.writeframesraw(bytes(2 * FRAME_SAMPLES * rest))
        self.frames_written += frames

    def _flush(self) -> None:
        if self._pending:
            self._wave.writeframesraw(b"".join(self._pending))
            self._pending.clear()

    def close(self) -> None:
        self._flush()
        self._wave.close()


_SILENCE_BYTES = bytes(2 * FRAME_SAMPLES)


class _Recording:
    def __init__(self, path: Path, member_dir: Path | None) -> None:
        self.mixed = MixTrack(path)
        self.member_dir = member_dir
        self.tracks: dict[str, MixTrack] = {}

    def add_member(self, call_id: str) -> None:
        if self.member_dir is None or call_id in self.tracks:
            return
        track = MixTrack(self.member_dir / f"{call_id}.wav")
        track.pad(self.mixed.frames_written)
        self.tracks[call_id] = track


class RecordedMix:
    """What a closed recording left: the mixed file, its duration and the per-member files."""

    __slots__ = ("duration_ms", "member_paths", "path")

    def __init__(self, path: Path, duration_ms: int, member_paths: dict[str, Path]) -> None:
        self.path = path
        self.duration_ms = duration_ms
        self.member_paths = member_paths


class _Prompt:
    __slots__ = ("playback_id", "source")

    def __init__(self, playback_id: str, source: AudioSource) -> None:
        self.playback_id = playback_id
        self.source = source


class Mix:
    """A room of calls on the clock. `on_prompt_finished(playback_id, completed)` is called synchronously when the
    prompt ends, is stopped or replaced; `on_failure(error)` when a tick raised (the clock has dropped the mix)."""

    def __init__(
        self,
        mix_id: str,
        *,
        on_prompt_finished: Callable[[str, bool], None],
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.mix_id = mix_id
        self._on_prompt_finished = on_prompt_finished
        self._on_failure = on_failure
        self.members: dict[str, MixMember] = {}
        self._order: list[MixMember] = []
        self._sent = np.zeros((8, FRAME_SAMPLES), dtype=np.int32)
        self._tick = 0
        self._mixed_tick = -1
        self._prompt: _Prompt | None = None
        self._prompt_frame: Pcm | None = None
        self._recording: _Recording | None = None
        self._error: Exception | None = None  # a mix that raised under a member's tick, raised again in our own

    # ---- membership ------------------------------------------------------------------------------

    def add(self, call_id: str, channel: MediaChannel, *, muted: bool = False, deaf: bool = False) -> MixMember:
        member = MixMember(self, call_id, channel, muted=muted, deaf=deaf)
        self.members[call_id] = member
        self._order.append(member)
        if len(self._order) > len(self._sent):
            self._sent = np.zeros((2 * len(self._order), FRAME_SAMPLES), dtype=np.int32)
        if self._recording is not None:
            self._recording.add_member(call_id)
        channel.room = member
        return member

    def remove(self, call_id: str) -> MixMember | None:
        member = self.members.pop(call_id, None)
        if member is None:
            return None
        self._order.remove(member)
        if member.channel.room is member:
            member.channel.room = None
        return member

    def update(self, call_id: str, *, muted: bool | None = None, deaf: bool | None = None) -> None:
        member = self.members[call_id]
        if muted is not None:
            member.muted = muted
        if deaf is not None:
            member.deaf = deaf

    # ---- prompt ------------------------------------------------------------------------------------

    def play(self, playback_id: str, source: AudioSource) -> None:
        """Replace the room's prompt (the old one is reported stopped) with `source`, from the next tick."""
        self.stop_prompt()
        self._prompt = _Prompt(playback_id, source)

    def stop_prompt(self) -> None:
        prompt, self._prompt = self._prompt, None
        self._prompt_frame = None
        if prompt is not None:
            self._on_prompt_finished(prompt.playback_id, False)

    @property
    def playing(self) -> str | None:
        return None if self._prompt is None else self._prompt.playback_id

    # ---- recording ---------------------------------------------------------------------------------

    def start_recording(self, path: Path, member_dir: Path | None) -> None:
        if self._recording is not None:
            raise RuntimeError("the mix is already being recorded")
        path.parent.mkdir(parents=True, exist_ok=True)
        if member_dir is not None:
            member_dir.mkdir(parents=True, exist_ok=True)
        recording = _Recording(path, member_dir)
        for call_id in self.members:
            recording.add_member(call_id)
        self._recording = recording

    @property
    def recording(self) -> bool:
        return self._recording is not None

    def stop_recording(self) -> RecordedMix | None:
        recording, self._recording = self._recording, None
        if recording is None:
            return None
        recording.mixed.close()
        for track in recording.tracks.values():
            track.close()
        return RecordedMix(
            recording.mixed.path,
            recording.mixed.frames_written * 20,
            {call_id: track.path for call_id, track in recording.tracks.items()},
        )

    # ---- clock -------------------------------------------------------------------------------------

    def pull_inbound(self) -> None:
        self._tick += 1
        prompt = self._prompt
        if prompt is None:
            self._prompt_frame = None
            return
        frame = prompt.source.read_frame()
        self._prompt_frame = frame
        if frame is None:
            self._prompt = None
            self._on_prompt_finished(prompt.playback_id, True)

    def push_outbound(self) -> None:
        self.ensure_mixed()  # the recording runs even when no member asked this tick
        error, self._error = self._error, None
        if error is not None:
            raise error  # the clock fails the mix (not the member whose tick computed it): `fail` below

    def fail(self, error: BaseException) -> None:
        if self._on_failure is not None:
            self._on_failure(error)

    def ensure_mixed(self) -> None:
        if self._mixed_tick != self._tick:
            self._mixed_tick = self._tick
            try:
                self._mix()
            except Exception as error:  # noqa: BLE001 - kept for push_outbound: a broken mix must not end a call
                self._error = error
                for member in self._order:
                    member.frame = None

    def _mix(self) -> None:
        members = self._order
        count = len(members)
        prompt = self._prompt_frame
        recording = self._recording
        if count == 0:
            if recording is not None:
                recording.mixed.write(prompt)
                for track in recording.tracks.values():
                    track.write(None)
            return
        sent = self._sent[:count]
        talkers = 0
        for row, member in enumerate(members):
            channel = member.channel
            frame = channel.inbound_frame
            if frame is None or member.muted or channel.closed:
                sent[row] = 0
                member.sent = None
            else:
                sent[row] = frame
                member.sent = frame
                talkers += 1
        room = sent.sum(axis=0)
        if prompt is not None:
            room += prompt
        if talkers == 0 and prompt is None:
            for member in members:
                member.frame = None
        else:
            heard = room - sent  # every member: the room without its own voice
            np.minimum(heard, 32767, out=heard)  # np.clip costs several times these two ufuncs on small arrays
            np.maximum(heard, -32768, out=heard)
            heard16 = heard.astype(np.int16)
            for row, member in enumerate(members):
                member.frame = None if member.deaf else heard16[row]
        if recording is not None:
            recording.mixed.write(
                np.maximum(np.minimum(room, 32767), -32768).astype(np.int16) if talkers or prompt is not None else None
            )
            if recording.tracks:
                for call_id, track in recording.tracks.items():
                    present = self.members.get(call_id)
                    track.write(None if present is None else present.sent)
