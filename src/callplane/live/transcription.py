"""Live transcription of a call leg (`start-transcription` / `stop-transcription`): what the far end says, as
TRANSCRIPTION events, one COMPLETE result per utterance and, when asked, INTERIM ones while it goes on.

The engine hands the leg's audio to an audio tap on the media clock (`CallEngine.add_audio_tap`, on the event
loop every 20 ms); the tap runs the energy VAD at once (core/transcripts/streaming.py) and queues each utterance
to the live ASR's threads, so the clock never waits for a decode. Results come back on those threads and are
handed to the event loop, where one call's events are written in the order its words were said.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from callplane.core.transcripts.engine import whisper_language
from callplane.core.transcripts.streaming import (
    FRAME_SAMPLES,
    LiveAsr,
    LiveResult,
    LiveTranscript,
    ResultKind,
    StreamingTranscriber,
)
from callplane.core.voice.events import VoiceEventType
from callplane.core.voice.models import VoiceCallState
from callplane.core.voice.schemas import TranscriptionRequest
from callplane.core.voice.states import InvalidCallState
from callplane.db.base import utcnow
from callplane.errors import CallplaneError
from callplane.live.calls import LiveCall, LiveCalls
from callplane.media.g711 import Pcm

log = logging.getLogger("callplane.voice.transcription")

INTERIM_EVERY_S = 1.0  # an INTERIM result per second of ongoing speech, when the decode threads keep up
_SILENCE: Pcm = np.zeros(FRAME_SAMPLES, dtype=np.int16)
_MEDIA_STATES = (VoiceCallState.ESTABLISHED, VoiceCallState.PRE_ESTABLISHED)


@functools.cache
def _model_languages() -> frozenset[str]:
    # faster-whisper's own list (imported on the first check: it loads CTranslate2).
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


# Languages the model knows under another code (Filipino is Whisper's Tagalog; Javanese is "jw" there).
_MODEL_ALIASES = {"fil": "tl", "jv": "jw"}


def model_language(tag: str) -> str:
    """The tag to decode `tag` with, if the speech-to-text model knows its language; else UnsupportedLanguage
    (a 400)."""
    primary, _, rest = tag.strip().partition("-")
    alias = _MODEL_ALIASES.get(primary.lower())
    model_tag = f"{alias}-{rest}" if alias and rest else alias or tag
    whisper_language(model_tag, known=_model_languages())
    return model_tag


class InboundTap:
    """An audio tap that hands the far end's frames (silence for a tick without any) to `sink`, on the media
    clock's tick: `sink` must be quick (the VAD is; decodes are queued elsewhere)."""

    def __init__(self, sink: Callable[[Pcm], None]) -> None:
        self._sink = sink

    def write(self, inbound: Pcm | None, outbound: Pcm | None) -> None:
        self._sink(_SILENCE if inbound is None else inbound)


async def media_call(calls: LiveCalls, account_id: str, call_id: str, what: str) -> LiveCall:
    """The live call a speech command names, carried here and connected (else InvalidCallState, a 400)."""
    live = await calls.require(account_id, call_id)
    call = await calls.get_call(account_id=account_id, call_id=call_id)
    if call.state not in _MEDIA_STATES:
        raise InvalidCallState(f"only a connected call can {what}")
    return live


@dataclass
class _Session:
    call_id: str
    engine_id: str
    language: str
    stream: StreamingTranscriber
    started_at: datetime
    started_monotonic: float
    tap_id: str | None = None
    stopped: bool = False
    last_emit: asyncio.Task[Any] | None = None
    latencies_s: list[float] = field(default_factory=list)


class LiveTranscription:
    """The transcriptions running on this node's calls (one per call at a time)."""

    def __init__(self, *, calls: LiveCalls, asr: LiveAsr) -> None:
        self.calls = calls
        self.asr = asr
        self.sessions: dict[str, _Session] = {}
        # Seconds from an utterance's last speech frame to its COMPLETE event committed, newest last (bench).
        self.complete_latencies_s: list[float] = []

    async def start(self, *, account_id: str, call_id: str, request: TranscriptionRequest) -> None:
        model_tag = model_language(request.language)
        live = await media_call(self.calls, account_id, call_id, "be transcribed")
        if call_id in self.sessions:
            raise InvalidCallState("the call is already being transcribed")
        loop = asyncio.get_running_loop()
        session: _Session | None = None

        def on_result(result: LiveResult) -> None:  # a decode thread
            assert session is not None
            loop.call_soon_threadsafe(self._deliver, session, result)

        session = _Session(
            call_id=call_id,
            engine_id=live.engine_id,
            language=request.language,
            stream=StreamingTranscriber(
                decode=self.asr.decoder(model_tag),
                submit=self.asr.submit,
                on_result=on_result,
                interim_every_s=INTERIM_EVERY_S if request.interim else None,
            ),
            started_at=utcnow(),
            started_monotonic=time.monotonic(),
        )
        self.sessions[call_id] = session
        try:
            session.tap_id = await self.calls.engine.add_audio_tap(live.engine_id, InboundTap(session.stream.write))
        except CallplaneError:
            self.sessions.pop(call_id, None)
            raise

    async def stop(self, *, account_id: str, call_id: str) -> None:
        await self.calls.require(account_id, call_id)
        session = self.sessions.pop(call_id, None)
        if session is None:
            raise InvalidCallState("the call is not being transcribed")
        session.stopped = True
        if session.tap_id is not None:
            with contextlib.suppress(CallplaneError):
                await self.calls.engine.remove_audio_tap(session.engine_id, session.tap_id)
        session.stream.flush()  # what was being said when it stopped still gets its COMPLETE result
        session.stream.close()

    def call_ended(self, call_id: str) -> None:
        """The call ended (its taps went with it): utterances already cut are still reported."""
        session = self.sessions.pop(call_id, None)
        if session is not None:
            session.stopped = True
            session.stream.close()

    def _deliver(self, session: _Session, result: LiveResult) -> None:  # the event loop
        if result.kind is ResultKind.INTERIM and session.stopped:
            return
        previous = session.last_emit
        session.last_emit = self.calls.spawn(self._emit(session, previous, result), "transcription-event")

    async def _emit(self, session: _Session, previous: asyncio.Task[Any] | None, result: LiveResult) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # one call's results in order
        transcript = LiveTranscript(
            kind=result.kind,
            text=result.text,
            confidence=result.confidence,
            start=session.started_at + timedelta(seconds=result.start_s),
            end=session.started_at + timedelta(seconds=result.end_s),
            language=session.language,
        )
        try:
            await self.calls.emit(session.call_id, VoiceEventType.TRANSCRIPTION, transcript=transcript)
        except Exception:  # the next result still goes; this one is logged with its cause
            log.exception("transcription event failed", extra={"fields": {"call_id": session.call_id}})
            return
        if result.kind is ResultKind.COMPLETE:
            latency = time.monotonic() - result.ended_at
            session.latencies_s.append(latency)
            self.complete_latencies_s.append(latency)
            del self.complete_latencies_s[:-10_000]
