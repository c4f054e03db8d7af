"""Answering-machine detection on live calls (`machineDetection` of an outbound call or a dialog's child).

A component of the voice service over the registry of live calls. When a call that asked for it is answered
(`LegEvent.ESTABLISHED`) it puts an audio tap on the call; every 20 ms frame the far end sends goes to the call's
detector (media/amd.py), on the event loop, in the engine's tick. The detector's verdict becomes
MACHINE_DETECTION_FINISHED (HUMAN or MACHINE, with its confidence per class); with a message timeout, the end of a
machine's greeting (its beep, or the silence after it) becomes MACHINE_MESSAGE_DETECTION_FINISHED, or
MACHINE_MESSAGE_DETECTION_FAILED at the timeout. Then the tap comes off. Nothing else happens to the call: what to
do with a machine is the application's business, as on Infobip.

No verdict (MACHINE_DETECTION_FAILED, with why): the call has no media to tap, no audio reached the tap by the
detection time (a watchdog, on the loop's clock, `WATCHDOG_GRACE_S` later), or the call ended first. A call's events
are written one after another, in the order the detector gave them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from callplane.core.voice.events import VoiceEventType
from callplane.core.voice.schemas import MachineDetectionRequest
from callplane.errors import CallplaneError
from callplane.live.calls import LegChange, LegEvent, LiveCall, LiveCalls
from callplane.media.amd import AnsweringMachineDetector, Decision, MessageEnd, Outcome, Verdict
from callplane.media.g711 import Pcm

log = logging.getLogger("callplane.voice.amd")

WATCHDOG_GRACE_S = 1.0  # past the detection time (or message timeout) without the detector's answer: no audio came


@dataclass
class _Detection:
    """One call's detection while it runs."""

    call_id: str
    engine_id: str
    detector: AnsweringMachineDetector
    tap_id: str | None = None
    watchdog: asyncio.TimerHandle | None = None
    events: asyncio.Task[Any] | None = None  # the last event written: the next one waits for it
    finished: bool = False  # the tap came off (or is coming off)


class _Tap:
    """The engine's `AudioTap` for one call: the far end's frames into its detector."""

    def __init__(self, owner: MachineDetection, detection: _Detection) -> None:
        self._owner = owner
        self._detection = detection

    def write(self, inbound: Pcm | None, outbound: Pcm | None) -> None:
        detection = self._detection
        if detection.finished:
            return
        for outcome in detection.detector.frame(inbound):
            self._owner.on_outcome(detection, outcome)


class MachineDetection:
    def __init__(self, *, calls: LiveCalls) -> None:
        self.calls = calls
        self.engine = calls.engine
        self._running: dict[str, _Detection] = {}  # by our call id

    def running(self) -> int:
        return len(self._running)

    async def on_leg(self, change: LegChange) -> None:
        """A leg event of the call control: an answer starts detection, an end stops it."""
        if change.event is LegEvent.ESTABLISHED:
            live = self.calls.get(change.call_id)
            if live is not None and live.machine_detection is not None and change.call_id not in self._running:
                await self._start(live, live.machine_detection)
        elif change.event in (LegEvent.FINISHED, LegEvent.FAILED):
            detection = self._running.get(change.call_id)
            if detection is not None:
                self._give_up(detection, "the call ended before the detection did")

    async def _start(self, live: LiveCall, request: MachineDetectionRequest) -> None:
        detection = _Detection(
            call_id=live.call_id,
            engine_id=live.engine_id,
            detector=AnsweringMachineDetector(
                detection_time_ms=request.detection_time_ms, message_timeout_ms=request.message_timeout_ms
            ),
        )
        self._running[live.call_id] = detection
        try:
            detection.tap_id = await self.engine.add_audio_tap(live.engine_id, _Tap(self, detection))
        except CallplaneError as error:
            log.info("no audio to detect on", extra={"fields": {"call_id": live.call_id, "error": str(error)}})
            self._give_up(detection, "the call has no audio to listen to")
            return
        if detection.finished:  # ended while the tap went on
            await self._remove_tap(detection)
            return
        self._watch(detection, request.detection_time_ms)

    def _watch(self, detection: _Detection, until_ms: int) -> None:
        if detection.watchdog is not None:
            detection.watchdog.cancel()
        delay_s = max(0.0, (until_ms - detection.detector.elapsed_ms) / 1000) + WATCHDOG_GRACE_S
        detection.watchdog = asyncio.get_running_loop().call_later(
            delay_s, self._give_up, detection, "no audio from the far end"
        )

    def on_outcome(self, detection: _Detection, outcome: Outcome) -> None:
        """What the detector found (called in the tap's write, on the loop): its event, then maybe the tap off."""
        detector = detection.detector
        if isinstance(outcome, Decision):
            log.info(
                "machine detection",
                extra={"fields": {"call_id": detection.call_id, "verdict": outcome.verdict, "cue": outcome.cue}},
            )
            self._event(
                detection,
                VoiceEventType.MACHINE_DETECTION_FINISHED,
                detection_result=outcome.verdict.value,
                confidence=dict(outcome.confidence),
            )
            if detector.done:
                self._finish(detection)
            elif detector.message_timeout_ms:
                self._watch(detection, detector.message_timeout_ms)
        elif isinstance(outcome, MessageEnd):
            if outcome.found:
                self._event(
                    detection,
                    VoiceEventType.MACHINE_MESSAGE_DETECTION_FINISHED,
                    detection_result=Verdict.MACHINE.value,
                )
            else:
                self._event(
                    detection,
                    VoiceEventType.MACHINE_MESSAGE_DETECTION_FAILED,
                    detail="no end of the message within messageDetectionTimeout",
                )
            self._finish(detection)

    def _give_up(self, detection: _Detection, why: str) -> None:
        """No (further) answer from the detector: the pending result fails, with why."""
        if detection.finished:
            return
        if detection.detector.decision is None:
            self._event(detection, VoiceEventType.MACHINE_DETECTION_FAILED, detail=why)
        else:
            self._event(detection, VoiceEventType.MACHINE_MESSAGE_DETECTION_FAILED, detail=why)
        self._finish(detection)

    def _finish(self, detection: _Detection) -> None:
        detection.finished = True
        if detection.watchdog is not None:
            detection.watchdog.cancel()
        self._running.pop(detection.call_id, None)
        if detection.tap_id is not None:
            self.calls.spawn(self._remove_tap(detection), "amd-untap")

    async def _remove_tap(self, detection: _Detection) -> None:
        if detection.tap_id is None:
            return
        with contextlib.suppress(CallplaneError):  # the call ended: its taps went with it
            await self.engine.remove_audio_tap(detection.engine_id, detection.tap_id)

    def _event(self, detection: _Detection, event_type: VoiceEventType, **details: Any) -> None:
        previous = detection.events
        detection.events = self.calls.spawn(
            self._in_order(previous, self.calls.emit(detection.call_id, event_type, **details)), "amd-event"
        )

    @staticmethod
    async def _in_order(previous: asyncio.Task[Any] | None, emit: Coroutine[Any, Any, None]) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # its own failure was logged where it happened
        try:
            await emit
        except Exception:  # a lost event is logged with its cause; the call carries on
            log.exception("machine detection event failed")
