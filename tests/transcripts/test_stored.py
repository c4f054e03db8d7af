"""The rules around a stored transcript: which language a call is transcribed in, what `results` says, and why
the API has no transcript to show."""

from __future__ import annotations

import pytest

from callplane.core.calls.models import Call
from callplane.core.transcripts import service
from callplane.core.transcripts.models import CallTranscript, TranscriptStatus


@pytest.mark.parametrize(
    ("call_language", "account_default", "expected"),
    [("es-ES", "en-US", "es-ES"), (None, "fr-FR", "fr-FR"), ("", None, "en-US"), (None, None, "en-US")],
)
def test_call_language_then_account_default_then_en_us(
    call_language: str | None, account_default: str | None, expected: str
) -> None:
    assert service.call_language(call_language, account_default) == expected


def _row(status: str, signals_evaluated: int = 0, reason: str | None = None) -> CallTranscript:
    return CallTranscript(status=status, signals_evaluated=signals_evaluated, skipped_reason=reason, complete=True)


def test_results_say_what_a_finished_call_offers() -> None:
    assert service.results_of(None) == {"transcription_available": False, "analytics_available": False}
    skipped = _row(TranscriptStatus.SKIPPED, reason="off")
    assert service.results_of(skipped) == {"transcription_available": False, "analytics_available": False}
    plain = _row(TranscriptStatus.COMPLETED)
    assert service.results_of(plain) == {"transcription_available": True, "analytics_available": False}
    analysed = _row(TranscriptStatus.COMPLETED, signals_evaluated=2)
    assert service.results_of(analysed) == {"transcription_available": True, "analytics_available": True}


def test_no_transcript_says_why() -> None:
    queued = Call(id="c1", status="processing")
    with pytest.raises(service.TranscriptNotAvailable, match="not been transcribed yet"):
        service.require_transcript(queued, None)
    failed = Call(id="c2", status="failed", status_reason="the recording URL answered 404")
    with pytest.raises(service.TranscriptNotAvailable, match=r"processing failed \(the recording URL answered 404\)"):
        service.require_transcript(failed, None)
    with pytest.raises(service.TranscriptNotAvailable, match="not transcribed: transcription is turned off"):
        service.require_transcript(queued, _row(TranscriptStatus.SKIPPED, reason="transcription is turned off"))
    stored = _row(TranscriptStatus.COMPLETED)
    assert service.require_transcript(queued, stored) is stored
    assert service.availability(queued, None) == {
        "available": False,
        "status": "pending",
        "reason": "the call has not been transcribed yet",
    }


def test_unknown_text_format_is_refused() -> None:
    with pytest.raises(service.UnknownTranscriptFormat, match="must be one of text, caller, agent"):
        service.transcript_text(_row(TranscriptStatus.COMPLETED), "srt")
