"""Media-stream configurations: CRUD in the caller's transaction (the routes: surfaces/infobip/media_streams.py;
the streams themselves: live/media_streams.py, media/streaming.py).

A configuration names a WebSocket server (`ws://` or `wss://`, checked against the outbound target policy by the
surface when stored and by the live plane before each connection), the sample rate streamed to it (8, 16 or
48 kHz) and, for MEDIA_STREAMING ones, optional HTTP Basic credentials, the password encrypted at rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.voice.media_stream_models import MediaStreamConfig, MediaStreamConfigType
from callplane.db.base import utcnow
from callplane.errors import InvalidInput, NotFound

SAMPLE_RATES = (8000, 16000, 48000)
MEDIA_STREAMING_SAMPLE_RATE = 48000  # the guide: "Default is 48kHz"
MAX_URL_LENGTH = 2048


class MediaStreamConfigNotFound(NotFound):
    """Media-stream configuration not found."""


@dataclass(frozen=True, slots=True)
class MediaStreamConfigSpec:
    type: MediaStreamConfigType
    name: str
    url: str
    sample_rate: int = MEDIA_STREAMING_SAMPLE_RATE
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class StreamEndpoint:
    """A configuration as the live plane connects with it (the password decrypted)."""

    config_id: str
    url: str
    sample_rate: int
    username: str | None
    password: str | None


def check_spec(spec: MediaStreamConfigSpec) -> None:
    if not spec.name.strip() or len(spec.name) > 128:
        raise InvalidInput("name must be 1-128 characters")
    if len(spec.url) > MAX_URL_LENGTH:
        raise InvalidInput(f"url must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(spec.url)
        _ = parts.port
    except ValueError as error:
        raise InvalidInput(f"url is not a valid URL ({error})") from error
    if parts.scheme.lower() not in ("ws", "wss") or not parts.hostname:
        raise InvalidInput("url must be a ws:// or wss:// URL with a host")
    if spec.sample_rate not in SAMPLE_RATES:
        raise InvalidInput(f"sampleRate must be one of {', '.join(str(rate) for rate in SAMPLE_RATES)}")
    if (spec.username is None) != (spec.password is None):
        raise InvalidInput("BASIC security needs both username and password")
    if spec.username is not None and (":" in spec.username or not spec.username):
        raise InvalidInput("the BASIC username must be non-empty and hold no colon")


def _apply(config: MediaStreamConfig, spec: MediaStreamConfigSpec, secret_box: SecretBox) -> None:
    config.type = spec.type
    config.name = spec.name
    config.url = spec.url
    config.sample_rate = spec.sample_rate
    config.username = spec.username
    config.password_encrypted = secret_box.encrypt(spec.password) if spec.password is not None else None
    config.updated_at = utcnow()


async def create_config(
    *, session: AsyncSession, account_id: str, spec: MediaStreamConfigSpec, secret_box: SecretBox
) -> MediaStreamConfig:
    check_spec(spec)
    config = MediaStreamConfig(account_id=account_id)
    _apply(config, spec, secret_box)
    session.add(config)
    await session.flush()
    return config


async def get_config(*, session: AsyncSession, account_id: str, config_id: str) -> MediaStreamConfig:
    config = await session.get(MediaStreamConfig, config_id)
    if config is None or config.account_id != account_id:
        raise MediaStreamConfigNotFound()
    return config


async def list_configs(
    *, session: AsyncSession, account_id: str, offset: int = 0, limit: int = 20
) -> tuple[list[MediaStreamConfig], int]:
    """One page of the account's configurations (oldest first) and the total count."""
    condition = MediaStreamConfig.account_id == account_id
    total = await session.scalar(select(func.count()).select_from(MediaStreamConfig).where(condition)) or 0
    rows = await session.scalars(
        select(MediaStreamConfig)
        .where(condition)
        .order_by(MediaStreamConfig.created_at, MediaStreamConfig.id)
        .offset(offset)
        .limit(limit)
    )
    return list(rows), total


async def update_config(
    *, session: AsyncSession, account_id: str, config_id: str, spec: MediaStreamConfigSpec, secret_box: SecretBox
) -> MediaStreamConfig:
    """A full replacement (PUT): what the new body leaves out is gone (credentials included)."""
    check_spec(spec)
    config = await get_config(session=session, account_id=account_id, config_id=config_id)
    _apply(config, spec, secret_box)
    await session.flush()
    return config


async def delete_config(*, session: AsyncSession, account_id: str, config_id: str) -> MediaStreamConfig:
    """Streams already running keep going; new ones cannot name it."""
    config = await get_config(session=session, account_id=account_id, config_id=config_id)
    await session.delete(config)
    await session.flush()
    return config


async def stream_endpoint(
    *, session: AsyncSession, account_id: str, config_id: str, secret_box: SecretBox
) -> StreamEndpoint:
    config = await get_config(session=session, account_id=account_id, config_id=config_id)
    password = secret_box.decrypt(config.password_encrypted) if config.password_encrypted is not None else None
    return StreamEndpoint(config.id, config.url, config.sample_rate, config.username, password)
