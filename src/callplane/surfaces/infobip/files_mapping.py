"""Stored media files -> the official client's `CallsFile`."""

from __future__ import annotations

from typing import Any

from callplane.core.voice.trunk_models import MediaFile
from callplane.surfaces.infobip.common import infobip_time


def file_out(media_file: MediaFile) -> dict[str, Any]:
    """`CallsFile`; `duration` is in whole seconds (rounded up, so a short prompt is never 0)."""
    return {
        "id": media_file.id,
        "name": media_file.name,
        "fileFormat": media_file.file_format,
        "size": media_file.size_bytes,
        "creationTime": infobip_time(media_file.created_at),
        "expirationTime": infobip_time(media_file.expires_at),
        "duration": -(-media_file.duration_ms // 1000),
    }
