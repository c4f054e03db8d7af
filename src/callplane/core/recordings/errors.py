"""Recording errors: one small tree, each leaf says whether a retry can help and what a person should fix."""

from __future__ import annotations

from callplane.errors import CallplaneError


class RecordingError(CallplaneError):
    """The recording could not be processed."""


# --- fetching -------------------------------------------------------------------------------------------------


class FetchError(RecordingError):
    """The recording could not be downloaded."""


class InvalidRecordingLocation(FetchError):
    """The recording URL or file name is not valid."""


class InvalidTargetUrl(FetchError):
    """The URL is not one we connect to (unknown scheme, no host)."""


class TargetRefused(FetchError):
    """The recording location points at an address we may not fetch from."""


class HostNotFound(FetchError):
    """The recording host name does not resolve."""


class AccessDenied(FetchError):
    """The recording server refused our credentials."""


class RecordingNotFound(FetchError):
    """The recording does not exist at the given location."""


class HostKeyMismatch(FetchError):
    """The SFTP server's host key does not match the configured known host key."""


class RecordingTooLarge(FetchError):
    """The recording is larger than the configured limit."""


class TooManyRedirects(FetchError):
    """The recording URL redirected too many times."""


class UnexpectedResponse(FetchError):
    """The recording server answered with something other than the recording."""


class FetchTimeout(FetchError):
    """The recording download did not finish in time."""

    permanent = False


class UpstreamUnavailable(FetchError):
    """The recording server is temporarily unavailable."""

    permanent = False

    def __init__(self, message: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ConnectionFailed(FetchError):
    """The connection to the recording server failed."""

    permanent = False


# --- audio ----------------------------------------------------------------------------------------------------


class AudioError(RecordingError):
    """The recording's audio is not usable."""


class UnsupportedFormat(AudioError):
    """The recording is not in a supported format (WAV, MP3, MP4 audio-only, AAC, M4A)."""


class VideoNotAllowed(AudioError):
    """MP4 recordings must be audio-only; this one has a video stream."""


class MonoNotAllowed(AudioError):
    """Recordings must be dual-channel (caller and agent on separate channels); this one is single-channel."""


class CorruptRecording(AudioError):
    """The recording file is damaged and cannot be decoded."""


class RecordingTooLong(AudioError):
    """The recording is longer than the configured limit."""


# --- storage --------------------------------------------------------------------------------------------------


class StorageError(RecordingError):
    """The recording store could not complete the operation."""


class InvalidStorageKey(StorageError):
    """The storage key is not a safe relative path."""


class StoredObjectNotFound(StorageError):
    """No stored recording has this key."""


class RangeNotSatisfiable(StorageError):
    """The requested byte range lies outside the stored recording."""
