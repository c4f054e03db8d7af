"""The command relay: a command for a call carried by another media node runs on that node (docs/voice.md).

API side (`CommandRelay`, the `relay` of a VoiceService): write a `voice_node_commands` row addressed to the node,
`NOTIFY callplane_voice_commands, '<node id>'` in the same transaction, then wait (bounded) for the outcome the
node writes into the row (`NOTIFY callplane_voice_outcomes, '<command id>'` wakes the waiter) and answer with it:
the same value, or the same error, as the command would have given in-process.

Node side (`CommandExecutor`): LISTEN, and poll every few hundred ms as well, so a missed notification (a
dropped LISTEN connection) or a database without them (SQLite) still works; claim the node's pending rows, run
each through the same VoiceService method with `running_relayed` set, store the outcome.

The SQL that matters is here: the claim is one conditional UPDATE ... RETURNING of the node's PENDING rows that
have not expired; only one process runs a given node id, so it needs no row locks beyond the UPDATE's own. An
API process that stops waiting turns its PENDING row EXPIRED with a conditional UPDATE, so a command is either
run by the node or answered as not run, never both.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callplane.core.voice import schemas
from callplane.core.voice.conference_models import ConferenceState, VoiceConference
from callplane.core.voice.models import VoiceCall, VoiceDialog
from callplane.core.voice.node_models import CommandStatus, MediaNode, NodeCommand
from callplane.core.voice.states import LIVE_STATES
from callplane.db.base import new_id, utcnow
from callplane.errors import CallplaneError, InvalidInput
from callplane.live.dispatch import RELAYED, running_relayed
from callplane.live.nodes import MediaNodeUnavailable, alive, pick_node

log = logging.getLogger("callplane.voice.relay")

COMMANDS_CHANNEL = "callplane_voice_commands"  # payload: the node id
OUTCOMES_CHANNEL = "callplane_voice_outcomes"  # payload: the command id
EVERYONE = "*"  # handlers get this after a (re)connect: look at the table, notifications may have been missed
FINISHED = (CommandStatus.DONE, CommandStatus.FAILED, CommandStatus.EXPIRED)
FAST_POLL_S = 0.01  # a node without notifications, just after running a command
MAX_PAYLOAD = 7000  # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more


# ---- arguments and outcomes as JSON -------------------------------------------------------------


def _value_types() -> dict[str, type]:
    """The dataclasses and enums a command's arguments are made of: those of core/voice/schemas.py."""
    found: dict[str, type] = {}
    for name, value in vars(schemas).items():
        if isinstance(value, type) and (dataclasses.is_dataclass(value) or issubclass(value, enum.Enum)):
            found[name] = value
    return found


def encode(value: Any) -> Any:
    """JSON for a command argument; dataclasses and enums carry their type name (customer dicts are wrapped, so
    their keys can never pass for a type tag)."""
    if value is None or (isinstance(value, bool | int | float | str) and not isinstance(value, enum.Enum)):
        return value
    if isinstance(value, enum.Enum):
        return {"$enum": type(value).__name__, "value": value.value}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {item.name: encode(getattr(value, item.name)) for item in dataclasses.fields(value)}
        return {"$type": type(value).__name__, "fields": fields}
    if isinstance(value, Mapping):
        return {"$dict": {str(key): encode(item) for key, item in value.items()}}
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    raise TypeError(f"a relayed command cannot carry a {type(value).__name__}")


def decode(value: Any, types: Mapping[str, type] | None = None) -> Any:
    types = types if types is not None else _value_types()
    if isinstance(value, list):
        return [decode(item, types) for item in value]
    if not isinstance(value, dict):
        return value
    if "$dict" in value:
        return {key: decode(item, types) for key, item in value["$dict"].items()}
    if "$enum" in value:
        return types[value["$enum"]](value["value"])
    if "$type" in value:
        return types[value["$type"]](**{key: decode(item, types) for key, item in value["fields"].items()})
    raise ValueError(f"not a relayed value: {sorted(value)}")


def _errors() -> dict[str, type[CallplaneError]]:
    found: dict[str, type[CallplaneError]] = {}
    pending: list[type[CallplaneError]] = [CallplaneError]
    while pending:
        kind = pending.pop()
        found[_qualified(kind)] = kind
        pending.extend(kind.__subclasses__())
    return found


def encode_error(error: CallplaneError) -> dict[str, Any]:
    data: dict[str, Any] = {"type": _qualified(type(error)), "message": error.message}
    problems = getattr(error, "problems", None)
    if isinstance(problems, list):
        data["problems"] = [str(problem) for problem in problems]
    return data


def decode_error(data: Mapping[str, Any]) -> CallplaneError:
    """The node's error as the same class with the same message (a class this process lacks: its base)."""
    kind = _errors().get(str(data.get("type")), CallplaneError)
    error = kind.__new__(kind)
    Exception.__init__(error, data.get("message", ""))
    error.message = str(data.get("message", ""))
    if "problems" in data:
        error.problems = list(data["problems"])  # type: ignore[attr-defined]  # InvalidInput's field list
    return error


def _qualified(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def encode_result(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, VoiceCall):
        return {"call_id": value.id}
    if isinstance(value, VoiceDialog):
        return {"dialog_id": value.id}
    if isinstance(value, VoiceConference):
        return {"conference_id": value.id}
    return {"value": encode(value)}


# ---- notifications ------------------------------------------------------------------------------


async def before_commit(session: AsyncSession, channel: str | None = None, payload: str = "") -> None:
    """On PostgreSQL, in one round trip: NOTIFY `channel` at commit (elsewhere the other side's poll finds the
    row), and let the commit skip the WAL flush wait.

    Command rows are coordination, not records, so the relaxed commit is safe under the durability rule: nothing is
    acknowledged on the strength of a command row alone (a command's effects are committed by VoiceService's own,
    synchronous, transactions), and a PostgreSQL crash that loses the last rows only loses commands whose callers
    are then told the node did not answer.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    relaxed = "set_config('synchronous_commit', 'off', true)"
    if channel is None:
        await session.execute(text(f"SELECT {relaxed}"))
    else:
        statement = text(f"SELECT {relaxed}, pg_notify(:channel, :payload)")
        await session.execute(statement, {"channel": channel, "payload": payload})


def outcome_payload(command_id: str, status: str, result: Any, error: Any) -> str:
    """The outcome rides on the NOTIFY itself (one read less for the waiter); too big for a payload: the id only."""
    payload = json.dumps({"id": command_id, "status": status, "result": result, "error": error})
    return payload if len(payload) < MAX_PAYLOAD else command_id


class Notifications:
    """One LISTEN connection per process (PostgreSQL), reconnected when it drops; `dsn` None: none at all."""

    def __init__(self, dsn: str | None) -> None:
        self.dsn = dsn
        self._handlers: dict[str, list[Callable[[str], None]]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._stop = asyncio.Event()

    def on(self, channel: str, handler: Callable[[str], None]) -> None:
        self._handlers[channel].append(handler)

    @property
    def listening(self) -> bool:
        return self._connected.is_set()

    async def start(self, wait_s: float = 5.0) -> bool:
        """Start listening (once); whether notifications arrive now. Callers poll as well either way."""
        if self.dsn is None:
            return False
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="voice-notifications")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._connected.wait(), wait_s)
        return self.listening

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            # a connect that hangs (the database is away) is cancelled rather than waited for
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 5.0)
            self._task = None

    def _dispatch(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        for handler in self._handlers.get(channel, []):
            handler(payload)

    async def _run(self) -> None:
        import asyncpg

        assert self.dsn is not None
        while not self._stop.is_set():
            connection = None
            try:
                connection = await asyncpg.connect(self.dsn)
                for channel in (COMMANDS_CHANNEL, OUTCOMES_CHANNEL):
                    await connection.add_listener(channel, self._dispatch)
                self._connected.set()
                for channel in (COMMANDS_CHANNEL, OUTCOMES_CHANNEL):
                    self._dispatch(connection, 0, channel, EVERYONE)
                checked = asyncio.get_running_loop().time()
                while not self._stop.is_set() and not connection.is_closed():  # a closed socket shows at once
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), 0.5)
                    if not self._stop.is_set() and asyncio.get_running_loop().time() - checked > 5:
                        await connection.fetchval("SELECT 1")  # a silently dead peer shows here only
                        checked = asyncio.get_running_loop().time()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("LISTEN connection lost; polling meanwhile", extra={"fields": {"error": repr(error)}})
            finally:
                self._connected.clear()
                if connection is not None:
                    with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                        await connection.close(timeout=2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 1.0)


# ---- the API side -------------------------------------------------------------------------------


class CommandRelay:
    """Sends a VoiceService command to the node carrying its call and answers with the node's outcome."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        notifications: Notifications,
        local_node: str | None,
        timeout_s: float,
        dead_after_s: float,
        poll_s: float,
    ) -> None:
        self.sessions = sessions
        self.notifications = notifications
        self.local_node = local_node  # this process's node id when it runs an engine, else None
        self.timeout_s = timeout_s
        self.dead_after_s = dead_after_s
        self.poll_s = poll_s
        self._waiting: dict[str, asyncio.Event] = {}
        self._arrived: dict[str, dict[str, Any]] = {}  # outcomes that came in a NOTIFY payload
        notifications.on(OUTCOMES_CHANNEL, self._on_outcome)

    def _on_outcome(self, payload: str) -> None:
        if payload == EVERYONE:
            for waiting in self._waiting.values():
                waiting.set()
            return
        command_id, outcome = payload, None
        if payload.startswith("{"):
            outcome = json.loads(payload)
            command_id = str(outcome["id"])
        found = self._waiting.get(command_id)
        if found is not None:
            if outcome is not None:
                self._arrived[command_id] = outcome
            found.set()

    async def forward(
        self, voice: Any, command: str, arguments: dict[str, Any], local: Callable[[], Awaitable[Any]]
    ) -> Any:
        # the dialog hooks the router calls after creating a dialog name no account (the dialog's is used)
        asked = str(arguments["account_id"]) if arguments.get("account_id") else None
        owner = await self._owner(asked, arguments)
        if owner is None:
            return await local()  # here, or nowhere: the in-process code gives the same answer as always
        node_id, account_id = owner
        result = await self.send(node_id=node_id, account_id=account_id, command=command, arguments=arguments)
        if result is None:
            return None
        if "call_id" in result:
            return await voice.get_call(account_id=account_id, call_id=result["call_id"])
        if "dialog_id" in result:
            return await voice.get_dialog(account_id=account_id, dialog_id=result["dialog_id"])
        if "conference_id" in result:
            async with self.sessions() as session:
                return await session.get(VoiceConference, result["conference_id"])
        return decode(result.get("value"))

    async def _owner(self, account_id: str | None, arguments: Mapping[str, Any]) -> tuple[str, str] | None:
        """The node to run the command on (and the account); None to run it here (our call, or no live call of
        the account)."""
        async with self.sessions() as session:
            if arguments.get("conference_id"):  # a conference's room lives on the node that created it
                return await self._conference_owner(session, account_id, str(arguments["conference_id"]))
            call_ids: list[str] = []
            for name in ("call_id", "parent_call_id"):
                if arguments.get(name):
                    call_ids = [str(arguments[name])]
                    break
            else:
                if arguments.get("dialog_id"):
                    dialog = await session.get(VoiceDialog, str(arguments["dialog_id"]))
                    if dialog is None or account_id not in (None, dialog.account_id):
                        return None
                    call_ids = [dialog.parent_call_id] + ([dialog.child_call_id] if dialog.child_call_id else [])
                elif self.local_node is not None:
                    return None  # a new call: this process has an engine, so it places it
                elif account_id is not None:
                    return await pick_node(session, dead_after_s=self.dead_after_s), account_id
            for call_id in call_ids:
                # the call and whether its node is alive, in one round trip
                found = (
                    await session.execute(
                        select(VoiceCall.account_id, VoiceCall.state, VoiceCall.node_id, MediaNode.id)
                        .outerjoin(MediaNode, (MediaNode.id == VoiceCall.node_id) & alive(utcnow(), self.dead_after_s))
                        .where(VoiceCall.id == call_id)
                    )
                ).first()
                if found is None:
                    continue
                owner, state, node_id, alive_node = found
                if account_id not in (None, owner) or state not in LIVE_STATES:
                    continue
                if node_id == self.local_node:
                    return None
                if alive_node is None:
                    raise MediaNodeUnavailable(f"media node {node_id} (carrying call {call_id}) is not running")
                return str(node_id), str(owner)
        return None

    async def _conference_owner(
        self, session: AsyncSession, account_id: str | None, conference_id: str
    ) -> tuple[str, str] | None:
        conference = await session.get(VoiceConference, conference_id)
        if conference is None or account_id not in (None, conference.account_id):
            return None  # the in-process code answers 404
        if conference.node_id == self.local_node or conference.state != ConferenceState.ACTIVE:
            return None  # ours (it runs here), or over (the in-process code says so)
        node = await session.scalar(
            select(MediaNode.id).where(MediaNode.id == conference.node_id, alive(utcnow(), self.dead_after_s))
        )
        if node is None:
            raise MediaNodeUnavailable(
                f"media node {conference.node_id} (mixing conference {conference_id}) is not running"
            )
        return conference.node_id, conference.account_id

    async def send(
        self, *, node_id: str, account_id: str, command: str, arguments: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Write the command for `node_id`, wake it, wait for its outcome; raises the node's error."""
        command_id = new_id()
        arrived = asyncio.Event()
        self._waiting[command_id] = arrived
        try:
            listening = await self.notifications.start()
            async with self.sessions() as session, session.begin():
                session.add(
                    NodeCommand(
                        id=command_id,
                        node_id=node_id,
                        account_id=account_id,
                        command=command,
                        arguments={name: encode(value) for name, value in arguments.items()},
                        status=CommandStatus.PENDING,
                        expires_at=utcnow() + timedelta(seconds=self.timeout_s),
                    )
                )
                await before_commit(session, COMMANDS_CHANNEL, node_id)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.timeout_s
            delay = self.poll_s if listening else 0.005  # without notifications: poll, quickly at first
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), max(0.0, min(delay, deadline - loop.time())))
                arrived.clear()
                outcome = self._arrived.pop(command_id, None)
                if outcome is not None:
                    return self._answer(outcome["status"], outcome["result"], outcome["error"], node_id)
                row = await self._outcome(command_id)
                if row is not None:
                    return self._answer(row.status, row.result, row.error, node_id)
                if loop.time() >= deadline:
                    return await self._give_up(command_id, node_id)
                if not self.notifications.listening:
                    delay = min(max(delay, 0.005) * 2, 0.1)
        finally:
            self._waiting.pop(command_id, None)
            self._arrived.pop(command_id, None)

    async def _outcome(self, command_id: str) -> NodeCommand | None:
        async with self.sessions() as session:
            row = await session.get(NodeCommand, command_id)
        return row if row is not None and row.status in FINISHED else None

    @staticmethod
    def _answer(status: str, result: Any, error: Any, node_id: str) -> dict[str, Any] | None:
        if status == CommandStatus.DONE:
            return dict(result) if result is not None else None
        if status == CommandStatus.EXPIRED:
            raise MediaNodeUnavailable(f"media node {node_id} did not take the command in time")
        raise decode_error(error or {})

    async def _give_up(self, command_id: str, node_id: str) -> dict[str, Any] | None:
        async with self.sessions() as session, session.begin():
            await before_commit(session)
            result = await session.execute(
                update(NodeCommand)
                .where(NodeCommand.id == command_id, NodeCommand.status == CommandStatus.PENDING)
                .values(status=CommandStatus.EXPIRED, finished_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        if getattr(result, "rowcount", 0) == 1:
            raise MediaNodeUnavailable(f"media node {node_id} did not take the command in time (it was not run)")
        row = await self._outcome(command_id)
        if row is not None:
            return self._answer(row.status, row.result, row.error, node_id)
        raise MediaNodeUnavailable(f"media node {node_id} took the command but has not finished it in time")


# ---- the node side ------------------------------------------------------------------------------


class CommandExecutor:
    """Runs the commands addressed to this node through its VoiceService and stores their outcomes."""

    def __init__(
        self,
        *,
        voice: Any,
        sessions: async_sessionmaker[AsyncSession],
        notifications: Notifications,
        node_id: str,
        poll_s: float,
    ) -> None:
        self.voice = voice
        self.sessions = sessions
        self.notifications = notifications
        self.node_id = node_id
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._types = _value_types()
        notifications.on(COMMANDS_CHANNEL, self._on_command)

    def _on_command(self, node_id: str) -> None:
        if node_id in (self.node_id, EVERYONE):
            self._wake.set()

    async def run_forever(self, stop: asyncio.Event) -> None:
        await self.notifications.start()
        waker = asyncio.create_task(self._wake_on(stop))
        try:
            delay = self.poll_s
            while not stop.is_set():
                self._wake.clear()
                try:
                    claimed = await self.run_pending()
                except (OSError, DBAPIError) as error:  # the database is away for a moment: poll again
                    log.warning("claiming relayed commands failed", extra={"fields": {"error": repr(error)}})
                    claimed = 0
                # without notifications, a command is often followed by the application's next one: look again
                # soon, then back off to the poll interval
                delay = FAST_POLL_S if claimed and not self.notifications.listening else min(delay * 2, self.poll_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
        finally:
            waker.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def run_pending(self) -> int:
        """Claim this node's pending, unexpired commands and start each; returns how many."""
        now = utcnow()
        async with self.sessions() as session, session.begin():
            await before_commit(session)
            claimed = list(
                await session.execute(
                    update(NodeCommand)
                    .where(
                        NodeCommand.node_id == self.node_id,
                        NodeCommand.status == CommandStatus.PENDING,
                        NodeCommand.expires_at > now,
                    )
                    .values(status=CommandStatus.RUNNING, claimed_at=now)
                    .returning(NodeCommand.id, NodeCommand.command, NodeCommand.arguments)
                    .execution_options(synchronize_session=False)
                )
            )
        for command_id, command, arguments in claimed:
            task = asyncio.create_task(self._run(command_id, command, arguments), name=f"relayed-{command}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(claimed)

    async def _run(self, command_id: str, command: str, arguments: dict[str, Any]) -> None:
        running_relayed.set(True)  # this task's context only: run here, never relay onward
        status, result, error = CommandStatus.DONE, None, None
        try:
            if command not in RELAYED:
                raise InvalidInput(f"{command} is not a command a media node runs")
            method = getattr(self.voice, command)
            value = await method(**{name: decode(item, self._types) for name, item in arguments.items()})
            result = encode_result(value)
        except CallplaneError as failure:
            status, error = CommandStatus.FAILED, encode_error(failure)
        except Exception:  # the API process waits for an answer; the cause is logged here
            log.exception("relayed command failed", extra={"fields": {"command": command, "id": command_id}})
            status, error = CommandStatus.FAILED, {"type": "internal", "message": "Internal server error"}
        try:
            async with self.sessions() as session, session.begin():
                await session.execute(
                    update(NodeCommand)
                    .where(NodeCommand.id == command_id)
                    .values(status=status, result=result, error=error, finished_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
                await before_commit(session, OUTCOMES_CHANNEL, outcome_payload(command_id, status, result, error))
        except (OSError, DBAPIError) as failure:  # the caller times out and answers 503 (the command did run)
            log.warning("storing an outcome failed", extra={"fields": {"id": command_id, "error": repr(failure)}})
