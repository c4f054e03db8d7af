"""The console's reads and the few writes behind its buttons, always inside the viewer's scope.

A tenant sees its own account (narrowed to its organization subtree for a scoped token); the admin sees every
account. Every query that takes an id from a URL filters by that scope, so a guessed id reads as not found.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, Select, String, and_, cast, exists, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.call_tracking.models import PromoNumber
from callplane.core.calls import service as calls
from callplane.core.calls.errors import CallNotFound
from callplane.core.calls.models import Call, CallOrigin, CallSignal, CallStatus
from callplane.core.contact_center.models import Agent, CcCall, CcCallStatus, Menu
from callplane.core.events.models import Event
from callplane.core.ingestion.phones import PhoneNumberError, normalize_phone
from callplane.core.recordings.targets import TargetPolicy
from callplane.core.search import Match, SearchQuery, find_matches, parse_query, planned_call_matches
from callplane.core.signals.detection import SignalDetector
from callplane.core.signals.matching import SignalDefinition as SignalRules
from callplane.core.signals.matching import SignalDetection
from callplane.core.tenancy import service as tenancy
from callplane.core.tenancy.models import Account, ApiToken, Campaign, CustomDataField, SignalDefinition
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.transcripts import service as transcripts
from callplane.core.transcripts.merge import transcript_from_dict
from callplane.core.transcripts.models import CallTranscript, TranscriptStatus
from callplane.core.voice.models import CallsConfiguration, InboundRoute, VoiceCall
from callplane.core.voice.states import LIVE_STATES
from callplane.core.voice.trunk_models import SipTrunk
from callplane.core.webhooks import service as webhooks
from callplane.core.webhooks.models import Delivery, WebhookEndpoint
from callplane.errors import InvalidInput, NotFound
from callplane.surfaces.console.session import Viewer

PAGE_SIZE = 50


async def tenant_viewer(session: AsyncSession, *, token_id: str, csrf: str) -> Viewer | None:
    """The viewer of a tenant session, or None when its token was revoked (or its account removed)."""
    row = (
        await session.execute(
            select(ApiToken, Account)
            .join(Account, Account.id == ApiToken.account_id)
            .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        )
    ).first()
    if row is None:
        return None
    token, account = row
    scope = None
    if token.organization_id is not None:
        scope = frozenset(await tenancy.organization_subtree(session, account.id, token.organization_id))
    return Viewer(
        csrf=csrf, account_id=account.id, account_name=account.name, token_id=token.id, organization_scope=scope
    )


def scoped_calls(viewer: Viewer) -> Select[Call]:
    statement = select(Call)
    if viewer.account_id is not None:
        statement = statement.where(Call.account_id == viewer.account_id)
    if viewer.organization_scope is not None:
        statement = statement.where(Call.organization_id.in_(viewer.organization_scope))
    return statement


def _account_filter(column: Any, viewer: Viewer) -> ColumnElement[bool]:
    """Rows of the viewer's account; every row for the admin."""
    return true() if viewer.account_id is None else column == viewer.account_id


# --- the calls list -------------------------------------------------------------------------------------------


@dataclass
class CallFilters:
    """The list's filters as the form sends them (empty strings are "any")."""

    started_from: date | None = None
    started_to: date | None = None  # inclusive: the whole day
    campaign: str = ""
    number: str = ""
    status: str = ""
    origin: str = ""
    signal: str = ""
    direction: str = ""
    q: str = ""

    def query_items(self) -> list[tuple[str, str]]:
        """The filters as query parameters (for paging links and the CSV export)."""
        return [(name, str(value)) for name, value in vars(self).items() if value not in (None, "")]


@dataclass
class CallRow:
    call: Call
    account_name: str
    campaign_name: str | None
    signals: list[str]
    matches: tuple[Match, ...] = ()  # where the search box's words matched (transcript first, then details)

    @property
    def first_second(self) -> float | None:
        return next((match.start_s for match in self.matches if match.start_s is not None), None)


@dataclass
class CallPage:
    rows: list[CallRow]
    next_cursor: str | None


def _number_variants(number: str) -> list[str]:
    """The number as typed and in E.164, so "(800) 555-0101" finds +18005550101."""
    variants = [number.strip()]
    try:
        variants.append(normalize_phone(number))
    except PhoneNumberError:
        pass
    return variants


def filtered_calls(
    viewer: Viewer,
    filters: CallFilters,
    *,
    search_matches: ColumnElement[bool] | None = None,
    campaign_ids: list[str] | None = None,
) -> Select[Call]:
    """The viewer's calls narrowed by the filters (``campaign_ids``: the campaign filter, resolved beforehand;
    ``search_matches``: the search box's, from core/search's ``planned_call_matches`` for the viewer's account)."""
    if search_matches is None:
        statement = scoped_calls(viewer)
    else:
        # The search condition holds the account itself, written so each database takes the plan that fits how
        # many calls match; a plain account condition beside it would let SQLite walk all the account's calls.
        statement = select(Call).where(search_matches)
        if viewer.organization_scope is not None:
            statement = statement.where(Call.organization_id.in_(viewer.organization_scope))
    if filters.started_from:
        statement = statement.where(Call.started_at >= datetime.combine(filters.started_from, time(), UTC))
    if filters.started_to:
        end = datetime.combine(filters.started_to, time(), UTC) + timedelta(days=1)
        statement = statement.where(Call.started_at < end)
    if filters.number:
        numbers = _number_variants(filters.number)
        statement = statement.where(
            or_(Call.from_e164.in_(numbers), Call.to_e164.in_(numbers), Call.contact_e164.in_(numbers))
        )
    if filters.status:
        statement = statement.where(Call.status == filters.status)
    if filters.origin:
        statement = statement.where(Call.origin == filters.origin)
    if filters.direction:
        statement = statement.where(Call.direction == filters.direction)
    if campaign_ids is not None:
        statement = statement.where(Call.campaign_id.in_(campaign_ids))
    if filters.signal:
        statement = statement.where(
            exists().where(CallSignal.call_id == Call.id, CallSignal.name == filters.signal, CallSignal.value.is_(True))
        )
    return statement


def parsed_search(text: str) -> SearchQuery | None:
    """The search box's query, None when empty; InvalidSearch (an InvalidInput) when it cannot be searched for."""
    return parse_query(text) if text.strip() else None


async def list_calls(
    session: AsyncSession, viewer: Viewer, filters: CallFilters, *, cursor: str | None, limit: int = PAGE_SIZE
) -> CallPage:
    """Newest first, keyset-paged on (received_at, id) like the native API."""
    search = parsed_search(filters.q)
    # The campaign's ids as values, not a subquery: PostgreSQL then plans the page on the received-at index.
    campaign_ids = (
        list(
            await session.scalars(
                select(Campaign.id).where(
                    _account_filter(Campaign.account_id, viewer),
                    or_(Campaign.id == filters.campaign, Campaign.external_id == filters.campaign),
                )
            )
        )
        if filters.campaign
        else None
    )
    # The full-text index (core/search): transcripts and call details, the same words on both databases.
    search_matches = (
        await planned_call_matches(session, search, account_id=viewer.account_id) if search is not None else None
    )
    statement = filtered_calls(viewer, filters, search_matches=search_matches, campaign_ids=campaign_ids)
    if cursor:
        received_at, call_id = calls.decode_cursor(cursor)
        statement = statement.where(
            or_(Call.received_at < received_at, and_(Call.received_at == received_at, Call.id < call_id))
        )
    found = list(await session.scalars(statement.order_by(Call.received_at.desc(), Call.id.desc()).limit(limit + 1)))
    next_cursor = calls.encode_cursor(found[limit - 1]) if len(found) > limit else None
    page = found[:limit]
    return CallPage(rows=await _rows(session, page, search=search), next_cursor=next_cursor)


async def _rows(session: AsyncSession, page: list[Call], *, search: SearchQuery | None) -> list[CallRow]:
    ids = [call.id for call in page]
    accounts = {
        id_: name
        for id_, name in await session.execute(
            select(Account.id, Account.name).where(Account.id.in_({c.account_id for c in page}))
        )
    }
    campaign_ids = {c.campaign_id for c in page if c.campaign_id}
    campaigns = {
        id_: name
        for id_, name in await session.execute(select(Campaign.id, Campaign.name).where(Campaign.id.in_(campaign_ids)))
    }
    signals: dict[str, list[str]] = {}
    for call_id, name in await session.execute(
        select(CallSignal.call_id, CallSignal.name)
        .where(CallSignal.call_id.in_(ids), CallSignal.value.is_(True))
        .order_by(CallSignal.created_at)
    ):
        names = signals.setdefault(call_id, [])
        if name not in names:
            names.append(name)
    matches = {hit.call.id: hit.matches for hit in await find_matches(session, page, search)} if search else {}
    return [
        CallRow(
            call=call,
            account_name=accounts.get(call.account_id, ""),
            campaign_name=campaigns.get(call.campaign_id or ""),
            signals=signals.get(call.id, []),
            matches=matches.get(call.id, ()),
        )
        for call in page
    ]


async def call_matches_of(session: AsyncSession, call: Call, text: str) -> tuple[Match, ...]:
    """Where the search box's words were said in this call (none for an empty or unusable query)."""
    try:
        search = parsed_search(text)
    except InvalidInput:
        return ()
    if search is None:
        return ()
    [hit] = await find_matches(session, [call], search)
    return hit.matches


@dataclass
class FilterOptions:
    campaigns: list[tuple[str, str]]  # (id, label)
    signals: list[str]
    statuses: list[str] = field(default_factory=lambda: [s.value for s in CallStatus])
    origins: list[str] = field(default_factory=list)
    directions: list[str] = field(default_factory=lambda: ["inbound", "outbound"])


async def filter_options(session: AsyncSession, viewer: Viewer) -> FilterOptions:
    campaigns = await session.execute(
        select(Campaign.id, Campaign.name, Campaign.external_id)
        .where(_account_filter(Campaign.account_id, viewer))
        .order_by(Campaign.name)
        .limit(500)
    )
    signals = await session.scalars(
        select(SignalDefinition.name)
        .where(_account_filter(SignalDefinition.account_id, viewer))
        .distinct()
        .order_by(SignalDefinition.name)
        .limit(500)
    )
    return FilterOptions(
        campaigns=[(id_, f"{name or external_id} ({external_id})") for id_, name, external_id in campaigns],
        signals=list(signals),
        origins=[origin.value for origin in CallOrigin],
    )


# --- one call -------------------------------------------------------------------------------------------------


async def get_call(session: AsyncSession, viewer: Viewer, call_id: str) -> Call:
    call = await session.scalar(scoped_calls(viewer).where(Call.id == call_id))
    if call is None:
        raise CallNotFound()
    return call


@dataclass
class CallView:
    call: Call
    account_name: str
    details: dict[str, Any]
    transcript: dict[str, Any] | None  # transcript_document, when there is one
    events: list[Event]
    voice: VoiceCall | None
    timeline: list[tuple[datetime, str]]  # what happened to the call, in time order


def _timeline(
    call: Call, voice: VoiceCall | None, events: list[Event], deliveries: list[Delivery]
) -> list[tuple[datetime, str]]:
    """The call's moments: the voice leg's states, stored events and the webhooks sent about it."""
    moments: list[tuple[datetime, str]] = [(event.created_at, event.type) for event in events]
    if voice is not None:
        moments.append((voice.created_at, f"{voice.direction.lower()} call started ({voice.endpoint_user})"))
        if voice.ringing_at:
            moments.append((voice.ringing_at, "ringing"))
        if voice.answered_at:
            moments.append((voice.answered_at, "answered"))
        if voice.ended_at:
            detail = ", ".join(
                part
                for part in (
                    f"hung up by {voice.hangup_source.lower()}" if voice.hangup_source else "",
                    f"SIP {voice.sip_status} {voice.sip_reason or ''}".strip() if voice.sip_status else "",
                )
                if part
            )
            moments.append((voice.ended_at, f"ended {voice.state.lower()}" + (f" ({detail})" if detail else "")))
    for delivery in deliveries:
        moments.append((delivery.created_at, f"webhook {delivery.event_type}: {delivery.status}"))
    return sorted(moments, key=lambda moment: moment[0])


async def call_view(session: AsyncSession, viewer: Viewer, call_id: str) -> CallView:
    call = await get_call(session, viewer, call_id)
    details = await calls.call_details(session=session, call=call)
    row = await transcripts.transcript_row(session, call.id)
    document = (
        transcripts.transcript_document(call, row)
        if row is not None and row.status == TranscriptStatus.COMPLETED
        else None
    )
    events = list(await session.scalars(select(Event).where(Event.call_id == call.id).order_by(Event.id).limit(500)))
    account = await session.get(Account, call.account_id)
    voice = await session.get(VoiceCall, call.id)
    sent = list(
        await session.scalars(
            select(Delivery).where(Delivery.call_id == call.id).order_by(Delivery.created_at).limit(200)
        )
    )
    return CallView(
        call=call,
        account_name=account.name if account else "",
        details=details,
        transcript=document,
        events=events,
        voice=voice,
        timeline=_timeline(call, voice, events, sent),
    )


async def transcript_row(session: AsyncSession, viewer: Viewer, call_id: str) -> tuple[Call, CallTranscript]:
    call = await get_call(session, viewer, call_id)
    return call, transcripts.require_transcript(call, await transcripts.transcript_row(session, call.id))


async def retry_call(session: AsyncSession, viewer: Viewer, call_id: str) -> Call:
    """Retry a failed call; the scope check comes first, so another tenant's id is not found."""
    call = await get_call(session, viewer, call_id)
    return await calls.retry_call(session=session, principal=None, call_id=call.id)


# --- live calls and the contact center ------------------------------------------------------------------------


async def live_calls(session: AsyncSession, viewer: Viewer) -> list[dict[str, Any]]:
    """Voice legs in a live state, with their core call, newest first."""
    statement = (
        select(VoiceCall, Call)
        .join(Call, Call.id == VoiceCall.id)
        .where(VoiceCall.state.in_([state.value for state in LIVE_STATES]))
        .order_by(VoiceCall.created_at.desc())
        .limit(500)
    )
    if viewer.account_id is not None:
        statement = statement.where(VoiceCall.account_id == viewer.account_id)
    if viewer.organization_scope is not None:
        statement = statement.where(Call.organization_id.in_(viewer.organization_scope))
    return [
        {
            "id": voice.id,
            "state": voice.state,
            "direction": voice.direction,
            "origin": call.origin,
            "from": voice.from_user or call.from_e164,
            "to": voice.to_user or call.to_e164,
            "endpoint": voice.endpoint_user,
            "parent_call_id": voice.parent_call_id,
            "started_at": voice.created_at.isoformat(),
            "answered_at": voice.answered_at.isoformat() if voice.answered_at else None,
        }
        for voice, call in await session.execute(statement)
    ]


@dataclass
class QueueView:
    name: str
    waiting: int
    longest_wait_since: datetime | None


async def contact_center(session: AsyncSession, viewer: Viewer) -> tuple[list[Agent], list[QueueView]]:
    """Agents with their status, and per menu (queue) the calls waiting and since when the oldest waits."""
    agents = list(
        await session.scalars(
            select(Agent).where(_account_filter(Agent.account_id, viewer)).order_by(Agent.email).limit(500)
        )
    )
    waiting = (
        select(CcCall.menu_id, func.count().label("waiting"), func.min(CcCall.queued_at).label("oldest"))
        .where(CcCall.status == CcCallStatus.QUEUED)
        .group_by(CcCall.menu_id)
        .subquery()
    )
    rows = await session.execute(
        select(Menu.name, waiting.c.waiting, waiting.c.oldest)
        .outerjoin(waiting, waiting.c.menu_id == Menu.id)
        .where(_account_filter(Menu.account_id, viewer), Menu.deleted.is_(False))
        .order_by(Menu.name)
        .limit(500)
    )
    return agents, [QueueView(name, int(count or 0), oldest) for name, count, oldest in rows]


# --- tokens and webhooks --------------------------------------------------------------------------------------


async def accounts(session: AsyncSession, viewer: Viewer) -> list[Account]:
    statement = select(Account).order_by(Account.name).limit(1000)
    if viewer.account_id is not None:
        statement = statement.where(Account.id == viewer.account_id)
    return list(await session.scalars(statement))


def _writable_account(viewer: Viewer, account_id: str | None) -> str:
    """The account a write goes to: the tenant's own, or the one the admin picked."""
    if viewer.account_id is not None:
        return viewer.account_id
    if not account_id:
        raise InvalidInput("choose an account")
    return account_id


async def list_tokens(session: AsyncSession, viewer: Viewer) -> list[tuple[ApiToken, str]]:
    statement = (
        select(ApiToken, Account.name)
        .join(Account, Account.id == ApiToken.account_id)
        .where(_account_filter(ApiToken.account_id, viewer))
        .order_by(ApiToken.created_at.desc())
        .limit(1000)
    )
    return [(token, name) for token, name in await session.execute(statement)]


async def issue_token(session: AsyncSession, viewer: Viewer, *, name: str, account_id: str | None) -> str:
    """A new token for the viewer's account (an organization-scoped viewer gets one of the same scope)."""
    organization_id = None
    if viewer.token_id is not None:
        own = await session.get(ApiToken, viewer.token_id)
        organization_id = own.organization_id if own else None
    _token, plaintext = await tenancy.issue_token(
        session=session,
        account_id=_writable_account(viewer, account_id),
        organization_id=organization_id,
        name=name.strip()[:255],
    )
    return plaintext


async def revoke_token(session: AsyncSession, viewer: Viewer, token_id: str) -> None:
    token = await session.get(ApiToken, token_id)
    if token is None or (viewer.account_id is not None and token.account_id != viewer.account_id):
        raise NotFound("token not found")
    await tenancy.revoke_token(session=session, account_id=token.account_id, token_id=token.id)


async def webhook_endpoints(session: AsyncSession, viewer: Viewer) -> list[WebhookEndpoint]:
    return list(
        await session.scalars(
            select(WebhookEndpoint)
            .where(_account_filter(WebhookEndpoint.account_id, viewer))
            .order_by(WebhookEndpoint.created_at.desc())
            .limit(500)
        )
    )


def _plain_http_allowed(host: str, policy: TargetPolicy) -> bool:
    if host.lower() in policy.allowed_hosts:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in policy.allowed_networks)


async def add_webhook_endpoint(
    session: AsyncSession,
    viewer: Viewer,
    *,
    secret_box: SecretBox,
    policy: TargetPolicy,
    url: str,
    event_types: list[str],
    account_id: str | None,
) -> str:
    """Register an endpoint as the native API does (https, or plain http to an allow-listed host); returns its
    signing secret, shown this once."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme == "http" and not _plain_http_allowed(parts.hostname or "", policy):
        raise InvalidInput("webhook URLs must use https:// (plain http only for allow-listed hosts)")
    _endpoint, secret = await webhooks.create_endpoint(
        session=session,
        secret_box=secret_box,
        account_id=_writable_account(viewer, account_id),
        url=url,
        event_types=event_types,
    )
    return secret


async def delete_webhook_endpoint(session: AsyncSession, viewer: Viewer, endpoint_id: str) -> None:
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or (viewer.account_id is not None and endpoint.account_id != viewer.account_id):
        raise NotFound("webhook endpoint not found")
    await webhooks.delete_endpoint(session=session, account_id=endpoint.account_id, endpoint_id=endpoint.id)


async def deliveries(session: AsyncSession, viewer: Viewer, *, status: str = "", limit: int = 200) -> list[Delivery]:
    statement = select(Delivery).where(_account_filter(Delivery.account_id, viewer))
    if status:
        statement = statement.where(Delivery.status == status)
    return list(await session.scalars(statement.order_by(Delivery.created_at.desc(), Delivery.id).limit(limit)))


async def redeliver(session: AsyncSession, viewer: Viewer, delivery_id: str) -> Delivery:
    delivery = await session.get(Delivery, delivery_id)
    if delivery is None or (viewer.account_id is not None and delivery.account_id != viewer.account_id):
        raise NotFound("delivery not found")
    return await webhooks.redeliver(session=session, account_id=delivery.account_id, delivery_id=delivery.id)


# --- dashboards -----------------------------------------------------------------------------------------------


async def dashboard(session: AsyncSession, viewer: Viewer, *, days: int = 30) -> dict[str, Any]:
    """Calls per day by status, failures by reason, signal hits per campaign, durations, over the last days."""
    since = datetime.now(UTC) - timedelta(days=days)
    recent = scoped_calls(viewer).where(Call.received_at >= since).subquery()
    day = func.substr(cast(recent.c.received_at, String), 1, 10)
    per_day: dict[str, dict[str, int]] = {}
    for when, status, count in await session.execute(
        select(day, recent.c.status, func.count()).group_by(day, recent.c.status).order_by(day)
    ):
        per_day.setdefault(str(when), {})[status] = int(count)
    reason = func.substr(recent.c.status_reason, 1, 80)  # one expression object: the same bound parameters
    failures = [
        (text or "unknown", int(count))
        for text, count in await session.execute(
            select(reason, func.count())
            .where(recent.c.status == CallStatus.FAILED)
            .group_by(reason)
            .order_by(func.count().desc())
            .limit(10)
        )
    ]
    campaign_calls: dict[str, int] = {
        campaign_id: int(count)
        for campaign_id, count in await session.execute(
            select(recent.c.campaign_id, func.count())
            .where(recent.c.campaign_id.is_not(None))
            .group_by(recent.c.campaign_id)
        )
    }
    hits: list[tuple[str, str, int, int]] = []
    for campaign_id, campaign_name, signal, count in await session.execute(
        select(Campaign.id, Campaign.name, CallSignal.name, func.count(func.distinct(CallSignal.call_id)))
        .join(recent, recent.c.id == CallSignal.call_id)
        .join(Campaign, Campaign.id == recent.c.campaign_id)
        .where(CallSignal.value.is_(True))
        .group_by(Campaign.id, Campaign.name, CallSignal.name)
        .order_by(Campaign.name, CallSignal.name)
        .limit(200)
    ):
        hits.append((campaign_name, signal, int(count), int(campaign_calls.get(campaign_id, 0))))
    average_ms, total = (
        await session.execute(select(func.avg(recent.c.duration_ms), func.count()).select_from(recent))
    ).one()
    waits = [
        (assigned - queued).total_seconds()
        for queued, assigned in (
            await session.execute(
                select(CcCall.queued_at, CcCall.assigned_at)
                .where(
                    _account_filter(CcCall.account_id, viewer),
                    CcCall.created_at >= since,
                    CcCall.queued_at.is_not(None),
                    CcCall.assigned_at.is_not(None),
                )
                .limit(10_000)
            )
        )
        if queued is not None and assigned is not None
    ]
    return {
        "days": days,
        "total": int(total or 0),
        "per_day": per_day,
        "statuses": [s.value for s in CallStatus],
        "failures": failures,
        "signal_hits": hits,
        "average_duration_s": round(float(average_ms) / 1000, 1) if average_ms is not None else None,
        "average_wait_s": round(sum(waits) / len(waits), 1) if waits else None,
    }


# --- configuration --------------------------------------------------------------------------------------------


@dataclass
class Configuration:
    """What an account has configured (created through the admin API or the CLI), for reading in the console."""

    account_names: dict[str, str]
    campaigns: list[Campaign]
    promo_numbers: list[PromoNumber]
    signals: list[SignalDefinition]
    custom_fields: list[CustomDataField]
    voice_configurations: list[CallsConfiguration]
    routes: list[InboundRoute]
    trunks: list[SipTrunk]


async def configuration(session: AsyncSession, viewer: Viewer) -> Configuration:
    async def rows(model: Any, order: Any) -> list[Any]:
        return list(
            await session.scalars(
                select(model).where(_account_filter(model.account_id, viewer)).order_by(order).limit(500)
            )
        )

    return Configuration(
        account_names={account.id: account.name for account in await accounts(session, viewer)},
        campaigns=await rows(Campaign, Campaign.external_id),
        promo_numbers=await rows(PromoNumber, PromoNumber.number),
        signals=await rows(SignalDefinition, SignalDefinition.name),
        custom_fields=await rows(CustomDataField, CustomDataField.api_name),
        voice_configurations=await rows(CallsConfiguration, CallsConfiguration.created_at),
        routes=await rows(InboundRoute, InboundRoute.called_user),
        trunks=await rows(SipTrunk, SipTrunk.name),
    )


@dataclass
class SignalTrial:
    """A signal definition run against one call's stored transcript, without storing anything."""

    signal: SignalDefinition
    call: Call
    detection: SignalDetection


_detector: SignalDetector | None = None


async def try_signal(
    session: AsyncSession, viewer: Viewer, *, signal_id: str, call_id: str, embedder_kind: str
) -> SignalTrial:
    """Would this signal fire on that call? Phrases always; example sentences with the configured embedder."""
    global _detector  # one per process, loaded on first use like the worker's
    call, row = await transcript_row(session, viewer, call_id)
    definition = await session.get(SignalDefinition, signal_id)
    if definition is None or definition.account_id != call.account_id:
        raise NotFound("that signal is not defined in the call's account")
    rules = SignalRules.from_config(
        name=definition.name,
        description=definition.description,
        phrases=definition.phrases,
        examples=definition.examples,
    )
    if _detector is None or _detector.embedder_kind != embedder_kind:
        _detector = SignalDetector(embedder_kind=embedder_kind)
    detector = _detector
    transcript = transcript_from_dict(row.transcript)
    [detection] = await asyncio.to_thread(detector.detect, [rules], transcript)
    return SignalTrial(signal=definition, call=call, detection=detection)
