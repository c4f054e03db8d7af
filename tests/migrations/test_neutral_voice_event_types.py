"""Migration 0018: voice deliveries written with Infobip's names read as callplane's neutral event types."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select

from callplane.core.tenancy.models import AccountKind
from callplane.core.tenancy.service import create_account
from callplane.core.voice.events import VoiceEventType
from callplane.core.webhooks.models import Delivery, DeliveryKind
from callplane.db.engine import create_engine, create_session_factory
from callplane.db.migrate import alembic_config, upgrade
from callplane.settings import Settings
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database

# (kind, event type as an older release wrote it) -> what it reads after the upgrade
ROWS = {
    (DeliveryKind.WEBHOOK, "CALL_FINISHED"): VoiceEventType.CALL_FINISHED.value,
    (DeliveryKind.WEBHOOK, "CALL_PRE_ESTABLISHED"): VoiceEventType.CALL_EARLY_MEDIA.value,
    (DeliveryKind.WEBHOOK, "DTMF_CAPTURED"): VoiceEventType.DIGITS_CAPTURED.value,
    (DeliveryKind.WEBHOOK, "ERROR"): VoiceEventType.ACTION_FAILED.value,
    (DeliveryKind.WEBHOOK, "DIALOG_COMPOSITION_FAILED"): VoiceEventType.DIALOG_COMPOSITION_FAILED.value,
    (DeliveryKind.WEBHOOK, "call.processed"): "call.processed",  # an account-wide event: not voice's
    (DeliveryKind.CALLBACK, "CALL_FINISHED"): "CALL_FINISHED",  # voice never wrote callbacks
}


async def _write(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            account = await create_account(session=session, kind=AccountKind.NETWORK, name="m", external_id="m")
            session.add_all(
                Delivery(account_id=account.id, kind=kind, url="https://hooks.example.com", event_type=old)
                for kind, old in ROWS
            )
    finally:
        await engine.dispose()


async def _read(settings: Settings) -> list[tuple[str, str]]:
    """Every row's kind and event type, sorted."""
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as session:
            rows = await session.execute(select(Delivery.kind, Delivery.event_type))
            return sorted((kind, event_type) for kind, event_type in rows.all())
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_upgrade_renames_voice_deliveries_and_downgrade_restores_them(database: str, tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        url = None
        if database == "postgresql":
            admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
            url = stack.enter_context(scratch_postgres_database(admin_url))
        settings = Settings(environment="test", data_dir=tmp_path / "data", database_url=url)  # type: ignore[call-arg]
        upgrade(settings)
        command.downgrade(alembic_config(settings), "0017")  # as a release before 0018 left the table
        asyncio.run(_write(settings))

        upgrade(settings)
        assert asyncio.run(_read(settings)) == sorted((kind.value, new) for (kind, _old), new in ROWS.items())

        command.downgrade(alembic_config(settings), "0017")
        assert asyncio.run(_read(settings)) == sorted((kind.value, old) for kind, old in ROWS)
