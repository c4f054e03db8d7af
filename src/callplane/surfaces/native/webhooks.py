"""Tenants register webhook endpoints for call events; each delivery is signed (Standard Webhooks)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from callplane.core.recordings.targets import TargetPolicy
from callplane.core.webhooks import service as webhooks
from callplane.core.webhooks.models import Delivery, WebhookEndpoint
from callplane.errors import CallplaneError, NotFound
from callplane.surfaces.context import ContextDep, SessionDep
from callplane.surfaces.http import JsonRoute
from callplane.surfaces.native.auth import PrincipalDep

router = APIRouter(route_class=JsonRoute, prefix="/v1", tags=["Webhooks"])


class WebhookEndpointIn(BaseModel):
    url: str
    event_types: list[str] = []


def endpoint_out(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "event_types": endpoint.event_types,
        "enabled": endpoint.enabled,
        "created_at": endpoint.created_at,
    }


@router.post("/webhook-endpoints", status_code=201)
async def create_webhook_endpoint(
    body: WebhookEndpointIn, principal: PrincipalDep, context: ContextDep, session: SessionDep
) -> dict[str, Any]:
    """Register an endpoint (https, unless the host is allow-listed); its signing secret is shown this once."""
    settings = context.settings
    parts = urlsplit(body.url)
    if parts.scheme == "http" and not _allow_listed(
        parts.hostname or "", settings.fetch_allowed_networks, settings.fetch_allowed_hosts
    ):
        raise HTTPException(422, "webhook URLs must use https:// (plain http only for allow-listed hosts)")
    try:
        async with session.begin():
            endpoint, secret = await webhooks.create_endpoint(
                session=session,
                secret_box=context.secret_box,
                account_id=principal.account.id,
                url=body.url,
                event_types=body.event_types,
            )
    except CallplaneError as error:
        raise HTTPException(422, error.message) from error
    return endpoint_out(endpoint) | {"secret": secret}


def _allow_listed(host: str, networks: list[str], hosts: list[str]) -> bool:
    import ipaddress

    policy = TargetPolicy.from_config(networks, hosts)
    if host.lower() in policy.allowed_hosts:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in policy.allowed_networks)


@router.get("/webhook-endpoints")
async def list_webhook_endpoints(principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    found = await webhooks.list_endpoints(session=session, account_id=principal.account.id)
    return {"webhook_endpoints": [endpoint_out(e) for e in found]}


@router.delete("/webhook-endpoints/{endpoint_id}", status_code=204)
async def delete_webhook_endpoint(endpoint_id: str, principal: PrincipalDep, session: SessionDep) -> None:
    try:
        async with session.begin():
            await webhooks.delete_endpoint(session=session, account_id=principal.account.id, endpoint_id=endpoint_id)
    except NotFound as error:
        raise HTTPException(404, error.message) from error


def delivery_out(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "kind": delivery.kind,
        "event_type": delivery.event_type,
        "call_id": delivery.call_id,
        "endpoint_id": delivery.endpoint_id,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "max_attempts": delivery.max_attempts,
        "next_attempt_at": delivery.next_attempt_at,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": delivery.created_at,
        "delivered_at": delivery.delivered_at,
    }


@router.get("/webhook-deliveries")
async def list_deliveries(
    principal: PrincipalDep,
    session: SessionDep,
    status: str | None = None,
    call_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Webhook and callback deliveries, newest first (e.g. `?status=failed` to find what to redeliver)."""
    found = await webhooks.list_deliveries(
        session=session, account_id=principal.account.id, status=status, call_id=call_id, limit=limit
    )
    return {"deliveries": [delivery_out(d) for d in found]}


@router.post("/webhook-deliveries/{delivery_id}/redeliver")
async def redeliver(delivery_id: str, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    """Queue a delivery again with fresh attempts; receivers can dedupe on the unchanged webhook-id."""
    try:
        async with session.begin():
            delivery = await webhooks.redeliver(
                session=session, account_id=principal.account.id, delivery_id=delivery_id
            )
    except NotFound as error:
        raise HTTPException(404, error.message) from error
    return delivery_out(delivery)
