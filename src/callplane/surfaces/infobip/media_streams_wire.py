"""The Infobip media-streaming request bodies: `CallsMediaStreamConfigRequest` (MEDIA_STREAMING with an optional
BASIC `securityConfig`, or WEBSOCKET_ENDPOINT with a `sampleRate`) and `CallsStartMediaStreamRequest`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class SecurityConfigBody(BaseModel):
    """`SecurityConfig`: BASIC (username, password); HMAC is refused (a WebSocket handshake carries no body to
    sign)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["BASIC", "HMAC"]
    username: str | None = None
    password: str | None = None


class MediaStreamConfigBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["MEDIA_STREAMING", "WEBSOCKET_ENDPOINT"] = "MEDIA_STREAMING"
    name: Annotated[str, Field(min_length=1, max_length=128)]
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    securityConfig: SecurityConfigBody | None = None  # MEDIA_STREAMING
    sampleRate: str | int | None = None  # WEBSOCKET_ENDPOINT: "8000" (the client's default), "16000", "48000"


class MediaStreamAudioPropertiesBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    mediaStreamConfigId: Annotated[str, Field(min_length=1, max_length=64)]
    replaceMedia: bool = False


class MediaStreamBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    audioProperties: MediaStreamAudioPropertiesBody


class StartMediaStreamBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    mediaStream: MediaStreamBody
