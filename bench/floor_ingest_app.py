"""The floor for `bench/ingest.py`: the least a Python web app can do for one accepted Invoca call on PostgreSQL.

Starlette + asyncpg, no auth, no validation, no ORM: read the JSON body, then write the same rows that
callplane writes for an accepted single call (idempotency key, call, `process_call` job, `call.received`
event, one row per signal and per custom data value) with one statement, which is one transaction (the same
data-modifying CTE shape callplane uses on PostgreSQL), and answer 201 ``{"cuid": ...}``. A repeated
external id writes nothing and answers 202, as callplane does.

Run by `bench/ingest.py` under uvicorn with the same number of worker processes as `callplane serve`:

    FLOOR_DATABASE_URL=postgresql://... FLOOR_CAMPAIGN=86 \
        .venv/bin/uvicorn --app-dir bench floor_ingest_app:app --workers 2 --no-access-log --port 8090

The database must hold callplane's schema and a tenant (``callplane demo-setup``): the campaign's account,
organization, signal definitions and custom data fields are read once at start-up.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Any

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@cache
def _bundle_sql(signal_count: int, custom_count: int) -> str:
    """Key claim first; everything else only if the claim won (no row from `claimed`, nothing inserted)."""
    parts = [
        "claimed AS (INSERT INTO idempotency_keys (account_id, scope, key, request_hash, call_id, created_at) "
        "VALUES ($1, 'single_ingest', $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING call_id)",
        "new_call AS (INSERT INTO calls (id, account_id, organization_id, campaign_id, origin, external_id, "
        "direction, from_e164, to_e164, contact_e164, started_at, language_code, recording_url, status, "
        "agent, customer, metadata, extras, received_at, updated_at) "
        "SELECT call_id, $1, $6, $7, 'single_ingest', $2, $8, $9, $10, $11, $12::timestamptz, 'en-US', $13, "
        "'queued', '{}'::json, '{}'::json, '{}'::json, '{}'::json, $5, $5 FROM claimed RETURNING id)",
        "new_job AS (INSERT INTO jobs (id, account_id, call_id, kind, status, attempts, max_attempts, history, "
        "run_after, created_at, updated_at) "
        "SELECT $14, $1, id, 'process_call', 'queued', 0, 5, '[]'::json, $5, $5, $5 FROM new_call RETURNING id)",
        "new_event AS (INSERT INTO events (account_id, call_id, type, payload, created_at) "
        "SELECT $1, id, 'call.received', $15::json, $5 FROM new_call RETURNING id)",
    ]
    position = 16
    for index in range(signal_count):
        parts.append(
            f"new_signal_{index} AS (INSERT INTO call_signals (id, call_id, account_id, signal_definition_id, name, "
            f"value, source, evidence, created_at) SELECT ${position}, id, $1, ${position + 1}, ${position + 2}, "
            f"${position + 3}::boolean, 'submitted', '{{}}'::json, $5 FROM new_call RETURNING id)"
        )
        position += 4
    for index in range(custom_count):
        parts.append(
            f"new_custom_{index} AS (INSERT INTO call_custom_data (id, call_id, account_id, field_id, name, value, "
            f"source, created_at) SELECT ${position}, id, $1, ${position + 1}, ${position + 2}, ${position + 3}, "
            f"'submitted', $5 FROM new_call RETURNING id)"
        )
        position += 4
    return "WITH " + ",\n".join(parts) + "\nSELECT call_id FROM claimed"


class Tenant:
    """The campaign's ids and the account's definitions, read once."""

    def __init__(self, row: asyncpg.Record, signals: dict[str, tuple[str, str]], fields: dict[str, tuple[str, str]]):
        self.account_id: str = row["account_id"]
        self.organization_id: str = row["organization_id"]
        self.campaign_id: str = row["id"]
        self.signals = signals
        self.fields = fields


STATE: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    # The same pool size as callplane's engine (pool_size 10 per process).
    pool = await asyncpg.create_pool(os.environ["FLOOR_DATABASE_URL"], min_size=2, max_size=10)
    async with pool.acquire() as connection:
        campaign = await connection.fetchrow(
            "SELECT id, account_id, organization_id FROM campaigns WHERE external_id = $1",
            os.environ.get("FLOOR_CAMPAIGN", "86"),
        )
        assert campaign is not None, "run callplane demo-setup on this database first"
        signals = await connection.fetch(
            "SELECT name_key, id, name FROM signal_definitions WHERE account_id = $1", campaign["account_id"]
        )
        fields = await connection.fetch(
            "SELECT api_name_key, id, api_name FROM custom_data_fields WHERE account_id = $1", campaign["account_id"]
        )
    STATE["pool"] = pool
    STATE["tenant"] = Tenant(campaign, {r[0]: (r[1], r[2]) for r in signals}, {r[0]: (r[1], r[2]) for r in fields})
    yield
    await pool.close()


def _e164(number: Any) -> str:
    return "+1" + str(number)


async def create_call(request: Request) -> Response:
    body = orjson.loads(await request.body())
    tenant: Tenant = STATE["tenant"]
    call = body["call"]
    signals = body.get("signals", [])
    custom_data = body.get("custom_data", [])
    now = datetime.now(UTC)
    call_id = str(uuid.uuid4())
    external_id = str(call["external_call_unique_id"])
    direction = call["call_direction"]
    from_e164, to_e164 = _e164(call["calling_phone_number"]), _e164(call["destination_phone_number"])
    parameters: list[Any] = [
        tenant.account_id,
        external_id,
        hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest(),
        call_id,
        now,
        tenant.organization_id,
        tenant.campaign_id,
        direction,
        from_e164,
        to_e164,
        from_e164 if direction == "inbound" else to_e164,
        datetime.fromisoformat(call["start_time"]).replace(tzinfo=UTC),
        call.get("recording_url"),
        str(uuid.uuid4()),
        orjson.dumps({"call_id": call_id, "external_id": external_id, "origin": "single_ingest"}).decode(),
    ]
    for signal in signals:
        definition_id, name = tenant.signals[signal["name"].casefold()]
        parameters += [str(uuid.uuid4()), definition_id, name, signal["value"] in (True, "yes", "true", 1, "1")]
    for item in custom_data:
        field_id, name = tenant.fields[item["name"].casefold()]
        parameters += [str(uuid.uuid4()), field_id, name, str(item["value"])]
    pool: asyncpg.Pool = STATE["pool"]
    # One statement is one transaction: it commits before fetchval returns (as callplane's does on PostgreSQL).
    async with pool.acquire() as connection:
        inserted = await connection.fetchval(_bundle_sql(len(signals), len(custom_data)), *parameters)
    if inserted is None:
        # A repeat: callplane answers 202 with the first call's id; the floor skips that read.
        return Response(orjson.dumps({"cuid": None}), status_code=202, media_type="application/json")
    return Response(orjson.dumps({"cuid": call_id}), status_code=201, media_type="application/json")


app = Starlette(
    routes=[Route("/api/{version}/calls.json", create_call, methods=["POST"])],
    lifespan=lifespan,
)
