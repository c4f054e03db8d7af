"""Recording components of the post-call pipeline: fetch (SSRF-safe), check and normalize audio, store."""

from callplane.core.recordings.audio import (
    ChannelLevel,
    NormalizedRecording,
    RecordingFormat,
    normalize_recording,
    normalize_recording_async,
    sniff_format,
)
from callplane.core.recordings.fetch import (
    DropFolder,
    FetchLimits,
    FetchResult,
    HttpAuth,
    HttpAuthMethod,
    SftpAccess,
    fetch_drop_folder,
    fetch_http,
    fetch_sftp,
)
from callplane.core.recordings.storage import LocalRecordingStorage, RecordingStorage, StoredObject
from callplane.core.recordings.targets import TargetPolicy, forbidden_reason

__all__ = [
    "ChannelLevel",
    "DropFolder",
    "FetchLimits",
    "FetchResult",
    "HttpAuth",
    "HttpAuthMethod",
    "LocalRecordingStorage",
    "NormalizedRecording",
    "RecordingFormat",
    "RecordingStorage",
    "SftpAccess",
    "StoredObject",
    "TargetPolicy",
    "fetch_drop_folder",
    "fetch_http",
    "fetch_sftp",
    "forbidden_reason",
    "normalize_recording",
    "normalize_recording_async",
    "sniff_format",
]
