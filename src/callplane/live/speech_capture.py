"""Speech capture on a call leg (`capture/speech`): a short spoken answer, reported once as SPEECH_CAPTURED with
its text, the key phrase it matched, the recognition's confidence and why it ended (KEY_PHRASE, SILENCE, TIMEOUT,
HANGUP). The matching and the end conditions are core/transcripts/capture.py's; this wires them to the call's
audio tap and its events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from callplane.core.transcripts.capture import DEFAULT_MAX_SILENCE_S, CapturedSpeech, CaptureSettings, SpeechCapture
from callplane.core.transcripts.streaming import LiveAsr
from callplane.core.voice.events import VoiceEventType
from callplane.core.voice.schemas import SpeechCaptureRequest
from callplane.core.voice.states import InvalidCallState
from callplane.errors import CallplaneError, InvalidInput
from callplane.live.calls import LiveCalls
from callplane.live.transcription import InboundTap, media_call, model_language

log = logging.getLogger("callplane.voice.speech")

MAX_TIMEOUT_S = 30
MAX_SILENCE_LIMIT_S = 5


@dataclass
class _Capture:
    call_id: str
    engine_id: str
    capture: SpeechCapture
    request: SpeechCaptureRequest
    tap_id: str | None = None


class SpeechCaptures:
    """The speech captures running on this node's calls (one per call at a time)."""

    def __init__(self, *, calls: LiveCalls, asr: LiveAsr) -> None:
        self.calls = calls
        self.asr = asr
        self.running: dict[str, _Capture] = {}

    async def capture(self, *, account_id: str, call_id: str, request: SpeechCaptureRequest) -> None:
        if not 1 <= request.timeout_s <= MAX_TIMEOUT_S:
            raise InvalidInput(f"timeout must be between 1 and {MAX_TIMEOUT_S} seconds")
        if request.max_silence_s is not None and not 1 <= request.max_silence_s <= MAX_SILENCE_LIMIT_S:
            raise InvalidInput(f"maxSilence must be between 1 and {MAX_SILENCE_LIMIT_S} seconds")
        language = model_language(request.language)
        live = await media_call(self.calls, account_id, call_id, "capture speech")
        if call_id in self.running:
            raise InvalidCallState("a speech capture is already running on this call")
        loop = asyncio.get_running_loop()
        running: _Capture | None = None

        def on_done(outcome: CapturedSpeech) -> None:  # a decode thread, or the loop (hangup)
            assert running is not None
            loop.call_soon_threadsafe(self._done, running, outcome)

        running = _Capture(
            call_id=call_id,
            engine_id=live.engine_id,
            request=request,
            capture=SpeechCapture(
                settings=CaptureSettings(
                    timeout_s=float(request.timeout_s),
                    max_silence_s=float(request.max_silence_s or DEFAULT_MAX_SILENCE_S),
                    key_phrases=tuple(phrase for phrase in request.key_phrases if phrase.strip()),
                    terminate_on_key_phrase=request.terminate_on_key_phrase,
                ),
                decode=self.asr.decoder(language),
                submit=self.asr.submit,
                on_done=on_done,
            ),
        )
        self.running[call_id] = running
        try:
            running.tap_id = await self.calls.engine.add_audio_tap(live.engine_id, InboundTap(running.capture.write))
        except CallplaneError:
            self.running.pop(call_id, None)
            raise

    async def call_ended(self, call_id: str) -> None:
        """The call ended: a capture still running reports what it heard (HANGUP), before the terminal event."""
        running = self.running.pop(call_id, None)
        if running is None or running.capture.done:
            return
        outcome = running.capture.hangup()
        if outcome is not None:
            await self._emit(running, outcome)

    def _done(self, running: _Capture, outcome: CapturedSpeech) -> None:  # the event loop
        if self.running.get(running.call_id) is running:
            del self.running[running.call_id]
        self.calls.spawn(self._finish(running, outcome), "speech-captured")

    async def _finish(self, running: _Capture, outcome: CapturedSpeech) -> None:
        if running.tap_id is not None:
            with contextlib.suppress(CallplaneError):
                await self.calls.engine.remove_audio_tap(running.engine_id, running.tap_id)
        await self._emit(running, outcome)

    async def _emit(self, running: _Capture, outcome: CapturedSpeech) -> None:
        try:
            await self.calls.emit(
                running.call_id,
                VoiceEventType.SPEECH_CAPTURED,
                speech=outcome,
                custom_data=dict(running.request.custom_data),
            )
        except Exception:
            log.exception("speech capture event failed", extra={"fields": {"call_id": running.call_id}})
