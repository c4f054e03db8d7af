"""Every call ends with exactly one terminal event, even when the process carrying it stops: calls a crashed
node left live are ended when it starts again, and a clean stop ends the calls it carries."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.calls.models import Call, CallOrigin
from callplane.core.recordings.targets import TargetPolicy
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.voice import configurations
from callplane.core.voice.events import TERMINAL_EVENT_TYPES, subscribable_names
from callplane.core.voice.models import VoiceCall, VoiceCallState
from callplane.core.webhooks.models import Delivery
from callplane.live.control import VoiceService
from callplane.media.sip import SippyCallEngine
from callplane.surfaces.infobip.calls_mapping import InfobipEventRenderer
from callplane.testing.sipp import Sipp, engine_config, free_even_port_pair, free_udp_port, render_scenario
from tests.voice.support import database

BOX = SecretBox("0" * 43 + "=")


def _service(sessions: async_sessionmaker[AsyncSession], tmp_path: Path, node_id: str) -> VoiceService:
    return VoiceService(
        engine=SippyCallEngine(engine_config(tmp_path / "cache")),
        sessions=sessions,
        secret_box=BOX,
        renderer=InfobipEventRenderer(),
        data_dir=tmp_path / "data",
        node_id=node_id,
        fetch_policy=TargetPolicy.from_config([], []),
    )


async def _configuration(sessions: async_sessionmaker[AsyncSession], account_id: str) -> str:
    async with sessions() as session, session.begin():
        configuration = await configurations.create_configuration(
            session=session, account_id=account_id, configuration_id=None, name="recovery"
        )
        await configurations.create_subscription(
            session=session,
            secret_box=BOX,
            account_id=account_id,
            configuration_id=configuration.id,
            url="https://hooks.example.com/voice",
            known_event_types=subscribable_names(InfobipEventRenderer()),
        )
        return configuration.id


async def _left_live(
    sessions: async_sessionmaker[AsyncSession], account_id: str, configuration_id: str, node_id: str
) -> str:
    """A call as a crashed process leaves it: ESTABLISHED on its node, never ended."""
    async with sessions() as session, session.begin():
        call = VoiceCall(
            account_id=account_id,
            configuration_id=configuration_id,
            direction="INBOUND",
            state=VoiceCallState.ESTABLISHED,
            endpoint_user="alice",
            node_id=node_id,
            max_duration_s=28800,
        )
        call.id = f"crashed-{node_id}"
        session.add(Call(id=call.id, account_id=account_id, origin=CallOrigin.VOICE, status="processing"))
        session.add(call)
    return call.id


async def _terminal_events(sessions: async_sessionmaker[AsyncSession], call_id: str) -> list[Delivery]:
    async with sessions() as session:
        rows = await session.scalars(
            select(Delivery).where(Delivery.call_id == call_id, Delivery.event_type.in_(TERMINAL_EVENT_TYPES))
        )
        return list(rows)


def test_calls_a_crashed_node_left_live_end_once_when_it_restarts(tmp_path: Path) -> None:
    asyncio.run(_crashed_node_restarts(tmp_path))


async def _crashed_node_restarts(tmp_path: Path) -> None:
    async with database(tmp_path) as (sessions, account_id):
        configuration_id = await _configuration(sessions, account_id)
        ours = await _left_live(sessions, account_id, configuration_id, "node-a")
        other = await _left_live(sessions, account_id, configuration_id, "node-b")

        for expected in (1, 0):  # a second restart finds nothing left to end
            service = _service(sessions, tmp_path, "node-a")
            assert await service.start() == expected
            await service.stop()

        async with sessions() as session:
            ended = await session.get(VoiceCall, ours)
            untouched = await session.get(VoiceCall, other)
            core = await session.get(Call, ours)
        assert ended is not None and untouched is not None and core is not None
        assert (ended.state, ended.hangup_source, ended.error_code) == ("FAILED", "PLATFORM", 10102)
        assert untouched.state == "ESTABLISHED"  # another node's call is that node's to end
        assert core.ended_at is not None and core.status == "completed"
        [event] = await _terminal_events(sessions, ours)
        log = event.payload["properties"]["callLog"]
        assert event.payload["type"] == "CALL_FAILED" and log["errorCode"]["name"] == "ENGINE_RESTARTED"
        assert log["hangupSource"] == "PLATFORM"
        assert await _terminal_events(sessions, other) == []


def test_a_clean_stop_ends_live_calls_with_one_terminal_event_and_a_bye(tmp_path: Path) -> None:
    asyncio.run(_clean_stop(tmp_path))


async def _clean_stop(tmp_path: Path) -> None:
    async with database(tmp_path) as (sessions, account_id):
        configuration_id = await _configuration(sessions, account_id)
        async with sessions() as session, session.begin():
            await configurations.add_route(
                session=session, account_id=account_id, configuration_id=configuration_id, called_user="desk"
            )
        service = _service(sessions, tmp_path, "node-c")
        await service.start()
        caller = Sipp(
            render_scenario("uac_wait_bye.xml", tmp_path, CAUSE="16"),
            sip_port=free_udp_port(),
            media_port=free_even_port_pair(),
            extra=["-m", "1", "-s", "desk", f"127.0.0.1:{service.engine.config.sip_port}"],  # type: ignore[attr-defined]
        )
        try:
            await caller.start()
            call_id = await _wait_for_call(sessions)
            await service.answer(account_id=account_id, call_id=call_id)
            await _wait_for_state(sessions, call_id, "ESTABLISHED")
            await service.stop()
            result = await caller.finished()
            assert result.returncode == 0, result.output
        finally:
            caller.kill()
        [event] = await _terminal_events(sessions, call_id)
        assert event.payload["properties"]["callLog"]["errorCode"]["name"] == "ENGINE_RESTARTED"
        assert event.payload["properties"]["callLog"]["state"] == "FAILED"


async def _wait_for_call(sessions: async_sessionmaker[AsyncSession]) -> str:
    for _ in range(1000):
        async with sessions() as session:
            found = await session.scalar(select(VoiceCall.id))
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError("no inbound call was created")


async def _wait_for_state(sessions: async_sessionmaker[AsyncSession], call_id: str, state: str) -> None:
    for _ in range(1000):
        async with sessions() as session:
            call = await session.get(VoiceCall, call_id)
        if call is not None and call.state == state:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"call never reached {state}")
