"""Two contact-center runtimes on one database (two media processes) never fire or assign a call twice: every
step is a conditional UPDATE. Real databases (SQLite and PostgreSQL); nothing is dialed in these steps."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.contact_center import service as cc
from callplane.core.contact_center.models import Agent, CcCall, CcCallStatus, CcCallType, CcParticipant
from callplane.core.tenancy.models import AccountKind
from callplane.core.tenancy.service import create_account
from callplane.db.base import utcnow
from callplane.db.engine import create_engine, create_session_factory
from callplane.db.migrate import upgrade
from callplane.live.contact_center import ContactCenterRuntime, LegInbox
from callplane.settings import Settings
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database


@contextlib.asynccontextmanager
async def migrated(url: str | None, tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    settings = Settings(environment="test", data_dir=tmp_path / "data", database_url=url)  # type: ignore[call-arg]
    await asyncio.to_thread(upgrade, settings)
    engine = create_engine(settings)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


def runtime(sessions: async_sessionmaker[AsyncSession]) -> ContactCenterRuntime:
    # Firing and assigning never reach the voice service (only ringing does, which these tests do not run).
    voice: Any = None
    return ContactCenterRuntime(sessions=sessions, voice=voice, legs=LegInbox())


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_runtimes_fire_each_due_call_once_and_assign_each_call_to_one_agent(database: str, tmp_path: Path) -> None:
    async def scenario(url: str | None) -> None:
        async with migrated(url, tmp_path) as sessions:
            async with sessions() as session, session.begin():
                account = await create_account(session=session, kind=AccountKind.NETWORK, name="cc", external_id="cc")
                account_id = account.id
                await cc.create_outbound_number(
                    session=session, account_id=account_id, number="+1 339-219-5276", trunk_id=None, is_default=True
                )
                agents = [
                    await cc.create_agent(
                        session=session,
                        account_id=account_id,
                        spec=cc.AgentSpec(
                            email=f"a{i}@x.io", endpoint_user=f"a{i}", endpoint_host="h", status="available"
                        ),
                    )
                    for i in range(3)
                ]
                menu = await cc.create_menu(
                    session=session,
                    account_id=account_id,
                    spec=cc.MenuSpec(name="m", menu_type="mobile_menu", agent_ids=tuple(a.id for a in agents)),
                )
                for _ in range(20):
                    await cc.create_call(
                        session=session,
                        account_id=account_id,
                        request=cc.CallRequest(
                            call_type=CcCallType.SCHEDULED,
                            menu_id=menu.public_id,
                            end_user_number="+1 859-657-9625",
                            scheduled_at=utcnow() + timedelta(hours=1),
                        ),
                    )
                await session.execute(update(CcCall).values(scheduled_at=utcnow() - timedelta(seconds=1)))
            first, second = runtime(sessions), runtime(sessions)
            fired = await asyncio.gather(first.fire_due(), second.fire_due(), first.fire_due())
            assert sum(fired) == 20
            async with sessions() as session:
                ids = list(await session.scalars(select(CcCall.id).where(CcCall.status == CcCallStatus.QUEUED)))
            assert len(ids) == 20

            # Both runtimes try every queued call at once: 3 agents, so exactly 3 calls get one agent each.
            results = await asyncio.gather(*(r._assign(call_id, menu.id) for call_id in ids for r in (first, second)))
            assert sum(results) == 3
            async with sessions() as session:
                assigned = list(await session.scalars(select(CcCall).where(CcCall.status == CcCallStatus.ASSIGNED)))
                assert len(assigned) == 3 and len({call.agent_id for call in assigned}) == 3
                agent_rows = await session.scalar(
                    select(func.count()).select_from(CcParticipant).where(CcParticipant.kind == "agent")
                )
                assert agent_rows == 3
                busy = await session.scalar(select(func.count()).select_from(Agent).where(Agent.status == "busy"))
                assert busy == 3

    with contextlib.ExitStack() as stack:
        url = None
        if database == "postgresql":
            admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
            url = stack.enter_context(scratch_postgres_database(admin_url))
        asyncio.run(scenario(url))
