"""The command relay's parts on both databases: the JSON codec, errors crossing processes, picking a node,
commands that expire unrun, and the node-side poll (no NOTIFY on SQLite). The end-to-end path with real processes
and sipp is tests/voice/test_media_nodes.py."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.calls.models import Call, CallOrigin
from callplane.core.recordings.targets import TargetPolicy
from callplane.core.tenancy.models import AccountKind
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.tenancy.service import create_account
from callplane.core.voice import configurations
from callplane.core.voice import schemas as voice_schemas
from callplane.core.voice.models import EndpointType, VoiceCall, VoiceCallState
from callplane.core.voice.node_models import CommandStatus, MediaNode, NodeCommand
from callplane.core.voice.queries import VoiceCallNotFound
from callplane.core.voice.schemas import (
    CaptureRequest,
    Endpoint,
    NewCall,
    PlayContent,
    PlayOptions,
    RecordingChannels,
    RecordingRequest,
    Speech,
)
from callplane.core.voice.states import CallNotLive, ErrorCode
from callplane.db.base import utcnow
from callplane.db.engine import create_engine, create_session_factory
from callplane.db.migrate import upgrade
from callplane.errors import CallplaneError, InvalidInput
from callplane.live.calls import CallOnAnotherNode
from callplane.live.control import VoiceService
from callplane.live.dispatch import RELAYED
from callplane.live.nodes import MediaNodeUnavailable, NodeHeartbeat, NoMediaNode, detached_engine, pick_node
from callplane.live.relay import (
    CommandExecutor,
    CommandRelay,
    Notifications,
    decode,
    decode_error,
    encode,
    encode_error,
)
from callplane.runtime import listen_dsn
from callplane.settings import Settings
from callplane.surfaces.infobip.calls_mapping import InfobipEventRenderer
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database

BOX = SecretBox("0" * 43 + "=")


# ---- the codec ----------------------------------------------------------------------------------


def test_every_argument_shape_survives_the_json_round_trip() -> None:
    values = [
        NewCall(
            configuration_id="cfg",
            endpoint=Endpoint(EndpointType.SIP, "bob", host="10.0.0.1:5070", headers={"X-A": "1"}),
            custom_data={"$type": "not a tag", "$dict": "nor this"},  # customer keys never pass for type tags
            recording=RecordingRequest(RecordingChannels.STEREO, "p-", {"k": "v"}),
        ),
        PlayContent(speech=Speech("hello", "en-gb", 1.5, "FEMALE")),
        PlayOptions(loop_count=2, stop_on_dtmf=True, stop_terminator="#"),
        CaptureRequest(max_length=4, timeout_ms=5000, terminator="#", play=PlayContent(file_id="f")),
        ErrorCode.BUSY,
        None,
        [1, "two", 3.0, True],
    ]
    for value in values:
        encoded = encode(value)
        assert decode(encoded) == (list(value) if isinstance(value, list) else value)
    every = {
        name: kind
        for name, kind in vars(voice_schemas).items()
        if isinstance(kind, type) and (dataclasses.is_dataclass(kind) or issubclass(kind, enum.Enum))
    }
    assert {"NewCall", "Endpoint", "Speech", "PlayContent", "CaptureRequest", "ErrorCode"} <= set(every)
    with pytest.raises(TypeError):
        encode(object())


def test_errors_cross_as_the_same_class_and_text() -> None:
    for error in (
        CallNotLive(),
        VoiceCallNotFound(),
        InvalidInput("speechRate must be between 0.5 and 2.0", problems=["speechRate"]),
    ):
        back = decode_error(encode_error(error))
        assert type(back) is type(error) and back.message == error.message
    assert decode_error(encode_error(InvalidInput("x", problems=["a", "b"]))).problems == ["a", "b"]  # type: ignore[attr-defined]
    unknown = decode_error({"type": "internal", "message": "Internal server error"})
    assert type(unknown) is CallplaneError and unknown.message == "Internal server error"


def test_the_relayed_commands_are_the_call_and_dialog_commands() -> None:
    assert {"create_call", "answer", "hangup", "say", "play", "capture_dtmf", "start_recording"} <= RELAYED
    assert {"create_dialog", "dialog_from_calls", "hangup_dialog"} <= RELAYED
    assert "get_call" not in RELAYED and "list_calls" not in RELAYED


# ---- relay and node on one database -------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(environment="test", data_dir=tmp_path / "data")  # type: ignore[call-arg]
        return
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with scratch_postgres_database(admin_url) as url:
        yield Settings(environment="test", data_dir=tmp_path / "data", database_url=url)  # type: ignore[call-arg]


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], str]]:
    await asyncio.to_thread(upgrade, settings)
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    async with sessions() as session, session.begin():
        account = await create_account(session=session, kind=AccountKind.NETWORK, name="relay", external_id="r1")
        account_id = account.id
    try:
        yield sessions, account_id
    finally:
        await engine.dispose()


def _voice(sessions: async_sessionmaker[AsyncSession], tmp_path: Path, node_id: str) -> VoiceService:
    """A VoiceService without a running engine: what it is asked about is not live here."""
    return VoiceService(
        engine=detached_engine(),
        sessions=sessions,
        secret_box=BOX,
        renderer=InfobipEventRenderer(),
        data_dir=tmp_path / "data",
        node_id=node_id,
        fetch_policy=TargetPolicy.from_config([], []),
    )


async def _live_call(sessions: async_sessionmaker[AsyncSession], account_id: str, node_id: str) -> str:
    async with sessions() as session, session.begin():
        configuration = await configurations.create_configuration(
            session=session, account_id=account_id, configuration_id=None, name="relay"
        )
        call = VoiceCall(
            account_id=account_id,
            configuration_id=configuration.id,
            direction="INBOUND",
            state=VoiceCallState.ESTABLISHED,
            endpoint_user="alice",
            node_id=node_id,
            max_duration_s=60,
        )
        call.id = f"call-on-{node_id}"
        session.add(Call(id=call.id, account_id=account_id, origin=CallOrigin.VOICE, status="processing"))
        session.add(call)
    return call.id


def _relay(sessions: async_sessionmaker[AsyncSession], settings: Settings, timeout_s: float) -> CommandRelay:
    return CommandRelay(
        sessions=sessions,
        notifications=Notifications(listen_dsn(settings)),
        local_node=None,
        timeout_s=timeout_s,
        dead_after_s=5,
        poll_s=0.2,
    )


def _heartbeat(sessions: async_sessionmaker[AsyncSession], node_id: str) -> NodeHeartbeat:
    return NodeHeartbeat(sessions=sessions, node_id=node_id, sip_address=None, live_calls=lambda: 0, every_s=1)


def _executor(
    voice: VoiceService, sessions: async_sessionmaker[AsyncSession], notifications: Notifications, node_id: str
) -> CommandExecutor:
    return CommandExecutor(voice=voice, sessions=sessions, notifications=notifications, node_id=node_id, poll_s=0.1)


def test_a_command_for_another_nodes_call_runs_there_and_its_error_comes_back(
    settings: Settings, tmp_path: Path
) -> None:
    asyncio.run(_runs_on_the_node(settings, tmp_path))


async def _runs_on_the_node(settings: Settings, tmp_path: Path) -> None:
    async with _database(settings) as (sessions, account_id):
        call_id = await _live_call(sessions, account_id, "node-b")
        api = _voice(sessions, tmp_path, "api")
        api.relay = relay = _relay(sessions, settings, timeout_s=10)
        node = _voice(sessions, tmp_path, "node-b")
        heartbeat = _heartbeat(sessions, "node-b")
        await heartbeat.start()
        notifications = Notifications(listen_dsn(settings))
        executor = _executor(node, sessions, notifications, "node-b")
        stop = asyncio.Event()
        running = asyncio.create_task(executor.run_forever(stop))
        try:
            # node-b's VoiceService runs it: the call is not in its engine, so it answers as the in-process code does
            with pytest.raises(CallOnAnotherNode):
                await api.hangup(account_id=account_id, call_id=call_id)
            # validation happens on the node too, with the same error class and text
            with pytest.raises(InvalidInput, match="dtmf must be digits"):
                await api.send_dtmf(account_id=account_id, call_id=call_id, digits="xyz")
            # unknown and other accounts' calls never leave the process: the same 404 as always
            with pytest.raises(VoiceCallNotFound):
                await api.hangup(account_id="someone-else", call_id=call_id)
            async with sessions() as session:
                rows = list(await session.scalars(select(NodeCommand).order_by(NodeCommand.created_at)))
            assert [(row.command, row.status, row.node_id) for row in rows] == [
                ("hangup", CommandStatus.FAILED, "node-b"),
                ("send_dtmf", CommandStatus.FAILED, "node-b"),
            ]
            # a new call goes to the least loaded alive node
            async with sessions() as session:
                assert await pick_node(session, dead_after_s=5) == "node-b"
            # a node whose row disappeared announces itself again on its next beat
            async with sessions() as session, session.begin():
                await session.execute(delete(MediaNode))
            await heartbeat.beat()
            async with sessions() as session:
                assert await pick_node(session, dead_after_s=5) == "node-b"
        finally:
            stop.set()
            await running
            await notifications.stop()
            await relay.notifications.stop()


def test_a_command_nobody_takes_expires_unrun_and_a_dead_node_is_refused_at_once(
    settings: Settings, tmp_path: Path
) -> None:
    asyncio.run(_expires(settings, tmp_path))


async def _expires(settings: Settings, tmp_path: Path) -> None:
    async with _database(settings) as (sessions, account_id):
        api = _voice(sessions, tmp_path, "api")
        api.relay = relay = _relay(sessions, settings, timeout_s=1.0)
        try:
            with pytest.raises(NoMediaNode):  # no node has ever run
                await api.create_call(
                    account_id=account_id,
                    request=NewCall(configuration_id="c", endpoint=Endpoint(EndpointType.SIP, "b")),
                )
            call_id = await _live_call(sessions, account_id, "node-c")
            heartbeat = _heartbeat(sessions, "node-c")
            await heartbeat.start()  # alive, but it never takes a command
            with pytest.raises(MediaNodeUnavailable, match="was not run"):
                await api.say(account_id=account_id, call_id=call_id, speech=Speech("hi"), options=PlayOptions())
            async with sessions() as session:
                [row] = list(await session.scalars(select(NodeCommand)))
            assert row.status == CommandStatus.EXPIRED
            # the node comes to life: it does not run the expired command
            node = _voice(sessions, tmp_path, "node-c")
            notifications = Notifications(listen_dsn(settings))
            executor = _executor(node, sessions, notifications, "node-c")
            assert await executor.run_pending() == 0
            await notifications.stop()
            # a node whose heartbeat went stale gets no command at all
            async with sessions() as session, session.begin():
                await session.execute(update(MediaNode).values(heartbeat_at=utcnow() - timedelta(minutes=5)))
            with pytest.raises(MediaNodeUnavailable, match="is not running"):
                await api.stop_play(account_id=account_id, call_id=call_id)
            async with sessions() as session:
                assert len(list(await session.scalars(select(NodeCommand)))) == 1
            await heartbeat.stopped()
            async with sessions() as session:
                with pytest.raises(NoMediaNode):
                    await pick_node(session, dead_after_s=3600)
        finally:
            await relay.notifications.stop()


@pytest.fixture(params=["postgresql"])  # LISTEN/NOTIFY exists on PostgreSQL only
def postgres_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    with scratch_postgres_database(admin_url) as url:
        yield Settings(environment="test", data_dir=tmp_path / "data", database_url=url)  # type: ignore[call-arg]


def test_commands_keep_flowing_when_the_listen_connections_drop_and_they_come_back(
    postgres_settings: Settings, tmp_path: Path
) -> None:
    asyncio.run(_listen_drops(postgres_settings, tmp_path))


async def _listen_drops(settings: Settings, tmp_path: Path) -> None:
    import asyncpg

    async with _database(settings) as (sessions, account_id):
        call_id = await _live_call(sessions, account_id, "node-d")
        api = _voice(sessions, tmp_path, "api")
        api.relay = relay = _relay(sessions, settings, timeout_s=10)
        await _heartbeat(sessions, "node-d").start()
        notifications = Notifications(listen_dsn(settings))
        executor = _executor(_voice(sessions, tmp_path, "node-d"), sessions, notifications, "node-d")
        stop = asyncio.Event()
        running = asyncio.create_task(executor.run_forever(stop))
        try:
            with pytest.raises(CallOnAnotherNode):
                await api.stop_play(account_id=account_id, call_id=call_id)
            assert notifications.listening and relay.notifications.listening
            dsn = listen_dsn(settings)
            assert dsn is not None
            admin = await asyncpg.connect(dsn)
            try:
                dropped = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'"
                )
            finally:
                await admin.close()
            assert dropped == 2  # the node's and the API process's
            # the next command still runs (the node's poll, the waiter's poll) ...
            with pytest.raises(CallOnAnotherNode):
                await api.stop_play(account_id=account_id, call_id=call_id)
            # ... and both LISTEN connections are back within a few seconds
            for _ in range(600):
                if notifications.listening and relay.notifications.listening:
                    break
                await asyncio.sleep(0.05)
            assert notifications.listening and relay.notifications.listening
            with pytest.raises(CallOnAnotherNode):
                await api.stop_play(account_id=account_id, call_id=call_id)
            async with sessions() as session:
                statuses = list(await session.scalars(select(NodeCommand.status)))
            assert statuses == [CommandStatus.FAILED] * 3
        finally:
            stop.set()
            await running
            await notifications.stop()
            await relay.notifications.stop()
