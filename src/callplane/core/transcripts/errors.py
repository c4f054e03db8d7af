"""Transcription errors, rooted in the platform's one exception tree."""

from __future__ import annotations

from callplane.errors import CallplaneError, InvalidInput


class ModelUnavailable(CallplaneError):
    """The speech-to-text model could not be found or assembled."""


class CorruptModel(ModelUnavailable):
    """The assembled speech-to-text model does not have the expected size or checksum."""


class UnsupportedLanguage(InvalidInput):
    """The language is not supported for transcription."""


class UnsupportedAudio(CallplaneError):
    """The audio cannot be transcribed (unreadable, empty, or more than two channels)."""


class TranscriptionFailed(CallplaneError):
    """The speech-to-text engine failed on this recording."""

    permanent = False
