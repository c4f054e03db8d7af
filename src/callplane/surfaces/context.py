"""What every request handler needs, built once per app and reached through FastAPI dependencies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from callplane.core.recordings.storage import RecordingStorage
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.tenancy.service import TenancyLookups
from callplane.core.voice.events import VoiceEventRenderer
from callplane.core.voice.trunks import TrunkChannels
from callplane.live.contact_center import ContactCenterRuntime
from callplane.live.control import VoiceService
from callplane.live.registrar import TrunkRegistrar
from callplane.settings import Settings
from callplane.surfaces.ratelimit import RateLimiter


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    lookups: TenancyLookups
    secret_box: SecretBox
    admin_token: str
    storage: RecordingStorage
    # How voice events look to their subscribers (their names and bodies): one surface's, picked in runtime.py.
    voice_events: VoiceEventRenderer
    rate_limiter: RateLimiter = field(default_factory=RateLimiter)
    # Live calls per SIP trunk in this process (channel limits), and the REGISTER reconciler when the
    # engine runs here (None in API-only processes: the media process polls the trunks table instead).
    trunk_channels: TrunkChannels = field(default_factory=TrunkChannels)
    trunk_registrar: TrunkRegistrar | None = None
    # The live-call control plane, when this process runs the media engine (CALLPLANE_VOICE_ENABLED).
    voice: VoiceService | None = None
    # The contact center's queues and call legs, next to the engine (None in processes without it).
    contact_center: ContactCenterRuntime | None = None


def app_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


async def get_context(request: Request) -> AppContext:
    return app_context(request)


ContextDep = Annotated[AppContext, Depends(get_context)]


async def get_session(context: ContextDep) -> AsyncIterator[AsyncSession]:
    """A session whose transaction the handler commits explicitly before answering."""
    async with context.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
