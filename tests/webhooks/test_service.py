"""Endpoints and the outbox writes, on both databases: matching, encryption at rest, tenancy scoping."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.webhooks import service
from callplane.core.webhooks.errors import InvalidWebhookUrl
from callplane.core.webhooks.models import Delivery, DeliveryKind, DeliveryStatus, WebhookEndpoint
from callplane.errors import NotFound
from tests.webhooks.conftest import Db, new_account


def test_endpoint_secret_is_returned_once_and_stored_encrypted(db: Db, secret_box: SecretBox) -> None:
    async def body() -> None:
        async with db.sessions() as sessions:
            account_id = await new_account(sessions)
            async with sessions() as session, session.begin():
                endpoint, secret = await service.create_endpoint(
                    session=session,
                    secret_box=secret_box,
                    account_id=account_id,
                    url="https://hooks.example.com/callplane",
                    event_types=["call.completed", "call.completed", "call.failed"],
                )
            async with sessions() as session:
                stored = await session.get(WebhookEndpoint, endpoint.id)
                assert stored is not None
                assert secret.startswith("whsec_")
                assert secret not in stored.secret_ciphertext
                assert secret_box.decrypt(stored.secret_ciphertext) == secret
                assert stored.event_types == ["call.completed", "call.failed"]
                assert stored.enabled

    asyncio.run(body())


def test_enqueue_event_writes_one_delivery_per_matching_enabled_endpoint(db: Db, secret_box: SecretBox) -> None:
    async def body() -> None:
        async with db.sessions() as sessions:
            account_id = await new_account(sessions)
            other_account = await new_account(sessions)
            async with sessions() as session, session.begin():

                async def add(url: str, types: list[str], account: str = account_id) -> WebhookEndpoint:
                    endpoint, _ = await service.create_endpoint(
                        session=session, secret_box=secret_box, account_id=account, url=url, event_types=types
                    )
                    return endpoint

                everything = await add("https://a.example.com/all", [])
                completed = await add("https://a.example.com/completed", ["call.completed"])
                await add("https://a.example.com/failed", ["call.failed"])
                disabled = await add("https://a.example.com/off", [])
                disabled.enabled = False
                await add("https://b.example.com/all", [], other_account)
                await session.flush()
                deliveries = await service.enqueue_event(
                    session=session,
                    account_id=account_id,
                    event_type="call.completed",
                    payload={"call_id": "c1"},
                    call_id="c1",
                )
            assert {d.endpoint_id for d in deliveries} == {everything.id, completed.id}
            async with sessions() as session:
                rows = list(await session.scalars(select(Delivery).where(Delivery.account_id == account_id)))
            assert len(rows) == 2
            for row in rows:
                assert row.kind == DeliveryKind.WEBHOOK
                assert row.status == DeliveryStatus.PENDING
                assert row.attempts == 0
                assert row.call_id == "c1"
                assert row.payload["type"] == "call.completed"
                assert row.payload["data"] == {"call_id": "c1"}
                assert "timestamp" in row.payload

    asyncio.run(body())


def test_enqueue_callback_allows_the_first_try_and_three_retries(db: Db) -> None:
    async def body() -> None:
        async with db.sessions() as sessions:
            account_id = await new_account(sessions)
            async with sessions() as session, session.begin():
                delivery = await service.enqueue_callback(
                    session=session,
                    account_id=account_id,
                    call_id="call123",
                    url="https://partner.example.com/cb",
                    payload={"call_id": "call123", "status": "completed", "error": None},
                    event_type="call.completed",
                )
            assert delivery.kind == DeliveryKind.CALLBACK
            assert delivery.max_attempts == 4
            assert delivery.endpoint_id is None
            assert delivery.payload == {"call_id": "call123", "status": "completed", "error": None}

    asyncio.run(body())


def test_list_and_delete_are_scoped_to_the_account(db: Db, secret_box: SecretBox) -> None:
    async def body() -> None:
        async with db.sessions() as sessions:
            account_id = await new_account(sessions)
            other_account = await new_account(sessions)
            async with sessions() as session, session.begin():
                first, _ = await service.create_endpoint(
                    session=session, secret_box=secret_box, account_id=account_id, url="https://x.example.com/1"
                )
                second, _ = await service.create_endpoint(
                    session=session, secret_box=secret_box, account_id=account_id, url="https://x.example.com/2"
                )
            async with sessions() as session, session.begin():
                listed = await service.list_endpoints(session=session, account_id=account_id)
                assert {e.id for e in listed} == {first.id, second.id}
                assert await service.list_endpoints(session=session, account_id=other_account) == []
                with pytest.raises(NotFound):
                    await service.delete_endpoint(session=session, account_id=other_account, endpoint_id=first.id)
                await service.delete_endpoint(session=session, account_id=account_id, endpoint_id=first.id)
            async with sessions() as session:
                listed = await service.list_endpoints(session=session, account_id=account_id)
                assert [e.id for e in listed] == [second.id]

    asyncio.run(body())


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "https://", "not a url", "file:///etc/passwd", "https://e.com/#frag", "x" * 3000]
)
def test_urls_that_can_never_be_delivered_are_refused(url: str) -> None:
    with pytest.raises(InvalidWebhookUrl):
        service.check_url(url)
