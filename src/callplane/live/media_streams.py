"""Media streaming on live calls (`start-media-stream` / `stop-media-stream`; docs/voice.md "Media streaming").

A component of the voice service over the registry of live calls. Starting a stream reads the call's media-stream
configuration (the password decrypted), checks its URL against the outbound target policy (the same one webhooks,
recording fetches and SIP targets go through; the connection then goes to the checked address), puts a
`media.streaming.MediaStream` on the call as an audio tap and connects in the background: MEDIA_STREAM_STARTED once
the preamble went out (and, with replaceMedia, from then on the call's peers hear what the server sends back),
MEDIA_STREAM_FINISHED when it is stopped or the call ends, MEDIA_STREAM_FAILED (with why) when the server cannot be
reached, refuses the handshake, or closes or breaks the connection. Then the tap comes off and the peers hear the
leg itself again. One stream per call at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.recordings.errors import HostNotFound, InvalidTargetUrl, TargetRefused
from callplane.core.recordings.targets import TargetPolicy
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.voice import media_streams as configs
from callplane.core.voice.events import VoiceEventType
from callplane.core.voice.models import VoiceCallState
from callplane.core.voice.schemas import MediaStreamRequest
from callplane.core.voice.states import InvalidCallState
from callplane.errors import CallplaneError, InvalidInput
from callplane.live.calls import LegChange, LegEvent, LiveCalls
from callplane.media.streaming import MediaStream, StreamEnd, StreamTarget

log = logging.getLogger("callplane.voice.media_streams")

_END_REASONS = {StreamEnd.STOPPED: "Stopped by request", StreamEnd.CALL_ENDED: "The call ended"}


class MediaStreamTargetRefused(InvalidInput):
    """The media-stream configuration's URL may not be connected to (outbound target policy)."""


@dataclass
class _Running:
    call_id: str
    engine_id: str
    config_id: str
    stream: MediaStream
    replace_media: bool
    tap_id: str | None = None
    task: asyncio.Task[Any] | None = None
    started: asyncio.Task[Any] | None = None  # MEDIA_STREAM_STARTED (and the replacement) once connected


class MediaStreams:
    def __init__(
        self,
        *,
        calls: LiveCalls,
        sessions: async_sessionmaker[AsyncSession],
        secret_box: SecretBox,
        policy: TargetPolicy,
    ) -> None:
        self.calls = calls
        self.engine = calls.engine
        self.sessions = sessions
        self.secret_box = secret_box
        self.policy = policy
        self._running: dict[str, _Running] = {}  # by our call id

    def running(self) -> int:
        return len(self._running)

    def stream(self, call_id: str) -> MediaStream | None:
        """The call's stream while it runs (tests, bench)."""
        running = self._running.get(call_id)
        return None if running is None else running.stream

    async def start(self, *, account_id: str, call_id: str, request: MediaStreamRequest) -> None:
        live = await self.calls.require(account_id, call_id)
        call = await self.calls.get_call(account_id=account_id, call_id=call_id)
        if call.state not in (VoiceCallState.ESTABLISHED, VoiceCallState.PRE_ESTABLISHED):
            raise InvalidCallState("only a connected call can stream its media")
        if call_id in self._running:
            raise InvalidCallState("the call's media is already streaming (stop-media-stream first)")
        async with self.sessions() as session:
            endpoint = await configs.stream_endpoint(
                session=session, account_id=account_id, config_id=request.config_id, secret_box=self.secret_box
            )
        try:
            addresses = await self.policy.check_url(endpoint.url, schemes=("ws", "wss"))
        except (InvalidTargetUrl, HostNotFound, TargetRefused) as error:
            raise MediaStreamTargetRefused(f"cannot stream to {endpoint.url}: {error.message}") from error
        target = StreamTarget(
            url=endpoint.url,
            call_id=call_id,
            sample_rate=endpoint.sample_rate,
            replace_media=request.replace_media,
            address=str(addresses[0]),
            username=endpoint.username,
            password=endpoint.password,
        )
        if call_id in self._running:  # a second start raced this one while it read the configuration
            raise InvalidCallState("the call's media is already streaming (stop-media-stream first)")
        running = _Running(call_id, live.engine_id, request.config_id, MediaStream(target), request.replace_media)
        running.stream.on_connected = lambda: self._connected(running)
        self._running[call_id] = running
        try:
            running.tap_id = await self.engine.add_audio_tap(live.engine_id, running.stream)
        except CallplaneError:
            self._running.pop(call_id, None)
            raise
        running.task = self.calls.spawn(self._run(running), "media-stream")

    async def stop(self, *, account_id: str, call_id: str) -> None:
        await self.calls.require(account_id, call_id)
        running = self._running.get(call_id)
        if running is None:
            raise InvalidCallState("the call's media is not streaming")
        running.stream.stop(StreamEnd.STOPPED)

    async def on_leg(self, change: LegChange) -> None:
        """A leg event of the call control: the call's end ends its stream."""
        if change.event in (LegEvent.FINISHED, LegEvent.FAILED):
            running = self._running.get(change.call_id)
            if running is not None:
                running.stream.stop(StreamEnd.CALL_ENDED)

    def stop_all(self) -> None:
        for running in list(self._running.values()):
            running.stream.stop(StreamEnd.STOPPED)

    # ---- the stream's course ----------------------------------------------------------------------

    def _connected(self, running: _Running) -> None:
        running.started = self.calls.spawn(self._announce(running), "media-stream-started")

    async def _announce(self, running: _Running) -> None:
        if running.replace_media:
            with contextlib.suppress(CallplaneError):  # the call ended meanwhile: its end stops the stream
                await self.engine.replace_inbound_audio(running.engine_id, running.stream)
        await self._emit(running, VoiceEventType.MEDIA_STREAM_STARTED)

    async def _run(self, running: _Running) -> None:
        stream = running.stream
        try:
            end = await stream.run()
        finally:
            self._running.pop(running.call_id, None)
            await self._untap(running)
        if running.started is not None:
            await asyncio.wait([running.started])  # STARTED goes out before the end
        stats = stream.stats
        log.info(
            "media stream ended",
            extra={
                "fields": {
                    "call_id": running.call_id,
                    "end": end,
                    "frames_sent": stats.frames_sent,
                    "dropped": stats.dropped_backpressure,
                    "error": stream.error,
                }
            },
        )
        if end is StreamEnd.FAILED:
            await self._emit(running, VoiceEventType.MEDIA_STREAM_FAILED, detail=stream.error)
        else:
            await self._emit(running, VoiceEventType.MEDIA_STREAM_FINISHED, detail=_END_REASONS[end])

    async def _untap(self, running: _Running) -> None:
        with contextlib.suppress(CallplaneError):  # the call ended: its taps and replacement went with it
            if running.replace_media:
                await self.engine.replace_inbound_audio(running.engine_id, None)
            if running.tap_id is not None:
                await self.engine.remove_audio_tap(running.engine_id, running.tap_id)

    async def _emit(self, running: _Running, event_type: VoiceEventType, detail: str | None = None) -> None:
        try:
            await self.calls.emit(running.call_id, event_type, media_stream_config_id=running.config_id, detail=detail)
        except Exception:  # a lost event is logged with its cause; the call carries on
            log.exception("media stream event failed")
