"""What a live call plays and hears: say, play, stop, send and capture DTMF, start and stop recording.

Each action answers as soon as it is accepted; what happens later (the prompt ends, digits are captured, the
file is ready, or the action fails) is an event of the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from callplane.core.recordings.fetch import FetchLimits, fetch_http
from callplane.core.recordings.targets import TargetPolicy
from callplane.core.voice import files as media_files
from callplane.core.voice import queries
from callplane.core.voice.events import VoiceEventType
from callplane.core.voice.models import VoiceCall, VoiceCallState, VoiceRecording
from callplane.core.voice.schemas import CaptureRequest, PlayContent, PlayOptions, RecordingRequest, Speech
from callplane.core.voice.states import InvalidCallState
from callplane.db.base import new_id, utcnow
from callplane.errors import CallplaneError, InvalidInput
from callplane.live.calls import LiveCall, LiveCalls, Playback
from callplane.media.engine import (
    CollectionEnd,
    DtmfCollection,
    FileSource,
    PlaybackFinished,
    PlaySource,
    SpeechSource,
    ToneSource,
)
from callplane.media.engine import RecordingChannels as EngineChannels

URL_CACHE_DIRECTORY = "voice-url-cache"
RECORDING_BEEP = ToneSource((1000.0,), 400, 0)  # start-recording's `beep`: 0.4 s of 1 kHz, then the recording
BEEP_WAIT_S = 10.0  # a beep whose end is never reported (the call ended): the recording is given up
DEFAULT_WORDS_PER_MINUTE = 160


class MediaActions:
    def __init__(self, *, calls: LiveCalls, fetch_policy: TargetPolicy) -> None:
        self.calls = calls
        self.engine = calls.engine
        self.fetch_policy = fetch_policy
        self._beeps: dict[str, asyncio.Future[bool]] = {}  # playback id of a recording's beep -> its end

    # ---- commands -------------------------------------------------------------------------------

    async def say(self, *, account_id: str, call_id: str, speech: Speech, options: PlayOptions) -> None:
        await self._start_playback(
            account_id, call_id, PlayContent(speech=speech), options, VoiceEventType.SAY_FINISHED
        )

    async def play(self, *, account_id: str, call_id: str, content: PlayContent, options: PlayOptions) -> None:
        await self._start_playback(account_id, call_id, content, options, VoiceEventType.PLAY_FINISHED)

    async def stop_play(self, *, account_id: str, call_id: str) -> None:
        live = await self.calls.require(account_id, call_id)
        pending, live.pending_play = live.pending_play, None
        if pending is not None and not pending[0].done():
            pending[0].cancel()  # stopped before its audio was ready: it never played
            await self.calls.emit(call_id, pending[1], played_completely=False, duration_ms=0, custom_data=pending[2])
            return
        await self.engine.stop_playback(live.engine_id)

    async def send_dtmf(self, *, account_id: str, call_id: str, digits: str) -> None:
        if not digits or any(digit not in "0123456789*#ABCDabcd" for digit in digits):
            raise InvalidInput("dtmf must be digits 0-9, *, # or A-D")
        live = await self.calls.require(account_id, call_id)
        sending = self.engine.send_dtmf(live.engine_id, digits.upper())
        self.calls.spawn(self._guarded(live, "SEND_DTMF", sending), "dtmf")

    async def capture_dtmf(self, *, account_id: str, call_id: str, request: CaptureRequest) -> None:
        if request.max_length < 1:
            raise InvalidInput("maxLength must be at least 1")
        if request.timeout_ms < 1:
            raise InvalidInput("timeout must be a positive number of milliseconds")
        live = await self.calls.require(account_id, call_id)
        if live.capture is not None and not live.capture.done():
            raise InvalidCallState("a DTMF capture is already running on this call")
        source = await self.source(account_id, request.play) if request.play is not None else None
        live.capture = self.calls.spawn(self._capture(live, request, source), "capture")

    async def start_recording(self, *, account_id: str, call_id: str, request: RecordingRequest) -> None:
        live = await self.calls.require(account_id, call_id)
        call = await self.calls.get_call(account_id=account_id, call_id=call_id)
        if call.state not in (VoiceCallState.ESTABLISHED, VoiceCallState.PRE_ESTABLISHED):
            raise InvalidCallState("only a connected call can be recorded")
        await self.begin_recording(live, call, request)

    async def stop_recording(self, *, account_id: str, call_id: str) -> None:
        live = await self.calls.require(account_id, call_id)
        if live.recording_id is None:
            raise InvalidCallState("the call is not being recorded")
        if live.recording_dialog_id is not None:
            raise InvalidCallState("the call is recorded as part of its dialog: stop the dialog's recording")
        if live.recording_limited:  # the client: "If this field is set the recording can't be stopped"
            raise InvalidCallState("a recording with maxSilence or maxDuration stops by itself, or with the call")
        if live.recording_beeping:  # stopped before it started: nothing was recorded
            live.recording_id, live.recording_beeping = None, False
            return
        await self.engine.stop_recording(live.engine_id)  # RecordingFinished makes it ready

    # ---- what the engine reports ----------------------------------------------------------------

    async def on_digit(self, live: LiveCall, digit: str) -> None:
        """A key the far end pressed: a prompt with stopOn takes it (its event reports the keys, the terminator
        included, as the guide's example shows); a key nothing collects (no capture, no such prompt still playing)
        is reported on its own, one event per key (the guide's "unsolicited" DTMF)."""
        taken = live.capture is not None and not live.capture.done()
        for playback in list(live.playbacks.values()):
            if not playback.stop_on_dtmf or _stopped_by_keys(playback):
                continue
            taken = True
            playback.digits += digit
            if playback.terminator is None or digit == playback.terminator:
                with contextlib.suppress(CallplaneError):
                    await self.engine.stop_playback(live.engine_id)
        if not taken:
            await self.calls.emit(live.call_id, VoiceEventType.DIGITS_CAPTURED, digits=digit, timed_out=False)

    async def on_playback_finished(self, live: LiveCall, event: PlaybackFinished) -> None:
        beep = self._beeps.pop(event.playback_id, None)
        if beep is not None:  # a recording's beep: the recording starts now
            if not beep.done():
                beep.set_result(event.completed)
            return
        playback = live.playbacks.pop(event.playback_id, None)
        if playback is None:
            return  # a capture's prompt or an unknown playback: nothing to report
        duration_ms = round((time.monotonic() - playback.started) * 1000)
        if playback.dialog_id is not None:
            await self.calls.emit_dialog(
                playback.dialog_id, playback.kind, played_completely=event.completed, duration_ms=duration_ms
            )
            return
        await self.calls.emit(
            live.call_id,
            playback.kind,
            played_completely=event.completed,
            duration_ms=duration_ms,
            digits=playback.digits if playback.stop_on_dtmf else None,
            custom_data=playback.custom_data,
        )

    # ---- shared with dialogs --------------------------------------------------------------------

    async def begin_recording(self, live: LiveCall, call: VoiceCall, request: RecordingRequest) -> None:
        if live.recording_id is not None:
            raise InvalidCallState("the call is already being recorded")
        recording = await self._recording_row(call, request)
        if request.beep:
            self._after_beep(live, recording, request)
            return
        await self._start_recorder(live, recording, request)

    async def record_on_answer(self, live: LiveCall, call: VoiceCall, request: RecordingRequest) -> None:
        """The recording a call asked for when created or answered: one that cannot start is the call's
        CALL_RECORDING_FAILED (nobody is waiting for an answer)."""
        if live.recording_id is not None:
            return
        recording = await self._recording_row(call, request)
        if request.beep:
            self._after_beep(live, recording, request)
            return
        try:
            await self._start_recorder(live, recording, request)
        except CallplaneError as error:
            await self.calls.emit(
                call.id, VoiceEventType.CALL_RECORDING_FAILED, recording=recording, detail=error.message
            )

    def _after_beep(self, live: LiveCall, recording: VoiceRecording, request: RecordingRequest) -> None:
        """`beep`: the call hears a short beep (replacing what it hears), then the recording starts. The call counts
        as recorded meanwhile (a second start is refused; a stop cancels it)."""
        live.recording_id, live.recording_beeping = recording.id, True

        async def beep_then_record() -> None:
            try:
                playback_id = await self.engine.play(live.engine_id, RECORDING_BEEP)
                ended = self._beeps[playback_id] = asyncio.get_running_loop().create_future()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ended, BEEP_WAIT_S)
                self._beeps.pop(playback_id, None)
                if live.recording_id != recording.id or not live.recording_beeping:
                    return  # stopped during the beep
                live.recording_beeping = False
                if live.call_id not in self.calls.by_call:
                    return  # the call ended during the beep: its terminal event says so
                await self._start_recorder(live, recording, request)
            except CallplaneError as error:
                live.recording_beeping = False
                if live.recording_id == recording.id:
                    live.recording_id = None
                if live.call_id in self.calls.by_call:
                    await self.calls.emit(
                        live.call_id, VoiceEventType.CALL_RECORDING_FAILED, recording=recording, detail=error.message
                    )

        self.calls.spawn(beep_then_record(), "recording-beep")

    async def _recording_row(self, call: VoiceCall, request: RecordingRequest) -> VoiceRecording:
        file_id = new_id()
        storage_key = f"{call.account_id}/{file_id}.wav"
        name = f"{file_id}.wav"  # always `<fileId>.wav` (the guide); filePrefix names only SFTP zips
        recording = VoiceRecording(
            id=file_id,
            account_id=call.account_id,
            call_id=call.id,
            configuration_id=call.configuration_id,
            name=name,
            storage_key=storage_key,
            channels=request.channels.value,
            custom_data=dict(request.custom_data),
            started_at=utcnow(),
        )
        async with self.calls.sessions() as session, session.begin():
            session.add(recording)
        return recording

    async def _start_recorder(self, live: LiveCall, recording: VoiceRecording, request: RecordingRequest) -> None:
        """The engine records into the file; CALL_RECORDING_STARTED once it does."""
        live.recording_id = recording.id
        live.recording_limited = request.max_silence_s is not None or request.max_duration_s is not None
        try:
            target = self.calls.recordings_dir() / recording.storage_key
            await self.engine.start_recording(
                live.engine_id,
                target,
                EngineChannels(request.channels),
                max_silence_s=request.max_silence_s,
                max_duration_s=request.max_duration_s,
            )
        except CallplaneError:
            live.recording_id, live.recording_limited = None, False
            raise
        await self.calls.emit(
            recording.call_id, VoiceEventType.CALL_RECORDING_STARTED, recording=recording, recording_options=request
        )

    async def source(self, account_id: str, content: PlayContent) -> PlaySource:
        if content.speech is not None:
            return speech_source(content.speech)
        if content.file_id is not None:
            async with self.calls.sessions() as session, session.begin():  # a play moves the file's unused expiry
                media_file = await media_files.use_media_file(
                    session=session, account_id=account_id, file_id=content.file_id
                )
            try:
                return FileSource(await self.calls.store.fetch(media_files.media_file_key(media_file)))
            except FileNotFoundError as error:
                raise media_files.MediaFileNotFound("the file's audio is missing from storage") from error
        if content.recording_file_id is not None:
            async with self.calls.sessions() as session:
                recording = await queries.ready_recording(
                    session, account_id=account_id, file_id=content.recording_file_id
                )
            try:
                return FileSource(await self.calls.store.fetch(queries.recording_key(recording)))
            except FileNotFoundError as error:
                raise queries.RecordingNotFound("Recording file not found.") from error
        if content.url is not None:
            return FileSource(await self.download(content.url))
        raise InvalidInput("content needs a file, a recording, a URL or text")

    async def download(self, url: str) -> Path:
        """A customer URL, fetched once through the SSRF-safe fetcher and cached by URL."""
        cache = self.calls.data_dir / URL_CACHE_DIRECTORY
        cache.mkdir(parents=True, exist_ok=True)
        target = cache / hashlib.sha256(url.encode()).hexdigest()
        if not target.is_file():
            await fetch_http(url, dest=target, policy=self.fetch_policy, limits=FetchLimits(max_bytes=64 * 1024 * 1024))
        return target

    # ---- internals ------------------------------------------------------------------------------

    async def _start_playback(
        self, account_id: str, call_id: str, content: PlayContent, options: PlayOptions, kind: VoiceEventType
    ) -> None:
        if options.loop_count < 1:
            raise InvalidInput("loopCount must be at least 1")
        live = await self.calls.require(account_id, call_id)
        # a URL is fetched in the background (it may be slow or fail: an ERROR event); the rest is checked now
        source = None if content.url is not None else await self.source(account_id, content)

        async def start() -> None:
            started = time.monotonic()
            playback_id = await self.engine.play(
                live.engine_id,
                source if source is not None else FileSource(await self.download(content.url or "")),
                loop_count=options.loop_count,
                offset_ms=options.offset_ms,
                timeout_ms=options.timeout_ms,
            )
            for previous, playing in list(live.playbacks.items()):
                if playing.dialog_id is None:  # replaced: the engine reports it stopped, we report only the new one
                    live.playbacks.pop(previous)
            live.playbacks[playback_id] = Playback(
                kind=kind,
                started=started,
                stop_on_dtmf=options.stop_on_dtmf,
                terminator=options.stop_terminator,
                custom_data=dict(options.custom_data),
            )

        action = "SAY" if kind is VoiceEventType.SAY_FINISHED else "PLAY"
        if live.pending_play is not None:
            live.pending_play[0].cancel()  # replaced before it started
        task = self.calls.spawn(self._guarded(live, action, start()), "play")
        live.pending_play = (task, kind, dict(options.custom_data))

    async def _guarded(self, live: LiveCall, action: str, work: Coroutine[Any, Any, Any]) -> None:
        """Run an accepted action; a failure becomes an ERROR event (the API already answered 200)."""
        try:
            await work
        except CallplaneError as error:
            if live.call_id in self.calls.by_call:
                await self.calls.emit(live.call_id, VoiceEventType.ACTION_FAILED, action=action, detail=error.message)

    async def _capture(self, live: LiveCall, request: CaptureRequest, prompt: PlaySource | None) -> None:
        if prompt is not None:
            await self.engine.play(live.engine_id, prompt)
        try:
            collected: DtmfCollection = await self.engine.collect_dtmf(
                live.engine_id,
                max_length=request.max_length,
                terminator=request.terminator,
                first_digit_timeout_s=request.timeout_ms / 1000,
                inter_digit_timeout_s=(request.digit_timeout_ms or request.timeout_ms) / 1000,
            )
        except CallplaneError as error:
            if live.call_id in self.calls.by_call:
                await self.calls.emit(
                    live.call_id, VoiceEventType.ACTION_FAILED, action="CAPTURE_DTMF", detail=error.message
                )
            return
        if prompt is not None:
            with contextlib.suppress(CallplaneError):
                await self.engine.stop_playback(live.engine_id)
        if live.call_id not in self.calls.by_call or collected.ended_by is CollectionEnd.HANGUP:
            return  # the call ended while collecting: its terminal event says so
        await self.calls.emit(
            live.call_id,
            VoiceEventType.DIGITS_CAPTURED,
            digits=collected.digits,
            timed_out=collected.ended_by is CollectionEnd.TIMEOUT,
            custom_data=dict(request.custom_data),
        )


def _stopped_by_keys(playback: Playback) -> bool:
    """Whether the keys a prompt took already stopped it (its PlaybackFinished is on its way)."""
    if not playback.digits:
        return False
    return playback.terminator is None or playback.digits.endswith(playback.terminator)


def speech_source(speech: Speech) -> SpeechSource:
    if not speech.text.strip():
        raise InvalidInput("text must not be empty")
    if not 0.5 <= speech.speech_rate <= 2.0:
        raise InvalidInput("speechRate must be between 0.5 and 2.0")
    voice = speech.language.lower()
    if speech.gender == "FEMALE":
        voice += "+f3"
    elif speech.gender == "MALE":
        voice += "+m3"
    return SpeechSource(speech.text, voice=voice, words_per_minute=round(DEFAULT_WORDS_PER_MINUTE * speech.speech_rate))
