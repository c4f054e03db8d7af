"""Signals on what the real engine heard: the caller's cancellation, found on the caller's channel."""

from __future__ import annotations

import pytest

from callplane.core.signals import SignalDefinition, detect_signals
from callplane.core.transcripts import Speaker, Transcript
from tests.transcripts import speech

pytestmark = pytest.mark.xdist_group("asr")


def test_cancellation_on_a_real_call(call: speech.StereoCall, call_transcript: Transcript) -> None:
    definitions = [
        SignalDefinition.from_config(name="Cancellation", phrases={"caller": ["cancel*"]}),
        SignalDefinition.from_config(name="Agent cancels", phrases={"agent": ["cancel*"]}),
        SignalDefinition.from_config(name="Helpful agent", phrases={"agent": ["help you"]}),
    ]
    found = {d.name: d for d in detect_signals(definitions, call_transcript)}
    (evidence,) = found["Cancellation"].evidence
    assert evidence.speaker is Speaker.CALLER and evidence.words.casefold().startswith("cancel")
    assert call.caller_start_s < evidence.start_s < call.agent_start_s
    assert not found["Agent cancels"].detected
    assert found["Helpful agent"].evidence[0].speaker is Speaker.AGENT
