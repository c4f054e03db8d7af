"""Contact-center operations: managing agents, menus, numbers and CRM tickets, and accepting calls.

Accepting a call only writes rows (the contact-center call, its participants and its core Call); ringing the
agent and the end user is the runtime's job (`runtime.py`), in the process that carries the media engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import phonenumbers
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.calls.models import Call, CallOrigin, CallStatus
from callplane.core.contact_center import errors
from callplane.core.contact_center.languages import ISO_639_1
from callplane.core.contact_center.models import (
    Agent,
    AgentStatus,
    CcCall,
    CcCallStatus,
    CcCallType,
    CcParticipant,
    CcTransfer,
    CrmTicket,
    EndUser,
    Menu,
    MenuAgent,
    MenuState,
    MenuType,
    OutboundNumber,
    ParticipantKind,
    PublicIdCounter,
)
from callplane.core.recordings.targets import TargetPolicy
from callplane.core.voice.models import EndpointType
from callplane.core.voice.outbound import check_host_port, sip_user_problem
from callplane.db.base import new_id, utcnow
from callplane.errors import Conflict, InvalidInput

RECORDING_PERMISSIONS = (
    "recording_permission_not_asked",
    "recording_permission_granted",
    "recording_permission_denied",
)
# Which menu types each kind of API call may be attributed to (see docs/contact-center.md on the seed's conflict).
MENU_TYPES = {
    CcCallType.INBOUND: (MenuType.IVR, MenuType.MOBILE),
    CcCallType.SCHEDULED: (MenuType.MOBILE, MenuType.WEB),
}
MENU_TYPE_ERRORS = {
    CcCallType.INBOUND: "Only IVR and mobile menu IDs are permitted",
    CcCallType.SCHEDULED: "Only mobile and web menu IDs are permitted",
}
LIVE_STATUSES = (CcCallStatus.ASSIGNED, CcCallStatus.CONNECTING, CcCallStatus.CONNECTED)


class AgentNotFound(errors.ContactCenterNotFound):
    """Agent not found."""


class MenuNotFound(errors.ContactCenterNotFound):
    """Menu not found."""


class OutboundNumberNotFound(errors.ContactCenterNotFound):
    """Outbound number not found."""


class CallNotFound(errors.ContactCenterNotFound):
    """Call not found."""


class NotScheduled(InvalidInput):
    """Only a scheduled call that has not fired yet can be cancelled."""


# ---- numbers and languages ------------------------------------------------------------------------


def e164(value: str) -> str | None:
    """A number written in any international form (`+1 859-657-9625`, `+82-10-6861-2345`) in E.164, or None
    when it is not a possible number."""
    try:
        parsed = phonenumbers.parse(value.strip(), None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def display_number(value: str) -> str:
    """`+13392195276` -> `+1 339-219-5276` (how the contact-center API writes numbers)."""
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return value
    formatted = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return formatted


# ---- agents ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentSpec:
    email: str
    endpoint_user: str
    endpoint_type: str = EndpointType.SIP
    endpoint_host: str | None = None
    trunk_id: str | None = None
    first_name: str = ""
    last_name: str = ""
    agent_number: str | None = None
    avatar_url: str | None = None
    can_place_calls: bool = True
    status: str = AgentStatus.UNAVAILABLE


def _check_endpoint(endpoint_type: str, user: str, host: str | None, trunk_id: str | None) -> str:
    """Checks an agent's endpoint; returns the user to store (a PHONE number in E.164)."""
    if endpoint_type not in (EndpointType.SIP, EndpointType.PHONE):
        raise InvalidInput("endpoint_type must be SIP or PHONE")
    if not user:
        raise InvalidInput("endpoint_user is required")
    if endpoint_type == EndpointType.PHONE and (trunk_id is None or e164(user) is None):
        raise InvalidInput("a PHONE endpoint needs an international number and a trunk_id")
    if endpoint_type == EndpointType.PHONE:
        return e164(user) or user
    if endpoint_type == EndpointType.SIP and not (host or trunk_id):
        raise InvalidInput("a SIP endpoint needs endpoint_host or trunk_id")
    return user


async def _check_target(policy: TargetPolicy | None, endpoint_type: str, user: str, host: str | None) -> None:
    """An agent's SIP phone is a customer-named target: the outbound target policy applies at request time too
    (every INVITE is checked again when it is placed). Without a policy (the operator's CLI) only then."""
    if endpoint_type != EndpointType.SIP:
        return
    problem = sip_user_problem(user)
    if problem is not None:
        raise InvalidInput(f"endpoint_user: {problem}")
    if host and policy is not None:
        await check_host_port(policy, host, what=f"the agent's SIP phone {host}")


async def create_agent(
    *, session: AsyncSession, account_id: str, spec: AgentSpec, policy: TargetPolicy | None = None
) -> Agent:
    endpoint_user = _check_endpoint(spec.endpoint_type, spec.endpoint_user, spec.endpoint_host, spec.trunk_id)
    await _check_target(policy, spec.endpoint_type, endpoint_user, spec.endpoint_host)
    if spec.status not in (AgentStatus.AVAILABLE, AgentStatus.UNAVAILABLE):
        raise InvalidInput("status must be available or unavailable")
    agent = Agent(
        account_id=account_id,
        email=spec.email.strip().lower(),
        first_name=spec.first_name,
        last_name=spec.last_name,
        agent_number=spec.agent_number,
        avatar_url=spec.avatar_url,
        endpoint_type=spec.endpoint_type,
        endpoint_user=endpoint_user,
        endpoint_host=spec.endpoint_host,
        trunk_id=spec.trunk_id,
        can_place_calls=spec.can_place_calls,
        status=spec.status,
        last_idle_at=utcnow() if spec.status == AgentStatus.AVAILABLE else None,
    )
    session.add(agent)
    await _flush_unique(session, "an agent with this email exists")
    return agent


async def get_agent(*, session: AsyncSession, account_id: str, agent_id: int) -> Agent:
    agent = await session.get(Agent, agent_id)
    if agent is None or agent.account_id != account_id:
        raise AgentNotFound()
    return agent


async def list_agents(*, session: AsyncSession, account_id: str) -> list[Agent]:
    return list(await session.scalars(select(Agent).where(Agent.account_id == account_id).order_by(Agent.id)))


AGENT_FIELDS = (
    "first_name",
    "last_name",
    "agent_number",
    "avatar_url",
    "endpoint_type",
    "endpoint_user",
    "endpoint_host",
    "trunk_id",
    "can_place_calls",
)


async def update_agent(
    *,
    session: AsyncSession,
    account_id: str,
    agent_id: int,
    changes: Mapping[str, Any],
    policy: TargetPolicy | None = None,
) -> Agent:
    """Edit an agent; `status` available/unavailable is the agent's availability (busy is ours to set)."""
    agent = await get_agent(session=session, account_id=account_id, agent_id=agent_id)
    for name in AGENT_FIELDS:
        if name in changes:
            setattr(agent, name, changes[name])
    agent.endpoint_user = _check_endpoint(agent.endpoint_type, agent.endpoint_user, agent.endpoint_host, agent.trunk_id)
    if {"endpoint_type", "endpoint_user", "endpoint_host"} & set(changes):
        await _check_target(policy, agent.endpoint_type, agent.endpoint_user, agent.endpoint_host)
    status = changes.get("status")
    if status is not None:
        if status not in (AgentStatus.AVAILABLE, AgentStatus.UNAVAILABLE):
            raise InvalidInput("status must be available or unavailable")
        if status == AgentStatus.AVAILABLE and agent.status == AgentStatus.UNAVAILABLE:
            agent.last_idle_at = utcnow()  # idle from now (a busy agent's idle time starts when their call ends)
        if agent.status != AgentStatus.BUSY or status == AgentStatus.UNAVAILABLE:
            agent.status = status
    await session.flush()
    return agent


async def delete_agent(*, session: AsyncSession, account_id: str, agent_id: int) -> Agent:
    agent = await get_agent(session=session, account_id=account_id, agent_id=agent_id)
    await session.delete(agent)
    await session.flush()
    return agent


# ---- outbound numbers -----------------------------------------------------------------------------


async def create_outbound_number(
    *, session: AsyncSession, account_id: str, number: str, trunk_id: str | None, is_default: bool
) -> OutboundNumber:
    normalized = e164(number)
    if normalized is None:
        raise InvalidInput("number is not a well-formed phone number")
    has_any = await session.scalar(select(func.count()).where(OutboundNumber.account_id == account_id)) or 0
    if is_default:
        await _clear_default(session, account_id)
    row = OutboundNumber(account_id=account_id, number_e164=normalized, trunk_id=trunk_id, is_default=is_default)
    if not has_any:
        row.is_default = True  # the first number is the default until another is made so
    session.add(row)
    await _flush_unique(session, "this outbound number exists")
    return row


async def _clear_default(session: AsyncSession, account_id: str) -> None:
    await session.execute(
        update(OutboundNumber).where(OutboundNumber.account_id == account_id).values(is_default=False)
    )


async def list_outbound_numbers(*, session: AsyncSession, account_id: str) -> list[OutboundNumber]:
    return list(
        await session.scalars(
            select(OutboundNumber).where(OutboundNumber.account_id == account_id).order_by(OutboundNumber.id)
        )
    )


async def update_outbound_number(
    *, session: AsyncSession, account_id: str, number_id: int, changes: Mapping[str, Any]
) -> OutboundNumber:
    row = await session.get(OutboundNumber, number_id)
    if row is None or row.account_id != account_id:
        raise OutboundNumberNotFound()
    if "trunk_id" in changes:
        row.trunk_id = changes["trunk_id"]
    if changes.get("is_default"):
        await _clear_default(session, account_id)
        row.is_default = True
    await session.flush()
    return row


async def delete_outbound_number(*, session: AsyncSession, account_id: str, number_id: int) -> OutboundNumber:
    row = await session.get(OutboundNumber, number_id)
    if row is None or row.account_id != account_id:
        raise OutboundNumberNotFound()
    await session.delete(row)
    await session.flush()
    return row


# ---- menus ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MenuSpec:
    name: str
    menu_type: str = MenuType.IVR
    parent_id: int | None = None
    position: int = 0
    state: str = MenuState.OPEN
    languages: tuple[str, ...] = ("en",)
    output_msg: str | None = None
    hidden: bool = False
    outbound_number_id: int | None = None
    agent_ids: tuple[int, ...] = ()


async def next_public_id(session: AsyncSession, account_id: str, kind: str) -> int:
    """The tenant's next id of this kind (1, 2, ...), from its counter row, in the caller's transaction.

    One INSERT ... ON CONFLICT DO UPDATE ... RETURNING: PostgreSQL holds the counter row's lock until the caller
    commits (concurrent creates in one tenant queue behind it, other tenants do not), SQLite has one writer at a
    time; a rolled-back create gives its number back. The unique (account_id, public_id) backs this up."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(PublicIdCounter)
        .values(account_id=account_id, kind=kind, last_value=1)
        .on_conflict_do_update(
            index_elements=[PublicIdCounter.account_id, PublicIdCounter.kind],
            set_={"last_value": PublicIdCounter.last_value + 1},
        )
        .returning(PublicIdCounter.last_value)
    )
    return int((await session.execute(statement)).scalar_one())


async def _menu_by_public_id(session: AsyncSession, account_id: str, public_id: int) -> Menu | None:
    return await session.scalar(select(Menu).where(Menu.account_id == account_id, Menu.public_id == public_id))


async def _parent_menu_id(session: AsyncSession, account_id: str, public_id: int | None) -> int | None:
    """The internal id of the parent menu the API names by its public id."""
    if public_id is None:
        return None
    parent = await _menu_by_public_id(session, account_id, public_id)
    if parent is None:
        raise MenuNotFound("parent menu not found")
    return parent.id


async def _check_menu(session: AsyncSession, account_id: str, menu: Menu) -> None:
    if menu.menu_type not in tuple(MenuType):
        raise InvalidInput("menu_type must be ivr_menu, mobile_menu or web_menu")
    if menu.state not in tuple(MenuState):
        raise InvalidInput("state must be open, after_hours or manual_redirection")
    unknown = [code for code in menu.languages if code not in ISO_639_1]
    if unknown:
        raise InvalidInput(f"languages must be ISO 639-1 codes: {', '.join(unknown)}")
    if menu.parent_id is not None:
        parent = await session.get(Menu, menu.parent_id)
        if parent is None or parent.account_id != account_id:
            raise MenuNotFound("parent menu not found")
    if menu.outbound_number_id is not None:
        number = await session.get(OutboundNumber, menu.outbound_number_id)
        if number is None or number.account_id != account_id:
            raise OutboundNumberNotFound()


async def create_menu(*, session: AsyncSession, account_id: str, spec: MenuSpec) -> Menu:
    menu = Menu(
        account_id=account_id,
        name=spec.name,
        menu_type=spec.menu_type,
        parent_id=await _parent_menu_id(session, account_id, spec.parent_id),
        position=spec.position,
        state=spec.state,
        languages=list(spec.languages),
        output_msg=spec.output_msg,
        hidden=spec.hidden,
        outbound_number_id=spec.outbound_number_id,
    )
    await _check_menu(session, account_id, menu)
    menu.public_id = await next_public_id(session, account_id, "menu")
    session.add(menu)
    await session.flush()
    await set_menu_agents(session=session, account_id=account_id, menu_id=menu.id, agent_ids=spec.agent_ids)
    return menu


async def menu_by_public_id(*, session: AsyncSession, account_id: str, public_id: int) -> Menu | None:
    return await _menu_by_public_id(session, account_id, public_id)


async def agent_by_email(*, session: AsyncSession, account_id: str, email: str) -> Agent | None:
    agent: Agent | None = await session.scalar(
        select(Agent).where(Agent.account_id == account_id, Agent.email == email.strip().lower())
    )
    return agent


async def get_menu(*, session: AsyncSession, account_id: str, menu_id: int) -> Menu:
    """The menu the API names ``menu_id`` (its public id)."""
    menu = await _menu_by_public_id(session, account_id, menu_id)
    if menu is None:
        raise MenuNotFound()
    return menu


async def list_menus(*, session: AsyncSession, account_id: str) -> list[Menu]:
    return list(
        await session.scalars(
            select(Menu).where(Menu.account_id == account_id).order_by(Menu.parent_id, Menu.position, Menu.id)
        )
    )


MENU_FIELDS = ("name", "menu_type", "parent_id", "position", "state", "languages", "output_msg", "hidden")


async def update_menu(*, session: AsyncSession, account_id: str, menu_id: int, changes: Mapping[str, Any]) -> Menu:
    menu = await get_menu(session=session, account_id=account_id, menu_id=menu_id)
    for name in (*MENU_FIELDS, "outbound_number_id"):
        if name == "parent_id" and name in changes:
            menu.parent_id = await _parent_menu_id(session, account_id, changes[name])
        elif name in changes:
            setattr(menu, name, list(changes[name]) if name == "languages" else changes[name])
    await _check_menu(session, account_id, menu)
    await session.flush()
    if "agent_ids" in changes:
        await set_menu_agents(session=session, account_id=account_id, menu_id=menu.id, agent_ids=changes["agent_ids"])
    return menu


async def delete_menu(*, session: AsyncSession, account_id: str, menu_id: int) -> Menu:
    """Menus are marked deleted (calls keep pointing at them), not removed."""
    menu = await get_menu(session=session, account_id=account_id, menu_id=menu_id)
    menu.deleted = True
    await session.flush()
    return menu


async def set_menu_agents(*, session: AsyncSession, account_id: str, menu_id: int, agent_ids: Any) -> None:
    ids = sorted({int(agent_id) for agent_id in agent_ids})
    for agent_id in ids:
        await get_agent(session=session, account_id=account_id, agent_id=agent_id)
    await session.execute(delete(MenuAgent).where(MenuAgent.menu_id == menu_id))
    session.add_all([MenuAgent(menu_id=menu_id, agent_id=agent_id) for agent_id in ids])
    await session.flush()


async def menu_agent_ids(*, session: AsyncSession, menu_id: int) -> list[int]:
    return list(
        await session.scalars(
            select(MenuAgent.agent_id).where(MenuAgent.menu_id == menu_id).order_by(MenuAgent.agent_id)
        )
    )


async def parent_menu_public_id(*, session: AsyncSession, menu: Menu) -> int | None:
    parent = await session.get(Menu, menu.parent_id) if menu.parent_id is not None else None
    return parent.public_id if parent is not None else None


async def menu_path(*, session: AsyncSession, menu: Menu) -> list[Menu]:
    """The menus from the root down to this one."""
    path = [menu]
    seen = {menu.id}
    while path[0].parent_id is not None and path[0].parent_id not in seen:
        parent = await session.get(Menu, path[0].parent_id)
        if parent is None:
            break
        seen.add(parent.id)
        path.insert(0, parent)
    return path


# ---- CRM tickets and end users --------------------------------------------------------------------


async def create_crm_ticket(
    *, session: AsyncSession, account_id: str, ticket_id: str, out_contact_id: str, number: str, url: str | None
) -> CrmTicket:
    normalized = e164(number)
    if normalized is None:
        raise InvalidInput("number is not a well-formed phone number")
    ticket = CrmTicket(
        account_id=account_id,
        ticket_id=ticket_id,
        out_contact_id=out_contact_id,
        number_e164=normalized,
        ticket_url=url,
    )
    session.add(ticket)
    await _flush_unique(session, "this ticket exists")
    return ticket


async def list_crm_tickets(*, session: AsyncSession, account_id: str) -> list[CrmTicket]:
    return list(
        await session.scalars(select(CrmTicket).where(CrmTicket.account_id == account_id).order_by(CrmTicket.id))
    )


async def list_end_users(*, session: AsyncSession, account_id: str) -> list[EndUser]:
    return list(await session.scalars(select(EndUser).where(EndUser.account_id == account_id).order_by(EndUser.id)))


async def _end_user(session: AsyncSession, account_id: str, number: str, ticket: CrmTicket | None) -> EndUser:
    """The end user of a CRM contact (by its contact id) or of a number; made on first sight."""
    condition = EndUser.out_contact_id == ticket.out_contact_id if ticket is not None else EndUser.number_e164 == number
    found = await session.scalar(
        select(EndUser).where(EndUser.account_id == account_id, condition).order_by(EndUser.id).limit(1)
    )
    if found is not None:
        return found
    user = EndUser(account_id=account_id, number_e164=number, out_contact_id=ticket.out_contact_id if ticket else None)
    session.add(user)
    await session.flush()
    return user


# ---- accepting calls ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallRequest:
    """A call as the API asked for it (values already typed by the surface; None where absent)."""

    call_type: CcCallType
    lang: str = "en"
    agent_email: str | None = None
    ticket_id: str | None = None
    end_user_number: str | None = None
    outbound_number: str | None = None
    menu_id: int | None = None
    parent_call_id: int | None = None
    scheduled_at: datetime | None = None
    recording_permission: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Accepted:
    """The request is valid, but someone must choose (an outbound number): nothing was placed."""

    reason: str


async def create_call(*, session: AsyncSession, account_id: str, request: CallRequest) -> CcCall | Accepted:
    """Validate in the documented order and write the call; the caller commits, then pokes the runtime."""
    if request.call_type is CcCallType.OUTBOUND:
        return await _outbound(session, account_id, request)
    return await _queued(session, account_id, request)


async def _resolve_contact(
    session: AsyncSession, account_id: str, request: CallRequest, malformed: str
) -> tuple[str, CrmTicket | None]:
    if request.ticket_id is not None:
        ticket = await session.scalar(
            select(CrmTicket).where(CrmTicket.account_id == account_id, CrmTicket.ticket_id == request.ticket_id)
        )
        if ticket is None:
            raise errors.ContactNotFound()
        return ticket.number_e164, ticket
    assert request.end_user_number is not None
    number = e164(request.end_user_number)
    if number is None:
        raise errors.ContactCenterInvalid(malformed)
    return number, None


def _check_language(lang: str, offered: list[str] | None) -> None:
    if lang not in ISO_639_1:
        raise errors.ContactCenterInvalid(f"Language '{lang}' is not found")
    if offered is not None and lang not in (offered or ["en"]):
        raise errors.ContactCenterInvalid(f"Language '{lang}' is not available")


async def _outbound(session: AsyncSession, account_id: str, request: CallRequest) -> CcCall | Accepted:
    if not request.agent_email:
        raise errors.AgentEmailRequired()
    agent = await session.scalar(
        select(Agent).where(Agent.account_id == account_id, Agent.email == request.agent_email.strip().lower())
    )
    if agent is None:
        raise errors.NotAValidAgentEmail()
    if not agent.can_place_calls:
        raise errors.AgentMayNotCall()
    if request.ticket_id is None and request.end_user_number is None:
        raise errors.TicketOrNumberRequired()
    number, ticket = await _resolve_contact(session, account_id, request, "end_user_number is not well-formed")
    _check_language(request.lang, None)
    outbound = await _outbound_number(session, account_id, request.outbound_number, menu=None)
    if outbound is None:
        return Accepted("Need to choose an outbound number")
    # The agent is taken in the same transaction as the call (a conditional UPDATE): two requests for one
    # agent cannot both get it.
    now = utcnow()
    taken = await session.execute(
        update(Agent)
        .where(Agent.id == agent.id, Agent.status == AgentStatus.AVAILABLE)
        .values(status=AgentStatus.BUSY)
        .execution_options(synchronize_session=False)
    )
    if getattr(taken, "rowcount", 0) != 1:
        raise errors.AgentNotAvailable()
    end_user = await _end_user(session, account_id, number, ticket)
    call = await _write_call(
        session,
        account_id,
        request,
        status=CcCallStatus.ASSIGNED,
        number=number,
        ticket=ticket,
        end_user=end_user,
        outbound=outbound,
        agent=agent,
        menu=None,
        created_at=now,
    )
    call.assigned_at = now
    return call


async def _outbound_number(
    session: AsyncSession, account_id: str, wanted: str | None, menu: Menu | None
) -> OutboundNumber | None:
    """The requested number when it is one of ours, else the menu's, else the default; None: someone must choose."""
    if wanted:
        normalized = e164(wanted)
        if normalized is not None:
            found = await session.scalar(
                select(OutboundNumber).where(
                    OutboundNumber.account_id == account_id, OutboundNumber.number_e164 == normalized
                )
            )
            if found is not None:
                return found
    if menu is not None and menu.outbound_number_id is not None:
        found = await session.get(OutboundNumber, menu.outbound_number_id)
        if found is not None:
            return found
    return await session.scalar(
        select(OutboundNumber).where(OutboundNumber.account_id == account_id, OutboundNumber.is_default.is_(True))
    )


async def _queued(session: AsyncSession, account_id: str, request: CallRequest) -> CcCall | Accepted:
    parent: CcCall | None = None
    if request.parent_call_id is not None:
        parent = await _call_by_public_id(session, account_id, request.parent_call_id)
        if parent is None:
            raise errors.ContactCenterInvalid(f"call_id {request.parent_call_id} is not found")
    menu: Menu | None = None
    if request.menu_id is not None:
        menu = await _menu_by_public_id(session, account_id, request.menu_id)
        if menu is None or menu.deleted:
            raise errors.ContactCenterInvalid(f"menu_id {request.menu_id} is not found")
    elif parent is not None and parent.menu_id is not None and request.call_type is CcCallType.SCHEDULED:
        menu = await session.get(Menu, parent.menu_id)
        if menu is not None and menu.deleted:
            raise errors.ContactCenterInvalid(f"menu_id {menu.public_id} is not found")
    if menu is None:
        raise errors.MenuIdRequired()
    if menu.menu_type not in MENU_TYPES[request.call_type]:
        raise errors.ContactCenterInvalid(MENU_TYPE_ERRORS[request.call_type])
    if request.end_user_number is None and request.ticket_id is None:
        raise errors.EndUserNumberRequired()
    number, ticket = await _resolve_contact(session, account_id, request, "end_user_number is not well formed")
    _check_language(request.lang, list(menu.languages))
    if request.call_type is CcCallType.SCHEDULED and request.scheduled_at is None:
        raise errors.ScheduledAtRequired()
    if menu.state == MenuState.AFTER_HOURS:
        raise errors.MenuAfterHours()
    if menu.state == MenuState.MANUAL_REDIRECTION:
        raise errors.MenuManualRedirection()
    if request.recording_permission is not None and request.recording_permission not in RECORDING_PERMISSIONS:
        raise errors.ContactCenterInvalid("recording_permission is not valid")
    outbound = await _outbound_number(session, account_id, request.outbound_number, menu=menu)
    now = utcnow()
    scheduled = request.call_type is CcCallType.SCHEDULED
    if scheduled and request.scheduled_at is not None and request.scheduled_at <= now:
        raise errors.ContactCenterInvalid("scheduled_at must be a future time")
    end_user = await _end_user(session, account_id, number, ticket)
    call = await _write_call(
        session,
        account_id,
        request,
        status=CcCallStatus.SCHEDULED if scheduled else CcCallStatus.QUEUED,
        number=number,
        ticket=ticket,
        end_user=end_user,
        outbound=outbound,
        agent=None,
        menu=menu,
        created_at=now,
    )
    call.parent_id = parent.id if parent is not None else None
    if scheduled:
        call.scheduled_at = request.scheduled_at
    else:
        call.queued_at = now
    return call


async def _write_call(
    session: AsyncSession,
    account_id: str,
    request: CallRequest,
    *,
    status: CcCallStatus,
    number: str,
    ticket: CrmTicket | None,
    end_user: EndUser,
    outbound: OutboundNumber | None,
    agent: Agent | None,
    menu: Menu | None,
    created_at: datetime,
) -> CcCall:
    core = Call(
        id=new_id(),
        account_id=account_id,
        origin=CallOrigin.CONTACT_CENTER,
        direction="outbound" if request.call_type is CcCallType.OUTBOUND else "inbound",
        from_e164=outbound.number_e164 if outbound is not None else None,
        to_e164=number,
        contact_e164=number,
        started_at=created_at,
        language_code=request.lang,
        status=CallStatus.QUEUED,
        agent=_agent_json(agent),
        customer={"end_user_id": end_user.id, "out_contact_id": end_user.out_contact_id},
        extras={"contact_center_status": status, "contact_center_call_type": request.call_type},
    )
    session.add(core)
    await session.flush()
    call = CcCall(
        account_id=account_id,
        public_id=await next_public_id(session, account_id, "call"),
        core_call_id=core.id,
        call_type=request.call_type,
        status=status,
        lang=request.lang,
        agent_id=agent.id if agent is not None else None,
        menu_id=menu.id if menu is not None else None,
        end_user_id=end_user.id,
        end_user_e164=number,
        outbound_number_e164=outbound.number_e164 if outbound is not None else None,
        outbound_trunk_id=outbound.trunk_id if outbound is not None else None,
        out_ticket_id=request.ticket_id,
        out_ticket_url=ticket.ticket_url if ticket is not None else None,
        recording_permission=request.recording_permission or "recording_permission_not_asked",
        created_at=created_at,
        extras=dict(request.extras),
    )
    session.add(call)
    await session.flush()
    core.extras = {**core.extras, "contact_center_call_id": call.public_id}
    participants = []
    if agent is not None:
        participants.append(CcParticipant(call_id=call.id, kind=ParticipantKind.AGENT, agent_id=agent.id))
    participants.append(CcParticipant(call_id=call.id, kind=ParticipantKind.END_USER, end_user_id=end_user.id))
    session.add_all(participants)
    await session.flush()
    return call


def _agent_json(agent: Agent | None) -> dict[str, Any]:
    if agent is None:
        return {}
    return {"id": agent.id, "email": agent.email, "name": f"{agent.first_name} {agent.last_name}".strip()}


# ---- reading and changing calls -------------------------------------------------------------------


async def _call_by_public_id(session: AsyncSession, account_id: str, public_id: int) -> CcCall | None:
    return await session.scalar(select(CcCall).where(CcCall.account_id == account_id, CcCall.public_id == public_id))


async def get_call(*, session: AsyncSession, account_id: str, call_id: int) -> CcCall:
    """The call the API names ``call_id`` (its public id)."""
    call = await _call_by_public_id(session, account_id, call_id)
    if call is None:
        raise CallNotFound()
    return call


@dataclass(frozen=True, slots=True)
class CallFilter:
    status: str | None = None
    call_type: str | None = None
    agent_id: int | None = None
    menu_id: int | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


async def list_calls(
    *, session: AsyncSession, account_id: str, filters: CallFilter, offset: int, limit: int
) -> tuple[list[CcCall], int]:
    conditions: list[Any] = [CcCall.account_id == account_id]
    if filters.status is not None:
        # a cancelled scheduled call shows as failed on the wire, so it is found as one
        wanted = [filters.status, CcCallStatus.CANCELLED] if filters.status == CcCallStatus.FAILED else [filters.status]
        conditions.append(CcCall.status.in_(wanted))
    for column, value in ((CcCall.call_type, filters.call_type), (CcCall.agent_id, filters.agent_id)):
        if value is not None:
            conditions.append(column == value)
    if filters.menu_id is not None:
        menu_ids = select(Menu.id).where(Menu.account_id == account_id, Menu.public_id == filters.menu_id)
        conditions.append(CcCall.menu_id.in_(menu_ids))
    if filters.created_from is not None:
        conditions.append(CcCall.created_at >= filters.created_from)
    if filters.created_to is not None:
        conditions.append(CcCall.created_at < filters.created_to)
    total = await session.scalar(select(func.count()).select_from(CcCall).where(*conditions)) or 0
    rows = await session.scalars(
        select(CcCall).where(*conditions).order_by(CcCall.id.desc()).offset(offset).limit(limit)
    )
    return list(rows), total


async def participants(*, session: AsyncSession, call_id: int) -> list[CcParticipant]:
    return list(
        await session.scalars(select(CcParticipant).where(CcParticipant.call_id == call_id).order_by(CcParticipant.id))
    )


async def set_customer_flags(
    *, session: AsyncSession, account_id: str, call_id: int, flags: Mapping[str, bool]
) -> CcCall:
    call = await get_call(session=session, account_id=account_id, call_id=call_id)
    for name in ("verified_customer", "bad_actor", "repeat_customer"):
        if name in flags:
            setattr(call, name, bool(flags[name]))
    call.updated_at = utcnow()
    await session.flush()
    return call


async def cancel_scheduled(*, session: AsyncSession, account_id: str, call_id: int) -> CcCall:
    """A scheduled call that has not fired is cancelled (a conditional UPDATE: it cannot also fire)."""
    call = await get_call(session=session, account_id=account_id, call_id=call_id)
    now = utcnow()
    result = await session.execute(
        update(CcCall)
        .where(CcCall.id == call.id, CcCall.status == CcCallStatus.SCHEDULED)
        .values(status=CcCallStatus.CANCELLED, ends_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise NotScheduled()
    await session.refresh(call)
    core = await session.get(Call, call.core_call_id)
    if core is not None:
        core.status = CallStatus.COMPLETED
        core.status_reason = CcCallStatus.CANCELLED
        core.ended_at = now
        core.extras = {**core.extras, "contact_center_status": CcCallStatus.CANCELLED}
    await session.flush()
    return call


async def wait_estimates(
    *, session: AsyncSession, account_id: str, lang: str | None, menu_id: int | None, menu_type: str | None
) -> list[tuple[Menu, float]]:
    """Estimated wait in seconds per queue (leaf menus with agents), from real queue data: the mean wait
    (queued -> assigned) of the queue's last 20 dispatched calls, or the longest current wait when that is
    longer; 0 when an agent of the queue is available and nobody is waiting."""
    conditions: list[Any] = [Menu.account_id == account_id, Menu.deleted.is_(False)]
    if menu_id is not None:
        conditions.append(Menu.public_id == menu_id)
    if menu_type is not None:
        conditions.append(Menu.menu_type == menu_type)
    menus = list(await session.scalars(select(Menu).where(*conditions).order_by(Menu.id)))
    now = utcnow()
    estimates = []
    for menu in menus:
        if lang is not None and lang not in (menu.languages or ["en"]):
            continue
        agent_ids = await menu_agent_ids(session=session, menu_id=menu.id)
        if not agent_ids:
            continue
        recent = list(
            await session.execute(
                select(CcCall.queued_at, CcCall.assigned_at)
                .where(CcCall.menu_id == menu.id, CcCall.queued_at.is_not(None), CcCall.assigned_at.is_not(None))
                .order_by(CcCall.assigned_at.desc())
                .limit(20)
            )
        )
        waits = [(assigned - queued).total_seconds() for queued, assigned in recent if queued and assigned]
        mean = sum(waits) / len(waits) if waits else 0.0
        oldest = await session.scalar(
            select(func.min(CcCall.queued_at)).where(CcCall.menu_id == menu.id, CcCall.status == CcCallStatus.QUEUED)
        )
        current = (now - oldest).total_seconds() if oldest is not None else 0.0
        available = await session.scalar(
            select(func.count()).where(Agent.id.in_(agent_ids), Agent.status == AgentStatus.AVAILABLE)
        )
        estimate = 0.0 if available and oldest is None else max(mean, current)
        estimates.append((menu, estimate))
    return estimates


async def _flush_unique(session: AsyncSession, message: str) -> None:
    try:
        await session.flush()
    except IntegrityError as error:
        raise Conflict(message) from error


@dataclass(frozen=True, slots=True)
class CallView:
    """A call with everything its API object shows."""

    call: CcCall
    parent_public_id: int | None  # the parent call's id as the API shows it
    agent: Agent | None
    menu: Menu | None
    path: list[Menu]
    end_user: EndUser | None
    participants: list[CcParticipant]
    transfers: list[TransferView] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TransferView:
    """A transfer with its agents and the menu paths (root first) it went from and to."""

    transfer: CcTransfer
    from_agent: Agent | None
    to_agent: Agent | None
    from_path: list[Menu]
    to_path: list[Menu]


async def transfer_views(*, session: AsyncSession, call_id: int) -> list[TransferView]:
    views = []
    for transfer in await session.scalars(
        select(CcTransfer).where(CcTransfer.call_id == call_id).order_by(CcTransfer.id)
    ):
        paths = []
        for menu_id in (transfer.from_menu_id, transfer.to_menu_id):
            menu = await session.get(Menu, menu_id) if menu_id is not None else None
            paths.append(await menu_path(session=session, menu=menu) if menu is not None else [])
        views.append(
            TransferView(
                transfer=transfer,
                from_agent=await session.get(Agent, transfer.from_agent_id) if transfer.from_agent_id else None,
                to_agent=await session.get(Agent, transfer.to_agent_id) if transfer.to_agent_id else None,
                from_path=paths[0],
                to_path=paths[1],
            )
        )
    return views


async def call_view(*, session: AsyncSession, call: CcCall) -> CallView:
    menu = await session.get(Menu, call.menu_id) if call.menu_id is not None else None
    parent = await session.get(CcCall, call.parent_id) if call.parent_id is not None else None
    return CallView(
        call=call,
        parent_public_id=parent.public_id if parent is not None else None,
        agent=await session.get(Agent, call.agent_id) if call.agent_id is not None else None,
        menu=menu,
        path=await menu_path(session=session, menu=menu) if menu is not None else [],
        end_user=await session.get(EndUser, call.end_user_id) if call.end_user_id is not None else None,
        participants=await participants(session=session, call_id=call.id),
        transfers=await transfer_views(session=session, call_id=call.id),
    )


async def call_views(*, session: AsyncSession, calls: list[CcCall]) -> list[CallView]:
    """Views of many calls with a handful of IN queries (a page of the list), not a few per call."""
    if not calls:
        return []
    agent_ids = {call.agent_id for call in calls if call.agent_id is not None}
    user_ids = {call.end_user_id for call in calls if call.end_user_id is not None}
    agents = {a.id: a for a in await session.scalars(select(Agent).where(Agent.id.in_(agent_ids)))} if agent_ids else {}
    users = (
        {u.id: u for u in await session.scalars(select(EndUser).where(EndUser.id.in_(user_ids)))} if user_ids else {}
    )
    parent_ids = {call.parent_id for call in calls if call.parent_id is not None}
    parents: dict[int, int] = (
        dict(
            (row.id, row.public_id)
            for row in await session.execute(select(CcCall.id, CcCall.public_id).where(CcCall.id.in_(parent_ids)))
        )
        if parent_ids
        else {}
    )
    menus: dict[int, Menu] = {}
    wanted = {call.menu_id for call in calls if call.menu_id is not None}
    while wanted:  # the menus and, level by level, their ancestors
        found = list(await session.scalars(select(Menu).where(Menu.id.in_(wanted))))
        menus.update({menu.id: menu for menu in found})
        wanted = {m.parent_id for m in found if m.parent_id is not None and m.parent_id not in menus}
    by_call: dict[int, list[CcParticipant]] = {}
    for item in await session.scalars(
        select(CcParticipant).where(CcParticipant.call_id.in_([c.id for c in calls])).order_by(CcParticipant.id)
    ):
        by_call.setdefault(item.call_id, []).append(item)

    def path(menu: Menu | None) -> list[Menu]:
        chain: list[Menu] = []
        while menu is not None and menu not in chain:
            chain.insert(0, menu)
            menu = menus.get(menu.parent_id) if menu.parent_id is not None else None
        return chain

    transferred = set(
        await session.scalars(select(CcTransfer.call_id).where(CcTransfer.call_id.in_([c.id for c in calls])))
    )
    views = []
    for call in calls:
        menu = menus.get(call.menu_id) if call.menu_id is not None else None
        views.append(
            CallView(
                call=call,
                parent_public_id=parents.get(call.parent_id) if call.parent_id is not None else None,
                agent=agents.get(call.agent_id) if call.agent_id is not None else None,
                menu=menu,
                path=path(menu),
                end_user=users.get(call.end_user_id) if call.end_user_id is not None else None,
                participants=by_call.get(call.id, []),
                # few calls have transfers: those few are read one by one
                transfers=await transfer_views(session=session, call_id=call.id) if call.id in transferred else [],
            )
        )
    return views
