"""Webhook endpoints and the outbox writes; every function works in the caller's transaction and never commits.

A notification is written as a ``Delivery`` row in the same transaction as the change it reports, so it is
sent if and only if that change committed; the ``DeliveryWorker`` sends it afterwards, at least once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.webhooks.errors import InvalidWebhookUrl
from callplane.core.webhooks.models import Delivery, DeliveryKind, DeliveryStatus, WebhookEndpoint
from callplane.core.webhooks.outbox import deliveries_written
from callplane.core.webhooks.signing import generate_secret
from callplane.db.base import utcnow
from callplane.errors import InvalidInput, NotFound

# Zipteams: "Callbacks will retry up to 3 times with exponential backoff" -> the first try and 3 retries.
CALLBACK_MAX_ATTEMPTS = 4
# Webhooks get a longer schedule (Svix: 8 attempts over ~28 h; Standard Webhooks ~75 h); see docs/webhooks.md.
WEBHOOK_MAX_ATTEMPTS = 10
MAX_URL_LENGTH = 2048
MAX_EVENT_TYPE_LENGTH = 64  # the column's width


def check_url(url: str) -> str:
    """Refuse what can never be delivered; where it may go (public addresses only) is checked at send time."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidWebhookUrl(f"the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidWebhookUrl() from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidWebhookUrl()
    if parsed.fragment:
        raise InvalidWebhookUrl("the URL must not contain a fragment")
    return url


def _check_event_type(event_type: str) -> None:
    if not event_type or len(event_type) > MAX_EVENT_TYPE_LENGTH:
        raise InvalidInput(f"event types are 1 to {MAX_EVENT_TYPE_LENGTH} characters")


async def create_endpoint(
    *,
    session: AsyncSession,
    secret_box: SecretBox,
    account_id: str,
    url: str,
    event_types: Sequence[str] = (),
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; the plaintext ``whsec_`` secret is returned here once and stored only encrypted."""
    check_url(url)
    for event_type in event_types:
        _check_event_type(event_type)
    secret = generate_secret()
    endpoint = WebhookEndpoint(
        account_id=account_id,
        url=url,
        secret_ciphertext=secret_box.encrypt(secret),
        event_types=sorted(set(event_types)),
        enabled=True,
    )
    session.add(endpoint)
    await session.flush()
    return endpoint, secret


async def list_endpoints(*, session: AsyncSession, account_id: str) -> list[WebhookEndpoint]:
    result = await session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.account_id == account_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return list(result)


async def delete_endpoint(*, session: AsyncSession, account_id: str, endpoint_id: str) -> None:
    """Delete an endpoint of this account; its pending deliveries then fail at send time ("endpoint deleted")."""
    endpoint = await session.scalar(
        select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.account_id == account_id)
    )
    if endpoint is None:
        raise NotFound("webhook endpoint not found")
    await session.delete(endpoint)
    await session.flush()


def _matches(endpoint: WebhookEndpoint, event_type: str) -> bool:
    return not endpoint.event_types or event_type in endpoint.event_types


async def enqueue_event(
    *,
    session: AsyncSession,
    account_id: str,
    event_type: str,
    payload: dict[str, Any],
    call_id: str | None = None,
    occurred_at: datetime | None = None,
    max_attempts: int = WEBHOOK_MAX_ATTEMPTS,
) -> list[Delivery]:
    """One delivery per enabled endpoint of the account that subscribes to ``event_type`` (empty list = all).

    The body is the Standard Webhooks envelope ``{"type", "timestamp", "data"}``, fixed now, so every retry
    sends the same bytes and the timestamp says when the event happened rather than when it was sent.
    """
    _check_event_type(event_type)
    endpoints = await session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.account_id == account_id, WebhookEndpoint.enabled.is_(True))
    )
    body = {"type": event_type, "timestamp": (occurred_at or utcnow()).isoformat(), "data": payload}
    now = utcnow()
    deliveries = [
        Delivery(
            account_id=account_id,
            kind=DeliveryKind.WEBHOOK,
            endpoint_id=endpoint.id,
            call_id=call_id,
            url=endpoint.url,
            event_type=event_type,
            payload=body,
            status=DeliveryStatus.PENDING,
            attempts=0,
            max_attempts=max_attempts,
            next_attempt_at=now,
        )
        for endpoint in endpoints
        if _matches(endpoint, event_type)
    ]
    session.add_all(deliveries)
    await session.flush()
    if deliveries:
        deliveries_written(session)
    return deliveries


async def enqueue_callback(
    *,
    session: AsyncSession,
    account_id: str,
    call_id: str,
    url: str,
    payload: dict[str, Any],
    event_type: str,
    max_attempts: int = CALLBACK_MAX_ATTEMPTS,
) -> Delivery:
    """A one-off POST of ``payload`` exactly as given to a per-call ``callback_url`` (the batch API's)."""
    check_url(url)
    _check_event_type(event_type)
    delivery = Delivery(
        account_id=account_id,
        kind=DeliveryKind.CALLBACK,
        endpoint_id=None,
        call_id=call_id,
        url=url,
        event_type=event_type,
        payload=payload,
        status=DeliveryStatus.PENDING,
        attempts=0,
        max_attempts=max_attempts,
        next_attempt_at=utcnow(),
    )
    session.add(delivery)
    await session.flush()
    deliveries_written(session)
    return delivery


async def list_deliveries(
    *, session: AsyncSession, account_id: str, status: str | None = None, call_id: str | None = None, limit: int = 100
) -> list[Delivery]:
    statement = select(Delivery).where(Delivery.account_id == account_id)
    if status:
        statement = statement.where(Delivery.status == status)
    if call_id:
        statement = statement.where(Delivery.call_id == call_id)
    return list(await session.scalars(statement.order_by(Delivery.created_at.desc()).limit(limit)))


async def redeliver(*, session: AsyncSession, account_id: str, delivery_id: str) -> Delivery:
    """Send a delivery again (typically a failed one) with a fresh set of attempts and the same webhook-id."""
    delivery = await session.scalar(
        select(Delivery).where(Delivery.id == delivery_id, Delivery.account_id == account_id)
    )
    if delivery is None:
        raise NotFound("delivery not found")
    delivery.status = DeliveryStatus.PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = datetime.now(UTC)
    delivery.lease_expires_at = None
    await session.flush()
    return delivery
