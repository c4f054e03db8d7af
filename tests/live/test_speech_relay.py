"""The speech commands travel between an API process and the media node like every other command: they are
`@relayed`, their requests survive the relay's JSON, and a node's language refusal comes back as the same error
(which the surface renders as a 400 naming the language field)."""

from __future__ import annotations

import json

from callplane.core.transcripts.errors import UnsupportedLanguage
from callplane.core.voice.schemas import SpeechCaptureRequest, TranscriptionRequest
from callplane.live.control import VoiceService
from callplane.live.dispatch import RELAYED
from callplane.live.relay import decode, decode_error, encode, encode_error
from callplane.live.transcription import model_language


def test_the_speech_commands_are_relayed() -> None:
    assert {"start_transcription", "stop_transcription", "capture_speech"} <= RELAYED
    for name in ("start_transcription", "stop_transcription", "capture_speech"):
        assert callable(getattr(VoiceService, name))


def test_speech_requests_survive_the_relay() -> None:
    transcription = TranscriptionRequest(language="en-GB", interim=True, custom_dictionary=("Callplane",))
    capture = SpeechCaptureRequest(
        language="es-ES",
        timeout_s=12,
        max_silence_s=3,
        key_phrases=("ventas", "facturación"),
        terminate_on_key_phrase=False,
        custom_data={"menu": "main"},
    )
    for request in (transcription, capture):
        carried = decode(json.loads(json.dumps(encode(request))))
        assert type(carried) is type(request)
        # sequences travel as JSON arrays: the live components take any sequence
        assert {key: tuple(value) if isinstance(value, list) else value for key, value in vars_of(carried).items()} == (
            vars_of(request)
        )


def vars_of(request: object) -> dict[str, object]:
    return {name: getattr(request, name) for name in request.__dataclass_fields__}  # type: ignore[attr-defined]


def test_a_language_refusal_comes_back_as_the_same_error() -> None:
    try:
        model_language("zu-ZA")
    except UnsupportedLanguage as refused:
        back = decode_error(json.loads(json.dumps(encode_error(refused))))
        assert isinstance(back, UnsupportedLanguage) and back.message == refused.message
    else:
        raise AssertionError("Zulu is not a language of the model")
    assert model_language("en-US") == "en-US"
    assert model_language("fil-PH") == "tl-PH"  # Whisper's Tagalog
    assert model_language("jv-ID") == "jw-ID"
