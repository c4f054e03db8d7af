"""Tenants register webhook endpoints for call events; each delivery is signed (Standard Webhooks)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from callplane.core.webhooks import service as webhooks
from callplane.core.webhooks.models import WebhookEndpoint
from callplane.errors import CallplaneError, NotFound
from callplane.surfaces.context import ContextDep, SessionDep
from callplane.surfaces.native.auth import PrincipalDep

router = APIRouter(prefix="/v1", tags=["Webhooks"])


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
    """Register an endpoint; the response carries its signing secret, shown this once."""
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
