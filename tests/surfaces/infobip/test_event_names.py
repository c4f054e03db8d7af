"""Infobip's voice event names live only in surfaces/infobip: the rest of the system speaks `VoiceEventType`."""

from __future__ import annotations

import ast
from pathlib import Path

import callplane
from callplane.core.voice.events import SUBSCRIBABLE_EVENT_TYPES, VoiceEventType, subscribable_names
from callplane.surfaces.infobip.calls_mapping import EVENT_NAMES, InfobipEventRenderer

SOURCE = Path(callplane.__file__).parent
# The surface that owns the names; migrations are history and may quote what rows held when they were written.
ALLOWED = (SOURCE / "surfaces" / "infobip", SOURCE / "db" / "migrations")
# Infobip event names no other part of the system may spell: the renderer's, and the prefixes of its families.
INFOBIP_NAMES = frozenset(EVENT_NAMES.values())
INFOBIP_PREFIXES = ("DIALOG_", "CALL_", "CONFERENCE_", "PARTICIPANT_")


def _strings(path: Path) -> list[tuple[int, str]]:
    """Every string literal of a module (f-string pieces included), with its line."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def _is_infobip_name(value: str) -> bool:
    if value in INFOBIP_NAMES:
        return True
    # A name built from a prefix (f"DIALOG_{state}"), or one the renderer does not know yet (CONFERENCE_CREATED).
    return value.startswith(INFOBIP_PREFIXES) and value.replace("_", "").isupper()


def test_no_infobip_event_name_outside_the_infobip_surface() -> None:
    found = [
        f"{path.relative_to(SOURCE)}:{line}: {value!r}"
        for path in sorted(SOURCE.rglob("*.py"))
        if not any(path.is_relative_to(allowed) for allowed in ALLOWED)
        for line, value in _strings(path)
        if _is_infobip_name(value)
    ]
    assert found == [], "Infobip event names outside surfaces/infobip:\n" + "\n".join(found)


def test_the_guard_sees_a_name_when_one_is_there(tmp_path: Path) -> None:
    module = tmp_path / "leak.py"
    module.write_text('EVENT = "CALL_ESTABLISHED"\nended = f"DIALOG_{state}"\nfine = "voice.call.established"\n')
    assert [value for _, value in _strings(module) if _is_infobip_name(value)] == ["CALL_ESTABLISHED", "DIALOG_"]


def test_the_renderer_names_every_neutral_event_once() -> None:
    renderer = InfobipEventRenderer()
    assert set(EVENT_NAMES) == set(VoiceEventType)
    assert len(set(EVENT_NAMES.values())) == len(VoiceEventType)
    assert subscribable_names(renderer) == (
        "CALL_RECEIVED",
        "CALL_STARTED",
        "CALL_RINGING",
        "CALL_PRE_ESTABLISHED",
        "CALL_ESTABLISHED",
        "CALL_FINISHED",
        "CALL_FAILED",
        "SAY_FINISHED",
        "PLAY_FINISHED",
        "DTMF_CAPTURED",
        "CALL_RECORDING_READY",
        "CALL_RECORDING_STARTED",
        "CALL_RECORDING_STOPPED",
        "CALL_RECORDING_FAILED",
        "CALL_RECORDING_DELETED",
        "ERROR",
        "MACHINE_DETECTION_FINISHED",
        "MACHINE_DETECTION_FAILED",
        "MACHINE_MESSAGE_DETECTION_FINISHED",
        "MACHINE_MESSAGE_DETECTION_FAILED",
        "APPLICATION_TRANSFER_REQUESTED",
        "APPLICATION_TRANSFER_FINISHED",
        "APPLICATION_TRANSFER_FAILED",
        "TRANSCRIPTION",
        "SPEECH_CAPTURED",
        "MEDIA_STREAM_STARTED",
        "MEDIA_STREAM_FINISHED",
        "MEDIA_STREAM_FAILED",
    )
    assert len(SUBSCRIBABLE_EVENT_TYPES) == len(set(SUBSCRIBABLE_EVENT_TYPES))
