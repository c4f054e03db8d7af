"""Hold and resume: a party of a bridged call hears music instead of the other party, and is bridged back on resume.

A component of the voice service over the registry of live calls, built only on the engine's own commands: `unbridge`
the held party, `play` the music to it in a loop (`loop_count`), and on resume `stop_playback` and `bridge` again.
The party it was bridged with hears silence meanwhile (or talks to someone else: a warm transfer's consult bridges
the holding agent to a second agent with `connect`).

The music is the call's own (an uploaded file, a recording, a URL: the Calls API's play content) or the default one
shipped in the package, `hold_music.wav`: a short melody this module synthesises (`synthesise_hold_music`), so
nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import update

from callplane.core.voice.events import VoiceEventType
from callplane.core.voice.models import DialogHangupSource, DialogState, VoiceCall, VoiceCallState, VoiceDialog
from callplane.core.voice.schemas import PlayContent
from callplane.core.voice.states import DIALOG_LIVE, CallNotLive, ErrorCode, InvalidCallState
from callplane.db.base import utcnow
from callplane.errors import CallplaneError
from callplane.live.calls import LiveCalls
from callplane.live.media_actions import MediaActions
from callplane.media.audio import SAMPLE_RATE, write_wav
from callplane.media.engine import FileSource, PlaySource

log = logging.getLogger("callplane.voice")

HOLD_MUSIC = Path(__file__).with_name("hold_music.wav")
HOLD_LOOPS = 100_000  # loops of the music: far longer than any hold
# The default melody: (frequency of the note in Hz, of its bass an octave or two below), each note NOTE_S long.
# C major, F major, G major, C major arpeggios: the notes' frequencies are what a test looks for in the held audio.
MELODY = (
    (261.63, 130.81), (329.63, 130.81), (392.00, 130.81), (523.25, 130.81),
    (349.23, 174.61), (440.00, 174.61), (523.25, 174.61), (440.00, 174.61),
    (392.00, 98.00), (493.88, 98.00), (587.33, 98.00), (493.88, 98.00),
    (523.25, 130.81), (392.00, 130.81), (329.63, 130.81), (261.63, 130.81),
)  # fmt: skip
NOTE_S = 0.375


def synthesise_hold_music() -> np.ndarray:
    """The default hold music: 6 s of soft bell-like arpeggios (a note with its octave harmonic and a bass note,
    each fading out), 8 kHz 16-bit mono, peak about -12 dBFS."""
    per_note = int(SAMPLE_RATE * NOTE_S)
    t = np.arange(per_note) / SAMPLE_RATE
    attack = np.minimum(1.0, t / 0.01)
    envelope = attack * np.exp(-t * 4.0)
    notes = []
    for melody_hz, bass_hz in MELODY:
        tone = (
            np.sin(2 * np.pi * melody_hz * t)
            + 0.25 * np.sin(2 * np.pi * 2 * melody_hz * t)
            + 0.5 * np.sin(2 * np.pi * bass_hz * t)
        )
        notes.append(tone * envelope)
    music = np.concatenate(notes)
    music *= 8000 / np.max(np.abs(music))
    return music.astype(np.int16)


def hold_music_path(cache_dir: Path) -> Path:
    """The shipped melody; if the package was installed without it, synthesised once into `cache_dir`."""
    if HOLD_MUSIC.is_file():
        return HOLD_MUSIC
    target = cache_dir / "hold_music.wav"
    if not target.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_wav(target, synthesise_hold_music())
    return target


@dataclass
class Held:
    call_id: str
    peer_call_id: str | None  # the call it was bridged with: bridged again on resume
    playback_id: str
    since: datetime


class Holds:
    def __init__(self, *, calls: LiveCalls, media: MediaActions) -> None:
        self.calls = calls
        self.engine = calls.engine
        self.media = media
        self._held: dict[str, Held] = {}

    def held(self, call_id: str) -> Held | None:
        return self._held.get(call_id)

    def forget(self, call_id: str) -> None:
        """The call ended: nothing to resume."""
        self._held.pop(call_id, None)

    async def hold(self, *, account_id: str, call_id: str, music: PlayContent | None = None) -> Held:
        """Unbridge the call (if it is bridged in an established dialog) and loop music to it."""
        live = await self.calls.require(account_id, call_id)
        if call_id in self._held:
            raise InvalidCallState("the call is already on hold")
        call = await self.calls.get_call(account_id=account_id, call_id=call_id)
        if call.state != VoiceCallState.ESTABLISHED:
            raise InvalidCallState("only an answered call can be put on hold")
        source = await self._source(account_id, music)
        peer_call_id = await self._bridged_peer(call)
        if peer_call_id is not None:
            await self.engine.unbridge(live.engine_id)
        playback_id = await self.engine.play(live.engine_id, source, loop_count=HOLD_LOOPS)
        held = Held(call_id=call_id, peer_call_id=peer_call_id, playback_id=playback_id, since=utcnow())
        self._held[call_id] = held
        log.info("call on hold", extra={"fields": {"call_id": call_id, "peer": peer_call_id}})
        return held

    async def resume(self, *, account_id: str, call_id: str, rebridge: bool = True) -> Held:
        """Stop the music; bridge the call again with the party it was bridged with (unless `rebridge` is off:
        the caller bridges it elsewhere)."""
        held = self._held.get(call_id)
        if held is None:
            raise InvalidCallState("the call is not on hold")
        live = await self.calls.require(account_id, call_id)
        del self._held[call_id]
        with contextlib.suppress(CallplaneError):
            await self.engine.stop_playback(live.engine_id)
        peer = self.calls.get(held.peer_call_id) if rebridge else None
        if peer is not None:
            await self.engine.unbridge(peer.engine_id)  # a consult it was in ends here
            await self.engine.bridge(live.engine_id, peer.engine_id)
        return held

    async def connect(self, *, account_id: str, call_id: str, other_call_id: str) -> None:
        """Bridge two answered calls outside any dialog (a warm transfer's consult); each leaves what it was
        bridged with."""
        first = await self.calls.require(account_id, call_id)
        second = await self.calls.require(account_id, other_call_id)
        for live in (first, second):
            with contextlib.suppress(CallplaneError):
                await self.engine.unbridge(live.engine_id)
        await self.engine.bridge(first.engine_id, second.engine_id)

    async def disconnect(self, *, account_id: str, call_id: str) -> None:
        live = await self.calls.require(account_id, call_id)
        with contextlib.suppress(CallplaneError):
            await self.engine.unbridge(live.engine_id)

    async def leave_dialog(self, *, account_id: str, call_id: str) -> None:
        """The call leaves its dialog, which ends (FINISHED, source API) without hanging the call up: the call is
        then free to join another dialog (a transfer's new agent). The other leg is left as it is."""
        call = await self.calls.get_call(account_id=account_id, call_id=call_id)
        if call.dialog_id is None:
            return
        dialog_id = call.dialog_id
        state, finished = DialogState.FINISHED, False
        async with self.calls.sessions() as session, session.begin():
            dialog = await session.get(VoiceDialog, dialog_id)
            if dialog is not None:
                state = DialogState.FINISHED if dialog.state == DialogState.ESTABLISHED else DialogState.FAILED
                ended = await session.execute(
                    update(VoiceDialog)
                    .where(VoiceDialog.id == dialog_id, VoiceDialog.state.in_(DIALOG_LIVE))
                    .values(
                        state=state,
                        ended_at=utcnow(),
                        hangup_source=DialogHangupSource.API,
                        error_code=int(ErrorCode.NORMAL_HANGUP),
                    )
                    .execution_options(synchronize_session=False)
                )
                finished = getattr(ended, "rowcount", 0) == 1
            await session.execute(update(VoiceCall).where(VoiceCall.id == call_id).values(dialog_id=None))
        if finished:
            kind = VoiceEventType.DIALOG_FINISHED if state == DialogState.FINISHED else VoiceEventType.DIALOG_FAILED
            await self.calls.emit_dialog(dialog_id, kind)

    async def _source(self, account_id: str, music: PlayContent | None) -> PlaySource:
        if music is None:
            return FileSource(hold_music_path(self.calls.data_dir / "media-cache"))
        return await self.media.source(account_id, music)

    async def _bridged_peer(self, call: VoiceCall) -> str | None:
        if call.dialog_id is None:
            return None
        async with self.calls.sessions() as session:
            dialog = await session.get(VoiceDialog, call.dialog_id)
        if dialog is None or dialog.state != DialogState.ESTABLISHED or dialog.child_call_id is None:
            return None
        peer = dialog.child_call_id if dialog.parent_call_id == call.id else dialog.parent_call_id
        if self.calls.get(peer) is None:
            raise CallNotLive("the other party of the call has already left")
        return peer
