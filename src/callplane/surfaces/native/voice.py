"""Native admin of a calls configuration: its event subscriptions and the inbound routes that point at it.

`/v1/voice/configurations/{id}/subscriptions` and `/v1/voice/configurations/{id}/routes`, account-scoped by
the caller's API token (docs/voice.md "Events" and "Routing").
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel

from callplane.core.voice import configurations as service
from callplane.core.voice.events import subscribable_names
from callplane.core.voice.models import EventSubscription, InboundRoute, SubscriptionAuth
from callplane.core.webhooks.models import WebhookEndpoint
from callplane.errors import CallplaneError, NotFound
from callplane.surfaces.context import ContextDep, SessionDep
from callplane.surfaces.http import JsonRoute
from callplane.surfaces.native.auth import PrincipalDep
from callplane.surfaces.native.webhooks import _allow_listed

router = APIRouter(route_class=JsonRoute, prefix="/v1/voice/configurations", tags=["Voice"])


class SubscriptionIn(BaseModel):
    url: str
    event_types: list[str] = []
    auth: Literal["HMAC", "BASIC"] = "HMAC"
    username: str | None = None
    password: str | None = None


class RouteIn(BaseModel):
    called_user: str


def subscription_out(subscription: EventSubscription, endpoint: WebhookEndpoint | None) -> dict[str, Any]:
    return {
        "id": subscription.id,
        "configuration_id": subscription.configuration_id,
        "url": endpoint.url if endpoint else None,
        "event_types": subscription.event_types,
        "auth": subscription.auth,
        "username": endpoint.basic_auth_username if endpoint else None,
        "created_at": subscription.created_at,
    }


def route_out(route: InboundRoute) -> dict[str, Any]:
    return {"called_user": route.called_user, "configuration_id": route.configuration_id}


def _status(error: CallplaneError) -> int:
    return 404 if isinstance(error, NotFound) else 422


@router.post("/{configuration_id}/subscriptions", status_code=201)
async def create_subscription(
    configuration_id: str, body: SubscriptionIn, principal: PrincipalDep, context: ContextDep, session: SessionDep
) -> dict[str, Any]:
    """Send this configuration's call events to `url`; the signing secret is shown this once."""
    settings = context.settings
    parts = urlsplit(body.url)
    if parts.scheme == "http" and not _allow_listed(
        parts.hostname or "", settings.fetch_allowed_networks, settings.fetch_allowed_hosts
    ):
        raise HTTPException(422, "webhook URLs must use https:// (plain http only for allow-listed hosts)")
    try:
        async with session.begin():
            subscription, endpoint, secret = await service.create_subscription(
                session=session,
                secret_box=context.secret_box,
                account_id=principal.account.id,
                configuration_id=configuration_id,
                url=body.url,
                known_event_types=subscribable_names(context.voice_events),
                event_types=body.event_types,
                auth=SubscriptionAuth(body.auth),
                basic_username=body.username,
                basic_password=body.password,
            )
    except CallplaneError as error:
        raise HTTPException(_status(error), error.message) from error
    return subscription_out(subscription, endpoint) | {"secret": secret}


@router.get("/{configuration_id}/subscriptions")
async def list_subscriptions(configuration_id: str, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    found = await service.list_subscriptions(
        session=session, account_id=principal.account.id, configuration_id=configuration_id
    )
    results = []
    for subscription in found:
        endpoint = await session.get(WebhookEndpoint, subscription.webhook_endpoint_id)
        results.append(subscription_out(subscription, endpoint))
    return {"results": results}


@router.delete("/{configuration_id}/subscriptions/{subscription_id}", status_code=204)
async def delete_subscription(
    configuration_id: str, subscription_id: str, principal: PrincipalDep, session: SessionDep
) -> Response:
    try:
        async with session.begin():
            await service.delete_subscription(
                session=session, account_id=principal.account.id, subscription_id=subscription_id
            )
    except CallplaneError as error:
        raise HTTPException(_status(error), error.message) from error
    return Response(status_code=204)


@router.post("/{configuration_id}/routes", status_code=201)
async def add_route(
    configuration_id: str, body: RouteIn, principal: PrincipalDep, session: SessionDep
) -> dict[str, Any]:
    """Inbound calls to `called_user` (the SIP Request-URI user: a name or a number) go to this configuration."""
    try:
        async with session.begin():
            route = await service.add_route(
                session=session,
                account_id=principal.account.id,
                configuration_id=configuration_id,
                called_user=body.called_user,
            )
    except CallplaneError as error:
        raise HTTPException(
            _status(error) if not isinstance(error, service.RouteTaken) else 409, error.message
        ) from error
    return route_out(route)


@router.get("/{configuration_id}/routes")
async def list_routes(configuration_id: str, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    routes = await service.list_routes(
        session=session, account_id=principal.account.id, configuration_id=configuration_id
    )
    return {"results": [route_out(route) for route in routes]}


@router.delete("/{configuration_id}/routes/{called_user}", status_code=204)
async def delete_route(
    configuration_id: str, called_user: str, principal: PrincipalDep, session: SessionDep
) -> Response:
    try:
        async with session.begin():
            await service.delete_route(session=session, account_id=principal.account.id, called_user=called_user)
    except CallplaneError as error:
        raise HTTPException(_status(error), error.message) from error
    return Response(status_code=204)
