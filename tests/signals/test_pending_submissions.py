"""Signal API submissions sent with call_in_progress=true before their call exists are kept and applied later."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select

from callplane.core.signals.models import SignalSubmission, SubmissionStatus
from callplane.core.signals.service import resolve_pending_submissions
from callplane.core.tenancy.service import TenancyLookups
from callplane.db.engine import create_engine, create_session_factory
from callplane.testing.factories import Admin, Network
from callplane.testing.server import RunningServer

SIGNAL_API = "/api/2018-02-01/transactions.json"


def _ingest(client: httpx.Client, network: Network, external_id: str) -> str:
    call = {
        "external_call_unique_id": external_id,
        "start_time": "2025-06-01 12:00:00",
        "destination_phone_number": 9093900003,
        "calling_phone_number": "+14155550142",
        "advertiser_campaign_id_from_network": 86,
        "call_direction": "inbound",
    }
    response = client.post("/api/2022-03-01/calls.json", json={"call": call}, headers={"Authorization": network.token})
    assert response.status_code == 201
    return str(response.json()["cuid"])


def _resolve(server: RunningServer, account_id: str) -> tuple[int, list[SignalSubmission]]:
    async def run() -> tuple[int, list[SignalSubmission]]:
        engine = create_engine(server.settings)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                resolved = await resolve_pending_submissions(
                    session=session, lookups=TenancyLookups(ttl_seconds=0), account_id=account_id
                )
                rows = await session.scalars(
                    select(SignalSubmission)
                    .where(SignalSubmission.account_id == account_id)
                    .order_by(SignalSubmission.created_at)
                )
                return resolved, list(rows)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_a_submission_waits_for_its_call(server: RunningServer, admin: Admin, client: httpx.Client) -> None:
    network = admin.network()
    headers = {"Authorization": network.token}
    search = {"call_start_time": "2025-06-01 12:00:30", "calling_phone_number": "4155550142"}
    waiting = {"search": search, "signals": [{"name": "sale", "partner_unique_id": "7"}], "call_in_progress": True}
    assert client.post(SIGNAL_API, json=waiting, headers=headers).status_code == 201
    unknown = {"search": search, "signals": [{"name": "Upsell"}], "call_in_progress": "yes"}
    assert client.post(SIGNAL_API, json=unknown, headers=headers).status_code == 201  # only checked later

    assert _resolve(server, network.account_id)[0] == 0  # no call yet: both stay pending
    call_id = _ingest(client, network, "arrives-later")
    resolved, rows = _resolve(server, network.account_id)

    assert resolved == 2
    assert [(row.status, row.call_id) for row in rows] == [
        (SubmissionStatus.APPLIED, call_id),
        (SubmissionStatus.REJECTED, call_id),
    ]
    assert rows[1].reason == "signal 'Upsell' does not exist in your Signal AI configuration"
    stored = client.get(f"/v1/calls/{call_id}", headers={"Authorization": f"Bearer {network.token}"}).json()
    assert [(s["name"], s["partner_unique_id"], s["source"]) for s in stored["signals"]] == [("Sale", "7", "api")]
