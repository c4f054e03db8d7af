"""Calls configurations, the inbound routes that point at them, and their event subscriptions.

Every function works in the caller's transaction and never commits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.voice.models import CallsConfiguration, EventSubscription, InboundRoute, SubscriptionAuth
from callplane.core.webhooks import service as webhooks
from callplane.core.webhooks.models import WebhookEndpoint
from callplane.db.base import new_id, utcnow
from callplane.errors import Conflict, InvalidInput, NotFound

_CONFIGURATION_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_CALLED_USER = re.compile(r"^[A-Za-z0-9_.+*#-]{1,128}$")


class ConfigurationNotFound(NotFound):
    """Calls configuration not found."""


class ConfigurationExists(Conflict):
    """A calls configuration with this id already exists."""


class RouteTaken(Conflict):
    """This called user or number already routes to a calls configuration."""


class SubscriptionNotFound(NotFound):
    """Event subscription not found."""


# ---- configurations -----------------------------------------------------------------------------


async def create_configuration(
    *,
    session: AsyncSession,
    account_id: str,
    configuration_id: str | None,
    name: str | None,
    post_call_processing: bool = False,
) -> CallsConfiguration:
    if configuration_id is not None:
        if not _CONFIGURATION_ID.match(configuration_id):
            raise InvalidInput("id must be 1 to 128 letters, digits, '_', '-' or '.'")
        if await session.get(CallsConfiguration, configuration_id) is not None:
            raise ConfigurationExists()
    configuration = CallsConfiguration(
        id=configuration_id or new_id(), account_id=account_id, name=name, post_call_processing=post_call_processing
    )
    session.add(configuration)
    await session.flush()
    return configuration


async def get_configuration(*, session: AsyncSession, account_id: str, configuration_id: str) -> CallsConfiguration:
    configuration = await session.get(CallsConfiguration, configuration_id)
    if configuration is None or configuration.account_id != account_id:
        raise ConfigurationNotFound()
    return configuration


async def list_configurations(
    *, session: AsyncSession, account_id: str, offset: int = 0, limit: int = 20
) -> tuple[list[CallsConfiguration], int]:
    condition = CallsConfiguration.account_id == account_id
    total = await session.scalar(select(func.count()).select_from(CallsConfiguration).where(condition)) or 0
    rows = await session.scalars(
        select(CallsConfiguration)
        .where(condition)
        .order_by(CallsConfiguration.created_at, CallsConfiguration.id)
        .offset(offset)
        .limit(limit)
    )
    return list(rows), total


async def update_configuration(
    *,
    session: AsyncSession,
    account_id: str,
    configuration_id: str,
    name: str | None,
    post_call_processing: bool = False,
) -> CallsConfiguration:
    """A full replacement, as Infobip's PUT: omitted fields go back to their defaults."""
    configuration = await get_configuration(session=session, account_id=account_id, configuration_id=configuration_id)
    configuration.name = name
    configuration.post_call_processing = post_call_processing
    configuration.updated_at = utcnow()
    await session.flush()
    return configuration


async def delete_configuration(*, session: AsyncSession, account_id: str, configuration_id: str) -> CallsConfiguration:
    """Its routes and subscriptions go with it; calls keep their configuration id for history."""
    configuration = await get_configuration(session=session, account_id=account_id, configuration_id=configuration_id)
    for subscription in await list_subscriptions(
        session=session, account_id=account_id, configuration_id=configuration_id
    ):
        await delete_subscription(session=session, account_id=account_id, subscription_id=subscription.id)
    for route in await list_routes(session=session, account_id=account_id, configuration_id=configuration_id):
        await session.delete(route)
    await session.delete(configuration)
    await session.flush()
    return configuration


# ---- inbound routes -----------------------------------------------------------------------------


async def add_route(*, session: AsyncSession, account_id: str, configuration_id: str, called_user: str) -> InboundRoute:
    """Route inbound calls to `called_user` (the Request-URI user: a SIP user or a number) to the configuration."""
    await get_configuration(session=session, account_id=account_id, configuration_id=configuration_id)
    called_user = called_user.strip()
    if not _CALLED_USER.match(called_user):
        raise InvalidInput("calledUser must be 1 to 128 characters of a SIP user part or phone number")
    if await session.get(InboundRoute, called_user) is not None:
        raise RouteTaken()
    route = InboundRoute(called_user=called_user, account_id=account_id, configuration_id=configuration_id)
    session.add(route)
    await session.flush()
    return route


async def list_routes(*, session: AsyncSession, account_id: str, configuration_id: str) -> list[InboundRoute]:
    rows = await session.scalars(
        select(InboundRoute)
        .where(InboundRoute.account_id == account_id, InboundRoute.configuration_id == configuration_id)
        .order_by(InboundRoute.called_user)
    )
    return list(rows)


async def delete_route(*, session: AsyncSession, account_id: str, called_user: str) -> None:
    route = await session.get(InboundRoute, called_user)
    if route is None or route.account_id != account_id:
        raise NotFound("inbound route not found")
    await session.delete(route)
    await session.flush()


async def route_for(*, session: AsyncSession, called_user: str) -> InboundRoute | None:
    """Who owns an inbound call to `called_user`: an exact match, else the same number with or without '+'."""
    route = await session.get(InboundRoute, called_user)
    if route is None and called_user:
        alternative = called_user[1:] if called_user.startswith("+") else "+" + called_user
        route = await session.get(InboundRoute, alternative)
    return route


# ---- event subscriptions ------------------------------------------------------------------------


async def create_subscription(
    *,
    session: AsyncSession,
    secret_box: SecretBox,
    account_id: str,
    configuration_id: str,
    url: str,
    known_event_types: Sequence[str],
    event_types: Sequence[str] = (),
    auth: SubscriptionAuth = SubscriptionAuth.HMAC,
    basic_username: str | None = None,
    basic_password: str | None = None,
) -> tuple[EventSubscription, WebhookEndpoint, str]:
    """A subscription and its webhook endpoint; the endpoint's `whsec_` signing secret is returned here once.

    `event_types` (empty: all) are in the subscriber's words, one of `known_event_types` each: the names the
    configuration's event renderer gives (`core.voice.events.subscribable_names`). Requests are always signed;
    BASIC adds `Authorization: Basic` with the given credentials.
    """
    await get_configuration(session=session, account_id=account_id, configuration_id=configuration_id)
    unknown = sorted(set(event_types) - set(known_event_types))
    if unknown:
        raise InvalidInput(f"unknown event types: {', '.join(unknown)}")
    if auth is SubscriptionAuth.BASIC and not (basic_username and basic_password):
        raise InvalidInput("basic auth needs a username and a password")
    # The endpoint lists the voice event types so account-wide (pipeline) events never reach it.
    endpoint, secret = await webhooks.create_endpoint(
        session=session,
        secret_box=secret_box,
        account_id=account_id,
        url=url,
        event_types=list(event_types) or list(known_event_types),
    )
    subscription = EventSubscription(
        account_id=account_id,
        configuration_id=configuration_id,
        webhook_endpoint_id=endpoint.id,
        event_types=sorted(set(event_types)),
        auth=auth,
    )
    if auth is SubscriptionAuth.BASIC and basic_password:
        endpoint.basic_auth_username = basic_username
        endpoint.basic_auth_ciphertext = secret_box.encrypt(basic_password)
    session.add(subscription)
    await session.flush()
    return subscription, endpoint, secret


async def list_subscriptions(
    *, session: AsyncSession, account_id: str, configuration_id: str
) -> list[EventSubscription]:
    rows = await session.scalars(
        select(EventSubscription)
        .where(EventSubscription.account_id == account_id, EventSubscription.configuration_id == configuration_id)
        .order_by(EventSubscription.created_at, EventSubscription.id)
    )
    return list(rows)


async def delete_subscription(*, session: AsyncSession, account_id: str, subscription_id: str) -> None:
    subscription = await session.get(EventSubscription, subscription_id)
    if subscription is None or subscription.account_id != account_id:
        raise SubscriptionNotFound()
    endpoint = await session.get(WebhookEndpoint, subscription.webhook_endpoint_id)
    await session.delete(subscription)
    if endpoint is not None:
        await session.delete(endpoint)
    await session.flush()


async def subscribers(
    *, session: AsyncSession, configuration_id: str, event_name: str
) -> list[tuple[EventSubscription, WebhookEndpoint]]:
    """The enabled subscriptions of a configuration that want the event its subscribers call `event_name`."""
    rows = await session.execute(
        select(EventSubscription, WebhookEndpoint)
        .join(WebhookEndpoint, WebhookEndpoint.id == EventSubscription.webhook_endpoint_id)
        .where(EventSubscription.configuration_id == configuration_id, WebhookEndpoint.enabled.is_(True))
    )
    return [
        (subscription, endpoint)
        for subscription, endpoint in rows.all()
        if not subscription.event_types or event_name in subscription.event_types
    ]
