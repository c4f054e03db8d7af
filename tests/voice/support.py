"""A migrated SQLite database with one account, for voice tests that call core services directly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.tenancy.models import AccountKind
from callplane.core.tenancy.service import create_account
from callplane.db.engine import create_engine, create_session_factory
from callplane.db.migrate import upgrade
from callplane.settings import Settings


@asynccontextmanager
async def database(tmp_path: Path) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], str]]:
    """A migrated SQLite database with one account; yields the session factory and the account id."""
    settings = Settings(environment="test", data_dir=tmp_path / "data")  # type: ignore[call-arg]
    await asyncio.to_thread(upgrade, settings)
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    async with sessions() as session, session.begin():
        account = await create_account(session=session, kind=AccountKind.NETWORK, name="voice", external_id="v1")
        account_id = account.id
    try:
        yield sessions, account_id
    finally:
        await engine.dispose()
