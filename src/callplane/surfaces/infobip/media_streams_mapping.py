"""Media-stream configurations to and from the Infobip wire (`CallsMediaStreamConfigResponse`: no credentials
ever go back)."""

from __future__ import annotations

from typing import Any

from callplane.core.voice.media_stream_models import MediaStreamConfig, MediaStreamConfigType
from callplane.core.voice.media_streams import MEDIA_STREAMING_SAMPLE_RATE, MediaStreamConfigSpec
from callplane.surfaces.infobip.errors import bad_request
from callplane.surfaces.infobip.media_streams_wire import MediaStreamConfigBody

WEBSOCKET_ENDPOINT_DEFAULT_RATE = 8000  # the client's CallsWebsocketEndpointConfigRequest default


def to_spec(body: MediaStreamConfigBody) -> MediaStreamConfigSpec:
    kind = MediaStreamConfigType(body.type)
    if kind is MediaStreamConfigType.WEBSOCKET_ENDPOINT:
        if body.securityConfig is not None:
            raise bad_request("a WEBSOCKET_ENDPOINT configuration takes no securityConfig", field="securityConfig")
        rate = WEBSOCKET_ENDPOINT_DEFAULT_RATE if body.sampleRate is None else _rate(body.sampleRate)
        return MediaStreamConfigSpec(kind, body.name, body.url, sample_rate=rate)
    if body.sampleRate is not None and _rate(body.sampleRate) != MEDIA_STREAMING_SAMPLE_RATE:
        raise bad_request("a MEDIA_STREAMING configuration streams at 48000 Hz", field="sampleRate")
    security = body.securityConfig
    if security is None:
        return MediaStreamConfigSpec(kind, body.name, body.url)
    if security.type != "BASIC":
        raise bad_request("only BASIC securityConfig is supported for media streaming", field="securityConfig")
    if not security.username or security.password is None:
        raise bad_request("BASIC securityConfig needs username and password", field="securityConfig")
    return MediaStreamConfigSpec(kind, body.name, body.url, username=security.username, password=security.password)


def _rate(value: str | int) -> int:
    try:
        return int(value)
    except ValueError:
        raise bad_request("sampleRate must be 8000, 16000 or 48000", field="sampleRate") from None


def config_out(config: MediaStreamConfig) -> dict[str, Any]:
    body: dict[str, Any] = {"id": config.id, "type": config.type, "name": config.name, "url": config.url}
    if config.type == MediaStreamConfigType.WEBSOCKET_ENDPOINT:
        body["sampleRate"] = str(config.sample_rate)
    return body
