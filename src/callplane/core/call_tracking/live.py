"""Calls in progress: the live voice calls of a tenant (promo-number calls, API calls, contact-center calls),
found by transaction id, external unique id or caller/destination pair, and annotated while they are up.

A call is live while its voice leg is in a live state: the terminal UPDATE that ends it (voice service `_finish`)
is the moment it leaves every result here. Lookups first find candidate call ids through an index (tracked
calls' transaction id, external unique id or phone pair; the core calls' contact number), then load only those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, delete, exists, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

from callplane.core.call_tracking.errors import CallInProgressNotFound, InvalidSearch, OrganizationNotVisible
from callplane.core.call_tracking.models import PromoNumber, TrackedCall
from callplane.core.call_tracking.service import phone_e164
from callplane.core.calls.models import Call, CallCustomData
from callplane.core.contact_center.models import CcCall, CcCallStatus
from callplane.core.tenancy.models import Campaign, CustomDataField, Organization, OrganizationKind
from callplane.core.tenancy.schemas import Principal
from callplane.core.voice.models import DialogState, VoiceCall, VoiceCallState, VoiceDialog
from callplane.core.voice.states import LIVE_STATES
from callplane.db.base import utcnow

API_SOURCE = "calls_in_progress"  # custom data set through the calls-in-progress update
# A contact-center call is in progress from its agent being rung until it ends (and while a leg is live).
CC_LIVE = (CcCallStatus.ASSIGNED, CcCallStatus.CONNECTING, CcCallStatus.CONNECTED)


class CallStatusView:
    RINGING = "ringing"  # not answered yet (an API or contact-center call)
    TRANSFERRING = "transferring"  # a promo-number call whose destination is ringing
    BRIDGED = "bridged"  # answered: the caller is connected


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose calls: the token's account, narrowed to one advertiser (and the token's own organization scope)."""

    account_id: str
    advertiser_id: str | None = None
    organization_scope: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Search:
    transaction_id: str | None = None
    external_unique_id: str | None = None
    calling_e164: str | None = None
    destination_e164: str | None = None


@dataclass(slots=True)
class LiveCall:
    call_id: str
    transaction_id: str
    call_record_id: str
    external_unique_id: str | None
    status: str
    calling: str | None  # E.164, else the caller's SIP user
    called: str | None
    destination: str | None
    started_at: datetime
    transfer_started_at: datetime | None
    bridged_at: datetime | None
    direction: str
    promo_number: PromoNumberView | None = None
    campaign: CampaignView | None = None
    advertiser: AdvertiserView | None = None
    custom_data: list[tuple[str, str, str]] = field(default_factory=list)  # (name, value, source)


# What a lookup shows of a call's campaign, advertiser and promo number: read as plain columns, not ORM entities
# (ORM sessions and entities for the seven joined tables were about 40 % of a lookup's server time).
@dataclass(frozen=True, slots=True)
class CampaignView:
    id: str
    external_id: str
    name: str


@dataclass(frozen=True, slots=True)
class AdvertiserView:
    id: str
    external_id: str
    name: str


@dataclass(frozen=True, slots=True)
class PromoNumberView:
    id: str
    external_id: str | None
    description: str
    media_type: str | None


# ---- who may see what ------------------------------------------------------------------------------


async def resolve_scope(
    *, connection: AsyncConnection, principal: Principal, organization_type: str | None, organization_id: str | None
) -> Scope:
    """`organization_type` Network (the token's account: its external id or our id) or Advertiser (one of its
    advertisers: our id or the network's advertiser id), case-insensitive."""
    kind = (organization_type or "").strip().casefold()
    if kind not in ("network", "advertiser"):
        raise InvalidSearch("organization_type must be Network or Advertiser")
    wanted = (organization_id or "").strip()
    if not wanted:
        raise InvalidSearch("id (the organization's id) is required")
    account = principal.account
    if kind == "network":
        if principal.organization_id is not None or wanted not in (account.id, account.external_id):
            raise OrganizationNotVisible()
        return Scope(account_id=account.id)
    advertiser_id = await connection.scalar(
        select(Organization.id).where(
            Organization.account_id == account.id,
            Organization.kind == OrganizationKind.ADVERTISER,
            (Organization.id == wanted) | (Organization.external_id == wanted),
        )
    )
    if advertiser_id is None or not principal.may_see_organization(advertiser_id):
        raise OrganizationNotVisible()
    return Scope(account_id=account.id, advertiser_id=advertiser_id, organization_scope=principal.organization_scope)


def parse_search(
    *,
    transaction_id: str | None,
    external_unique_id: str | None,
    calling_phone_number: str | None,
    destination_phone_number: str | None,
) -> Search:
    """The documented pairing: calling and destination numbers come together, in any common format."""
    calling, destination = (calling_phone_number or "").strip(), (destination_phone_number or "").strip()
    if bool(calling) != bool(destination):
        raise InvalidSearch("calling_phone_number and destination_phone_number must be given together")
    calling_e164 = destination_e164 = None
    if calling:
        calling_e164, destination_e164 = phone_e164(calling), phone_e164(destination)
        problems = [
            f"{name} is not a valid phone number"
            for name, value in (("calling_phone_number", calling_e164), ("destination_phone_number", destination_e164))
            if value is None
        ]
        if problems:
            raise InvalidSearch(problems=problems)
    return Search(
        transaction_id=(transaction_id or "").strip() or None,
        external_unique_id=(external_unique_id or "").strip() or None,
        calling_e164=calling_e164,
        destination_e164=destination_e164,
    )


# ---- finding live calls ----------------------------------------------------------------------------


# Plain columns, labelled (several tables have an `id`), shared by the promo/API and contact-center statements.
_TRACKED = (
    TrackedCall.call_id.label("tracked_id"),
    TrackedCall.transaction_id,
    TrackedCall.call_record_id,
    TrackedCall.external_unique_id,
)
_MARKETING = (
    Campaign.id.label("campaign_id"),
    Campaign.external_id.label("campaign_external_id"),
    Campaign.name.label("campaign_name"),
    Organization.id.label("advertiser_id"),
    Organization.external_id.label("advertiser_external_id"),
    Organization.name.label("advertiser_name"),
)
_CUSTOM_DATA = (
    CallCustomData.name.label("data_name"),
    CallCustomData.value.label("data_value"),
    CallCustomData.source.label("data_source"),
)

# Statements are built once with bind parameters: building a statement of this size costs more than running it
# (a lookup by transaction id is two indexed queries and one for the custom data).
_STATEMENTS: dict[str, Any] = {}


def _statement(name: str) -> Any:
    statement = _STATEMENTS.get(name)
    if statement is None:
        statement = _STATEMENTS[name] = _build(name)
    return statement


def _build(name: str) -> Any:
    account: Any = bindparam("account_id")
    if name == "by_transaction":
        return select(TrackedCall.call_id).where(TrackedCall.transaction_id == bindparam("transaction_id"))
    if name == "by_external":
        return select(TrackedCall.call_id).where(
            TrackedCall.account_id == account, TrackedCall.external_unique_id == bindparam("external_unique_id")
        )
    if name == "by_pair":
        # tracked calls by their own pair, other calls by the core Call's numbers (one round trip for both)
        return union_all(
            select(TrackedCall.call_id).where(
                TrackedCall.account_id == account,
                TrackedCall.calling_e164 == bindparam("calling"),
                TrackedCall.destination_e164 == bindparam("destination"),
            ),
            select(Call.id).where(
                Call.account_id == account,
                # two plain parameters: an expanding list is rendered into the SQL again on every execution
                Call.contact_e164.in_([bindparam("calling"), bindparam("destination")]),
                Call.from_e164 == bindparam("calling"),
                Call.to_e164 == bindparam("destination"),
                # no status condition: liveness is the voice leg's (checked next), and it would tempt SQLite's planner
                # into the (account, status) index, every live call
                ~exists().where(TrackedCall.call_id == Call.id),
            ),
        )
    if name == "custom_data":
        return (
            select(CallCustomData.call_id, CallCustomData.name, CallCustomData.value, CallCustomData.source)
            .where(CallCustomData.call_id.in_(bindparam("ids", expanding=True)))
            .order_by(CallCustomData.created_at)
        )
    kind, id_filter, organization_filter = name.split(":")  # live|cc : id|ids|all : none|advertiser|scope
    if kind == "cc":
        return _contact_center_statement(account, id_filter, organization_filter)
    parent_tracked = aliased(TrackedCall)
    statement = (
        select(
            VoiceCall.id.label("call_id"),
            VoiceCall.state,
            VoiceCall.direction,
            VoiceCall.from_user,
            VoiceCall.to_user,
            VoiceCall.created_at,
            VoiceCall.answered_at,
            Call.from_e164,
            Call.to_e164,
            *_TRACKED,
            TrackedCall.promo_number_id,
            TrackedCall.calling_e164.label("tracked_calling_e164"),
            TrackedCall.called.label("tracked_called"),
            TrackedCall.destination.label("tracked_destination"),
            TrackedCall.destination_e164.label("tracked_destination_e164"),
            VoiceDialog.id.label("dialog_id"),
            VoiceDialog.state.label("dialog_state"),
            VoiceDialog.created_at.label("dialog_created_at"),
            VoiceDialog.established_at.label("dialog_established_at"),
            *_MARKETING,
            PromoNumber.id.label("promo_id"),
            PromoNumber.external_id.label("promo_external_id"),
            PromoNumber.description.label("promo_description"),
            PromoNumber.media_type.label("promo_media_type"),
            *_CUSTOM_DATA,
        )
        .join(Call, Call.id == VoiceCall.id)
        .outerjoin(CallCustomData, CallCustomData.call_id == VoiceCall.id)
        .outerjoin(TrackedCall, TrackedCall.call_id == VoiceCall.id)
        .outerjoin(VoiceDialog, VoiceDialog.id == VoiceCall.dialog_id)
        .outerjoin(Campaign, Campaign.id == Call.campaign_id)
        .outerjoin(Organization, Organization.id == Call.organization_id)
        .outerjoin(PromoNumber, PromoNumber.id == TrackedCall.promo_number_id)
        .where(
            VoiceCall.account_id == account,
            VoiceCall.state.in_(LIVE_STATES),
            # the destination leg of a promo-number call is part of that call, not a call of its own
            ~exists().where(
                parent_tracked.call_id == VoiceCall.parent_call_id, parent_tracked.promo_number_id.isnot(None)
            ),
            # a promo-number call appears once it is transferred to the destination
            (TrackedCall.promo_number_id.is_(None)) | (VoiceCall.dialog_id.isnot(None)),
            # a contact-center leg is part of its contact-center call (listed by the "cc" statement)
            ~exists().where(CcCall.agent_leg_id == VoiceCall.id),
            ~exists().where(CcCall.end_user_leg_id == VoiceCall.id),
        )
    )
    if id_filter == "id":  # the usual lookup: one candidate, without an expanding list to render each time
        statement = statement.where(VoiceCall.id == bindparam("id"))
    elif id_filter == "ids":
        statement = statement.where(VoiceCall.id.in_(bindparam("ids", expanding=True)))
    if organization_filter == "advertiser":
        statement = statement.where(Call.organization_id == bindparam("advertiser_id"))
    elif organization_filter == "scope":
        statement = statement.where(Call.organization_id.in_(bindparam("organization_scope", expanding=True)))
    return statement


def _contact_center_statement(account: Any, id_filter: str, organization_filter: str) -> Any:
    """Contact-center calls (their core Call) while one of their legs is live."""
    agent_leg, end_user_leg = aliased(VoiceCall), aliased(VoiceCall)
    statement = (
        select(
            Call.id.label("call_id"),
            Call.from_e164,
            Call.to_e164,
            Call.direction,
            CcCall.status,
            CcCall.created_at,
            CcCall.assigned_at,
            CcCall.connected_at,
            *_TRACKED,
            *_MARKETING,
            *_CUSTOM_DATA,
        )
        .select_from(CcCall)
        .join(Call, Call.id == CcCall.core_call_id)
        .outerjoin(CallCustomData, CallCustomData.call_id == Call.id)
        .outerjoin(TrackedCall, TrackedCall.call_id == Call.id)
        .outerjoin(Campaign, Campaign.id == Call.campaign_id)
        .outerjoin(Organization, Organization.id == Call.organization_id)
        .where(
            CcCall.account_id == account,
            CcCall.status.in_(CC_LIVE),
            exists().where(agent_leg.id == CcCall.agent_leg_id, agent_leg.state.in_(LIVE_STATES))
            | exists().where(end_user_leg.id == CcCall.end_user_leg_id, end_user_leg.state.in_(LIVE_STATES)),
        )
    )
    if id_filter == "id":
        statement = statement.where(Call.id == bindparam("id"))
    elif id_filter == "ids":
        statement = statement.where(Call.id.in_(bindparam("ids", expanding=True)))
    if organization_filter == "advertiser":
        statement = statement.where(Call.organization_id == bindparam("advertiser_id"))
    elif organization_filter == "scope":
        statement = statement.where(Call.organization_id.in_(bindparam("organization_scope", expanding=True)))
    return statement


async def _ids(connection: AsyncConnection, name: str, **params: Any) -> list[str]:
    return list(await connection.scalars(_statement(name), params))


async def _candidate_ids(connection: AsyncConnection, scope: Scope, search: Search) -> list[str] | None:
    """Call ids that can match the search, found through an index (None: no id filter, every live call)."""
    ids: list[str] | None = None

    def narrow(found: list[str]) -> list[str]:
        return found if ids is None else [call_id for call_id in ids if call_id in found]

    if search.transaction_id is not None:
        tracked = await _ids(connection, "by_transaction", transaction_id=search.transaction_id)
        # A call without a tracking row answers to its own id (its transaction id is the call id).
        ids = narrow(tracked or [search.transaction_id])
    if search.external_unique_id is not None:
        found = await _ids(
            connection, "by_external", account_id=scope.account_id, external_unique_id=search.external_unique_id
        )
        ids = narrow(found)
    if search.calling_e164 is not None:
        pair = {"account_id": scope.account_id, "calling": search.calling_e164, "destination": search.destination_e164}
        found = await _ids(connection, "by_pair", **pair)
        ids = narrow(found)
    return ids


async def find_live_calls(*, connection: AsyncConnection, scope: Scope, search: Search) -> list[LiveCall]:
    """The scope's calls in progress that match, the most recently bridged first. Reads plain rows through a
    connection (no ORM session: its setup and entity loading were most of a lookup's cost)."""
    ids = await _candidate_ids(connection, scope, search)
    if ids is not None and not ids:
        return []
    params: dict[str, Any] = {"account_id": scope.account_id}
    if ids is None:
        id_filter = "all"
    elif len(ids) == 1:
        id_filter, params["id"] = "id", ids[0]
    else:
        id_filter, params["ids"] = "ids", ids
    organization_filter = "none"
    if scope.advertiser_id is not None:
        organization_filter, params["advertiser_id"] = "advertiser", scope.advertiser_id
    elif scope.organization_scope is not None:
        organization_filter, params["organization_scope"] = "scope", sorted(scope.organization_scope)
    suffix = f"{id_filter}:{organization_filter}"
    # One row per call and custom data value (the custom data is joined: one round trip fewer).
    found: dict[str, LiveCall] = {}
    for row in await connection.execute(_statement(f"live:{suffix}"), params):
        call = found.get(row.call_id)
        if call is None:
            call = found[row.call_id] = _view(row)
        _add_custom_data(call, row)
    # Contact-center calls, unless the candidates are all found already (the usual lookup by a promo call's id).
    if ids is None or set(ids) - set(found):
        for row in await connection.execute(_statement(f"cc:{suffix}"), params):
            call = found.get(row.call_id)
            if call is None:
                call = found[row.call_id] = _contact_center_view(row)
            _add_custom_data(call, row)
    calls = list(found.values())
    if search.transaction_id is not None:  # a tracked call answers to its transaction id only, not its call id
        calls = [call for call in calls if call.transaction_id == search.transaction_id]
    calls.sort(key=lambda c: (c.bridged_at or c.transfer_started_at or c.started_at, c.call_id), reverse=True)
    return calls


def _view(row: Row[Any]) -> LiveCall:
    """A promo-number or API call from its `live:*` row."""
    tracked, has_dialog = row.tracked_id is not None, row.dialog_id is not None
    answered = row.state == VoiceCallState.ESTABLISHED
    if tracked and row.promo_number_id is not None:
        bridged = has_dialog and row.dialog_state == DialogState.ESTABLISHED
        status = CallStatusView.BRIDGED if bridged else CallStatusView.TRANSFERRING
        bridged_at = row.dialog_established_at if has_dialog else None
        transfer_at = row.dialog_created_at if has_dialog else None
    else:
        status = CallStatusView.BRIDGED if answered else CallStatusView.RINGING
        bridged_at = (row.dialog_established_at if has_dialog else None) or row.answered_at
        transfer_at = row.created_at
    calling = row.from_e164 or row.from_user
    destination = row.to_e164 or row.to_user
    call = LiveCall(
        call_id=row.call_id,
        transaction_id=row.transaction_id if tracked else row.call_id,
        call_record_id=row.call_record_id if tracked else row.call_id,
        external_unique_id=row.external_unique_id if tracked else None,
        status=status,
        calling=(row.tracked_calling_e164 if tracked and row.tracked_calling_e164 else calling),
        called=(row.tracked_called if tracked and row.tracked_called else row.to_user),
        destination=(row.tracked_destination_e164 or row.tracked_destination)
        if tracked and row.tracked_destination
        else destination,
        started_at=row.created_at,
        transfer_started_at=transfer_at,
        bridged_at=bridged_at,
        direction=row.direction,
    )
    _add_marketing(call, row)
    if row.promo_id is not None:
        call.promo_number = PromoNumberView(
            id=row.promo_id,
            external_id=row.promo_external_id,
            description=row.promo_description,
            media_type=row.promo_media_type,
        )
    return call


def _contact_center_view(row: Row[Any]) -> LiveCall:
    """A contact-center call from its `cc:*` row."""
    tracked = row.tracked_id is not None
    connected = row.status == CcCallStatus.CONNECTED
    call = LiveCall(
        call_id=row.call_id,
        transaction_id=row.transaction_id if tracked else row.call_id,
        call_record_id=row.call_record_id if tracked else row.call_id,
        external_unique_id=row.external_unique_id if tracked else None,
        status=CallStatusView.BRIDGED if connected else CallStatusView.RINGING,
        calling=row.from_e164,
        called=row.to_e164,
        destination=row.to_e164,
        started_at=row.created_at,
        transfer_started_at=row.assigned_at,
        bridged_at=row.connected_at,
        direction=(row.direction or "").upper(),
    )
    _add_marketing(call, row)
    return call


def _add_marketing(call: LiveCall, row: Row[Any]) -> None:
    if row.campaign_id is not None:
        call.campaign = CampaignView(id=row.campaign_id, external_id=row.campaign_external_id, name=row.campaign_name)
    if row.advertiser_id is not None:
        call.advertiser = AdvertiserView(
            id=row.advertiser_id, external_id=row.advertiser_external_id, name=row.advertiser_name
        )


def _add_custom_data(call: LiveCall, row: Row[Any]) -> None:
    if row.data_name is not None:
        call.custom_data.append((row.data_name, row.data_value, row.data_source))


async def _custom_data(connection: AsyncConnection, calls: list[LiveCall]) -> None:
    data: dict[str, list[tuple[str, str, str]]] = {}
    rows = await connection.execute(_statement("custom_data"), {"ids": [call.call_id for call in calls]})
    for call_id, name, value, source in rows.all():
        data.setdefault(call_id, []).append((name, value, source))
    for call in calls:
        call.custom_data = data.get(call.call_id, [])


# ---- the update ------------------------------------------------------------------------------------


async def update_call_in_progress(
    *,
    session: AsyncSession,
    scope: Scope,
    search: Search,
    external_unique_id: str | None,
    custom_data: list[tuple[str, str]],
) -> LiveCall:
    """Set the external unique id and custom data of the one live call the search names. A call without a
    tracking row gets one (its transaction and call record ids are its call id)."""
    if search.transaction_id is None and search.external_unique_id is None:
        raise InvalidSearch("transaction_id or external_unique_id is required")
    fields = {
        row.api_name_key: row
        for row in await session.scalars(select(CustomDataField).where(CustomDataField.account_id == scope.account_id))
    }
    unknown = [name for name, _ in custom_data if name.strip().casefold() not in fields]
    if unknown:
        raise InvalidSearch(problems=[f"custom data field {name!r} does not exist" for name in unknown])
    found = await find_live_calls(connection=await session.connection(), scope=scope, search=search)
    if not found:
        raise CallInProgressNotFound()
    target = found[0]
    tracked = await session.get(TrackedCall, target.call_id)
    if tracked is None:
        core = await session.get(Call, target.call_id)
        tracked = TrackedCall(
            call_id=target.call_id,
            account_id=scope.account_id,
            transaction_id=target.call_id,
            call_record_id=target.call_id,
            calling_e164=core.from_e164 if core else None,
            called=target.called,
            destination=target.destination,
            destination_e164=core.to_e164 if core else None,
            created_at=utcnow(),
        )
        session.add(tracked)
    if external_unique_id is not None:
        tracked.external_unique_id = external_unique_id
        target.external_unique_id = external_unique_id
    now = utcnow()
    for name, value in custom_data:
        definition = fields[name.strip().casefold()]
        await session.execute(
            delete(CallCustomData).where(
                CallCustomData.call_id == target.call_id, CallCustomData.field_id == definition.id
            )
        )
        session.add(
            CallCustomData(
                call_id=target.call_id,
                account_id=scope.account_id,
                field_id=definition.id,
                name=definition.api_name,
                value=value,
                source=API_SOURCE,
                created_at=now,
            )
        )
    await session.flush()
    await _custom_data(await session.connection(), [target])
    return target
