"""The floor for benchmarks of HTTP requests that read and write the database: callplane's own SQL, replayed.

`Capture` records every statement callplane sends to the database while one request runs (SQLAlchemy's
cursor events, so the server must run in this process), with the rows each returned. `floor_app` is a minimal
Starlette app that, for each request, runs the same statements with the same parameters on the same database in
one transaction (asyncpg on PostgreSQL, sqlite3 on SQLite) and answers the last rows read as JSON: no auth, no
validation, no ORM, no rendering beyond orjson. Rows it writes get fresh keys: a UUID a recorded INSERT wrote
first gets a new one per request, and a value a recorded RETURNING gave is swapped, in later parameters, for the
one the replay's RETURNING gave. The request body may name more swaps (``{"old": "new"}``: a lookup's key).

The floor does exactly callplane's database round trips, so the ratio is callplane's own cost around its SQL
(HTTP, auth, validation, ORM, rendering), not whether that SQL is the least needed: the statement count is
printed beside it. Used by `bench/contact_center.py` (in this process) and `bench/live_calls.py`
(``python bench/replay_floor.py --serve FILE --database URL --port N``, a process of its own, like callplane's).
"""

from __future__ import annotations

import argparse
import pickle
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import uvicorn
from sqlalchemy import event
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

TRANSACTION_CONTROL = re.compile(r"\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Statement:
    sql: str
    parameters: Any  # a tuple (positional), or a list of them (executemany)
    many: bool
    returned: list[tuple[Any, ...]] = field(default_factory=list)


class Capture:
    """Records the statements of every engine in this process while `recording()` is open."""

    def __init__(self) -> None:
        self.statements: list[Statement] = []
        self._active = False

    def _before(self, _conn: Any, _cursor: Any, sql: str, parameters: Any, _context: Any, many: bool) -> None:
        if self._active and not TRANSACTION_CONTROL.match(sql):  # the replay runs its own transaction
            self.statements.append(Statement(sql, parameters, many))

    def _after(self, _conn: Any, cursor: Any, sql: str, *_: Any) -> None:
        rows = getattr(cursor, "_rows", None)  # the async adapters' prefetched rows: read without consuming them
        if self._active and self.statements and rows and self.statements[-1].sql == sql:
            self.statements[-1].returned = [tuple(row) for row in rows]

    @contextmanager
    def recording(self) -> Iterator[list[Statement]]:
        self.statements = []
        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)
        self._active = True
        try:
            yield self.statements
        finally:
            self._active = False
            event.remove(Engine, "before_cursor_execute", self._before)
            event.remove(Engine, "after_cursor_execute", self._after)


def _values(parameters: Any) -> Iterator[Any]:
    rows = parameters if isinstance(parameters, list) else [parameters]
    for row in rows:
        yield from (row.values() if isinstance(row, dict) else row)


def fresh_keys(statements: Sequence[Statement]) -> set[str]:
    """UUIDs an INSERT wrote that no earlier statement mentioned: the request's new rows."""
    seen: set[str] = set()
    fresh: set[str] = set()
    for statement in statements:
        for value in _values(statement.parameters):
            text = str(value)
            if UUID.fullmatch(text) and text not in seen and statement.sql.lstrip().upper().startswith("INSERT"):
                fresh.add(text)
            seen.add(text)
        seen.update(str(value) for row in statement.returned for value in row)
    return fresh


class _Swaps:
    """The values one replay changes: fresh keys, RETURNING values, the request's own."""

    def __init__(self, fresh: set[str], named: dict[str, str]) -> None:
        self.values: dict[Any, Any] = {key: str(uuid.uuid4()) for key in fresh} | named

    def apply(self, parameters: Any) -> Any:
        if isinstance(parameters, list):
            return [self.apply(row) for row in parameters]
        if isinstance(parameters, dict):
            return {name: self._one(value) for name, value in parameters.items()}
        return tuple(self._one(value) for value in parameters)

    def _one(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int | uuid.UUID):
            return value
        swapped = self.values.get(str(value) if isinstance(value, uuid.UUID) else value, value)
        return uuid.UUID(swapped) if isinstance(value, uuid.UUID) else swapped

    def learn(self, recorded: list[tuple[Any, ...]], replayed: list[tuple[Any, ...]]) -> None:
        for old_row, new_row in zip(recorded, replayed, strict=False):
            for old, new in zip(old_row, new_row, strict=False):
                if old != new and isinstance(old, str | int) and not isinstance(old, bool):
                    self.values[old] = new


class _Database:
    async def replay(self, statements: list[Statement], fresh: set[str], named: dict[str, str]) -> list[Any]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class _Postgres(_Database):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def close(self) -> None:
        await self.pool.close()

    async def replay(self, statements: list[Statement], fresh: set[str], named: dict[str, str]) -> list[Any]:
        swaps, last = _Swaps(fresh, named), list[Any]()
        async with self.pool.acquire() as connection, connection.transaction():
            for statement in statements:
                parameters = swaps.apply(statement.parameters)
                if statement.many:
                    await connection.executemany(statement.sql, parameters)
                    continue
                rows = await connection.fetch(statement.sql, *parameters)
                swaps.learn(statement.returned, [tuple(row) for row in rows])
                last = [dict(row) for row in rows] or last
        return last


class _Sqlite(_Database):
    def __init__(self, path: str) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.connection.execute("PRAGMA synchronous=FULL")  # callplane's default (sqlite_synchronous)
        self.connection.execute("PRAGMA busy_timeout=5000")

    async def close(self) -> None:
        self.connection.close()

    async def replay(self, statements: list[Statement], fresh: set[str], named: dict[str, str]) -> list[Any]:
        swaps, last = _Swaps(fresh, named), list[Any]()
        cursor = self.connection.cursor()
        cursor.execute("BEGIN")
        try:
            for statement in statements:
                parameters = swaps.apply(statement.parameters)
                if statement.many:
                    cursor.executemany(statement.sql, parameters)
                    continue
                rows = cursor.execute(statement.sql, parameters).fetchall()
                swaps.learn(statement.returned, rows)
                names = [column[0] for column in cursor.description or ()]
                last = [dict(zip(names, row, strict=True)) for row in rows] or last
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        return last


async def _open(database_url: str | None, sqlite_path: Path | None) -> _Database:
    if database_url is not None:
        return _Postgres(await asyncpg.create_pool(database_url.replace("+asyncpg", ""), min_size=1, max_size=4))
    return _Sqlite(str(sqlite_path))


async def replay_times(
    statements: list[Statement], database_url: str | None, sqlite_path: Path | None, count: int
) -> list[float]:
    """Seconds each of `count` replays of `statements` took, straight on the database: the floor of a loop's pass."""
    database, fresh, samples = await _open(database_url, sqlite_path), fresh_keys(statements), []
    try:
        for _ in range(count):
            started = time.perf_counter()
            await database.replay(statements, fresh, {})
            samples.append(time.perf_counter() - started)
        return samples
    finally:
        await database.close()


def floor_app(routes: dict[str, list[Statement]], database_url: str | None, sqlite_path: Path | None) -> Starlette:
    """`POST /replay/{name}` (body: optional ``{"old": "new"}`` swaps) runs route `name`'s statements once."""
    fresh = {name: fresh_keys(statements) for name, statements in routes.items()}
    state: dict[str, _Database] = {}

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state["db"] = await _open(database_url, sqlite_path)
        yield
        await state["db"].close()

    async def replay(request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        rows = await state["db"].replay(routes[name], fresh[name], orjson.loads(body) if body else {})
        return Response(orjson.dumps(rows, default=str), media_type="application/json")

    return Starlette(routes=[Route("/replay/{name}", replay, methods=["POST"])], lifespan=lifespan)


@contextmanager
def serve_in_thread(app: Starlette, port: int) -> Iterator[str]:
    """uvicorn in a thread of this process, as `callplane.testing.server.running_server` runs callplane."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the floor app did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=Path, required=True, help="pickled {route name: [Statement, ...]}")
    parser.add_argument("--database", help="PostgreSQL URL (else --sqlite)")
    parser.add_argument("--sqlite", type=Path)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    routes = pickle.loads(args.serve.read_bytes())
    app = floor_app(routes, args.database, args.sqlite)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
