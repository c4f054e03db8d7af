"""Speech on a live call: `start-transcription`, `stop-transcription` and `capture/speech` under
`/calls/1/calls/{callId}` (their bodies, their mapping to core requests, the routes).

The language is the client's `CallTranscriptionLanguage` (a BCP-47 tag such as en-US): one outside that list is a
400 naming the field, as is one the speech-to-text model does not know (live/transcription.py). What the speech
becomes arrives as TRANSCRIPTION and SPEECH_CAPTURED events (calls_mapping.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from callplane.core.transcripts.errors import UnsupportedLanguage
from callplane.core.voice.schemas import SpeechCaptureRequest, TranscriptionRequest
from callplane.surfaces.http import json_response
from callplane.surfaces.infobip.auth import VoicePrincipalDep
from callplane.surfaces.infobip.calls_router import PENDING, VoiceDep
from callplane.surfaces.infobip.errors import InfobipRoute, bad_request

router = APIRouter(route_class=InfobipRoute, prefix="/calls/1", tags=["Infobip Calls: speech"])

_WIRE = ConfigDict(extra="ignore", populate_by_name=True)
# The client's CallTranscriptionLanguage, in its order.
LANGUAGES = frozenset(
    """
    af-ZA sq-AL am-ET ar-KW ar-AE ar-BH ar-DZ ar-EG ar-IL ar-IQ ar-JO ar-LB ar-LY ar-MA ar-OM ar-PS ar-QA
    ar-SA ar-SY ar-TN ar-YE hy-AM az-AZ eu-ES bn-IN bn-BD bs-BA bg-BG my-MM ca-ES zh-CN zh-HK zh-TW hr-HR
    cs-CZ da-DK nl-NL nl-BE en-AU en-CA en-GB en-GH en-HK en-IE en-IN en-KE en-NG en-NZ en-PH en-PK en-SG
    en-TZ en-US en-ZA et-EE fil-PH fi-FI fr-BE fr-CA fr-CH fr-FR gl-ES ka-GE de-AT de-CH de-DE el-GR gu-IN
    he-IL hi-IN hu-HU is-IS id-ID ga-IE it-CH it-IT ja-JP jv-ID kn-IN kk-KZ km-KH ko-KR lo-LA lv-LV lt-LT
    mk-MK ms-MY ml-IN mt-MT mr-IN mn-MN ne-NP no-NO fa-IR pl-PL pt-PT pt-BR pa-Guru-IN ro-RO ru-RU sr-RS
    si-LK sk-SK sl-SI es-BO es-AR es-CL es-CO es-CR es-CU es-DO es-EC es-ES es-GQ es-GT es-HN es-MX es-NI
    es-PA es-PE es-PR es-PY es-SV es-US es-UY es-VE su-ID sw-TZ sw-KE sv-SE ta-IN ta-LK ta-MY ta-SG te-IN
    th-TH tr-TR uk-UA ur-IN ur-PK uz-UZ vi-VN zu-ZA
    """.split()
)


class TranscriptionInner(BaseModel):
    model_config = _WIRE
    language: str
    sendInterimResults: bool = False
    customDictionary: list[str] | None = None
    advancedFormatting: bool = False


class StartTranscriptionBody(BaseModel):
    model_config = _WIRE
    transcription: TranscriptionInner


class CaptureSpeechBody(BaseModel):
    model_config = _WIRE
    language: str
    timeout: Annotated[int, Field(ge=1, le=30)]
    maxSilence: Annotated[int | None, Field(ge=1, le=5)] = None
    keyPhrases: list[str] | None = None
    terminateOnKeyPhrase: bool = True
    customDictionary: list[str] | None = None
    advancedFormatting: bool = False
    customData: dict[str, str] | None = None


def _language(tag: str, field: str) -> str:
    if tag not in LANGUAGES:
        raise bad_request(f"Language '{tag}' is not supported.", field=field)
    return tag


def to_transcription(body: StartTranscriptionBody) -> TranscriptionRequest:
    inner = body.transcription
    return TranscriptionRequest(
        language=_language(inner.language, "transcription.language"),
        interim=inner.sendInterimResults,
        custom_dictionary=tuple(inner.customDictionary or ()),
        advanced_formatting=inner.advancedFormatting,
    )


def to_speech_capture(body: CaptureSpeechBody) -> SpeechCaptureRequest:
    return SpeechCaptureRequest(
        language=_language(body.language, "language"),
        timeout_s=body.timeout,
        max_silence_s=body.maxSilence,
        key_phrases=tuple(body.keyPhrases or ()),
        terminate_on_key_phrase=body.terminateOnKeyPhrase,
        custom_dictionary=tuple(body.customDictionary or ()),
        custom_data=body.customData or {},
    )


@router.post("/calls/{call_id}/start-transcription")
async def start_transcription(
    call_id: str, body: StartTranscriptionBody, principal: VoicePrincipalDep, voice: VoiceDep
) -> Response:
    request = to_transcription(body)
    try:
        await voice.start_transcription(account_id=principal.account.id, call_id=call_id, request=request)
    except UnsupportedLanguage as error:
        raise bad_request(error.message, field="transcription.language") from error
    return json_response(PENDING)


@router.post("/calls/{call_id}/stop-transcription")
async def stop_transcription(call_id: str, principal: VoicePrincipalDep, voice: VoiceDep) -> Response:
    await voice.stop_transcription(account_id=principal.account.id, call_id=call_id)
    return json_response(PENDING)


@router.post("/calls/{call_id}/capture/speech")
async def capture_speech(
    call_id: str, body: CaptureSpeechBody, principal: VoicePrincipalDep, voice: VoiceDep
) -> Response:
    request = to_speech_capture(body)
    try:
        await voice.capture_speech(account_id=principal.account.id, call_id=call_id, request=request)
    except UnsupportedLanguage as error:
        raise bad_request(error.message, field="language") from error
    return json_response(PENDING)
