"""Native admin API for the contact center: agents, menus (queues), outbound numbers, CRM tickets, end users.

`/v1/admin/accounts/{account_id}/contact-center/...`, admin token, scoped to the account in the path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.contact_center import service as cc
from callplane.core.contact_center.models import Agent, CrmTicket, EndUser, Menu, OutboundNumber
from callplane.core.tenancy import service as tenancy
from callplane.errors import CallplaneError, Conflict, InvalidInput, NotFound
from callplane.surfaces.admin.router import require_admin
from callplane.surfaces.context import ContextDep, SessionDep
from callplane.surfaces.http import Int32, Int64, JsonRoute
from callplane.surfaces.targets import outbound_policy

T = TypeVar("T")

router = APIRouter(
    route_class=JsonRoute,
    prefix="/v1/admin/accounts/{account_id}/contact-center",
    tags=["Admin: contact center"],
    dependencies=[Depends(require_admin)],
)


class AgentIn(BaseModel):
    email: str = Field(min_length=3, max_length=255)
    sip_uri: str | None = Field(default=None, description='the agent\'s SIP phone, "sip:user@host[:port]"')
    endpoint_user: str = Field(default="", max_length=255, description="SIP username, or a phone number (PHONE)")
    endpoint_type: str = Field(default="SIP", description="SIP or PHONE")
    endpoint_host: str | None = Field(default=None, description='"host[:port]" of the agent\'s SIP phone')
    trunk_id: str | None = Field(default=None, description="a SIP trunk (required for PHONE)")
    first_name: str = ""
    last_name: str = ""
    agent_number: str | None = None
    avatar_url: str | None = None
    can_place_calls: bool = True
    status: str = Field(default="unavailable", description="available or unavailable")


class AgentPatch(BaseModel):
    sip_uri: str | None = None
    endpoint_user: str | None = None
    endpoint_type: str | None = None
    endpoint_host: str | None = None
    trunk_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    agent_number: str | None = None
    avatar_url: str | None = None
    can_place_calls: bool | None = None
    status: str | None = None


class MenuIn(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    menu_type: str = "ivr_menu"
    parent_id: Int64 | None = None
    position: Int32 = 0
    state: str = "open"
    languages: list[str] = Field(default_factory=lambda: ["en"])
    output_msg: str | None = None
    hidden: bool = False
    outbound_number_id: Int64 | None = None
    agent_ids: list[Int64] = Field(default_factory=list, description="the agents of this menu's queue")


class MenuPatch(BaseModel):
    name: str | None = None
    menu_type: str | None = None
    parent_id: Int64 | None = None
    position: Int32 | None = None
    state: str | None = None
    languages: list[str] | None = None
    output_msg: str | None = None
    hidden: bool | None = None
    outbound_number_id: Int64 | None = None
    agent_ids: list[Int64] | None = None


class OutboundNumberIn(BaseModel):
    number: str = Field(min_length=3, max_length=32)
    trunk_id: str | None = Field(default=None, description="the SIP trunk that carries calls from this number")
    is_default: bool = False


class OutboundNumberPatch(BaseModel):
    trunk_id: str | None = None
    is_default: bool | None = None


class CrmTicketIn(BaseModel):
    ticket_id: str = Field(min_length=1, max_length=255)
    out_contact_id: str = Field(min_length=1, max_length=255)
    number: str = Field(min_length=3, max_length=32)
    url: str | None = None


def _split_sip_uri(values: dict[str, Any]) -> dict[str, Any]:
    """`sip:user@host[:port]` -> a SIP endpoint (user, host); parameters after `;` are dropped."""
    uri = values.pop("sip_uri", None)
    if uri is None:
        return values
    user, at, host = uri.strip().removeprefix("sip:").split(";", 1)[0].partition("@")
    if not (user and at and host):
        raise HTTPException(422, 'sip_uri must look like "sip:user@host[:port]"')
    return {**values, "endpoint_type": "SIP", "endpoint_user": user, "endpoint_host": host, "trunk_id": None}


def agent_out(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.id,
        "email": agent.email,
        "first_name": agent.first_name,
        "last_name": agent.last_name,
        "agent_number": agent.agent_number,
        "avatar_url": agent.avatar_url,
        "endpoint_type": agent.endpoint_type,
        "endpoint_user": agent.endpoint_user,
        "endpoint_host": agent.endpoint_host,
        "trunk_id": agent.trunk_id,
        "can_place_calls": agent.can_place_calls,
        "status": agent.status,
        "last_idle_at": agent.last_idle_at,
        "created_at": agent.created_at,
    }


def menu_out(menu: Menu, agent_ids: list[int], parent_id: int | None) -> dict[str, Any]:
    """Menu ids here are the per-tenant public ids the contact-center API shows."""
    return {
        "id": menu.public_id,
        "name": menu.name,
        "menu_type": menu.menu_type,
        "parent_id": parent_id,
        "position": menu.position,
        "state": menu.state,
        "languages": menu.languages,
        "output_msg": menu.output_msg,
        "hidden": menu.hidden,
        "deleted": menu.deleted,
        "outbound_number_id": menu.outbound_number_id,
        "agent_ids": agent_ids,
        "created_at": menu.created_at,
    }


def number_out(number: OutboundNumber) -> dict[str, Any]:
    return {
        "id": number.id,
        "number": number.number_e164,
        "trunk_id": number.trunk_id,
        "is_default": number.is_default,
        "created_at": number.created_at,
    }


def ticket_out(ticket: CrmTicket) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "ticket_id": ticket.ticket_id,
        "out_contact_id": ticket.out_contact_id,
        "number": ticket.number_e164,
        "url": ticket.ticket_url,
        "created_at": ticket.created_at,
    }


def end_user_out(user: EndUser) -> dict[str, Any]:
    return {
        "id": user.id,
        "identifier": user.identifier,
        "number": user.number_e164,
        "out_contact_id": user.out_contact_id,
        "created_at": user.created_at,
    }


def _fail(error: CallplaneError) -> HTTPException:
    if isinstance(error, NotFound):
        return HTTPException(404, error.message)
    if isinstance(error, Conflict):
        return HTTPException(409, error.message)
    if isinstance(error, InvalidInput):
        return HTTPException(422, error.message)
    raise error


async def _run(session: AsyncSession, account_id: str, work: Callable[[], Awaitable[T]], *, write: bool = True) -> T:
    """Check the account, run the work (in one transaction when it writes), map core errors to statuses."""
    try:
        if not write:
            await tenancy.get_account(session=session, account_id=account_id)
            return await work()
        async with session.begin():
            await tenancy.get_account(session=session, account_id=account_id)
            return await work()
    except CallplaneError as error:
        raise _fail(error) from error


def _poke(context: Any) -> None:
    """Queues may move (an agent became available, a menu opened): tell the runtime in this process."""
    if context.contact_center is not None:
        context.contact_center.poke()


# ---- agents ---------------------------------------------------------------------------------------


@router.post("/agents", status_code=201)
async def create_agent(account_id: str, body: AgentIn, context: ContextDep, session: SessionDep) -> dict[str, Any]:
    spec = cc.AgentSpec(**_split_sip_uri(body.model_dump()))
    policy = outbound_policy(context)
    agent = await _run(
        session, account_id, lambda: cc.create_agent(session=session, account_id=account_id, spec=spec, policy=policy)
    )
    _poke(context)
    return agent_out(agent)


@router.get("/agents")
async def list_agents(account_id: str, session: SessionDep) -> dict[str, Any]:
    found = await _run(session, account_id, lambda: cc.list_agents(session=session, account_id=account_id), write=False)
    return {"agents": [agent_out(agent) for agent in found]}


@router.get("/agents/{agent_id}")
async def get_agent(account_id: str, agent_id: Int64, session: SessionDep) -> dict[str, Any]:
    agent = await _run(
        session,
        account_id,
        lambda: cc.get_agent(session=session, account_id=account_id, agent_id=agent_id),
        write=False,
    )
    return agent_out(agent)


@router.patch("/agents/{agent_id}")
async def update_agent(
    account_id: str, agent_id: Int64, body: AgentPatch, context: ContextDep, session: SessionDep
) -> dict[str, Any]:
    changes = _split_sip_uri(body.model_dump(exclude_unset=True))
    agent = await _run(
        session,
        account_id,
        lambda: cc.update_agent(
            session=session, account_id=account_id, agent_id=agent_id, changes=changes, policy=outbound_policy(context)
        ),
    )
    _poke(context)
    return agent_out(agent)


@router.delete("/agents/{agent_id}")
async def delete_agent(account_id: str, agent_id: Int64, session: SessionDep) -> dict[str, Any]:
    agent = await _run(
        session, account_id, lambda: cc.delete_agent(session=session, account_id=account_id, agent_id=agent_id)
    )
    return agent_out(agent)


# ---- menus ----------------------------------------------------------------------------------------


async def menu_view(session: AsyncSession, menu: Menu) -> dict[str, Any]:
    """A menu as the admin API (and the CLI) shows it."""
    return menu_out(
        menu,
        await cc.menu_agent_ids(session=session, menu_id=menu.id),
        await cc.parent_menu_public_id(session=session, menu=menu),
    )


@router.post("/menus", status_code=201)
async def create_menu(account_id: str, body: MenuIn, context: ContextDep, session: SessionDep) -> dict[str, Any]:
    values = body.model_dump()
    values["languages"] = tuple(values["languages"])
    values["agent_ids"] = tuple(values["agent_ids"])
    menu = await _run(
        session, account_id, lambda: cc.create_menu(session=session, account_id=account_id, spec=cc.MenuSpec(**values))
    )
    _poke(context)
    return await menu_view(session, menu)


@router.get("/menus")
async def list_menus(account_id: str, session: SessionDep) -> dict[str, Any]:
    found = await _run(session, account_id, lambda: cc.list_menus(session=session, account_id=account_id), write=False)
    return {"menus": [await menu_view(session, menu) for menu in found]}


@router.get("/menus/{menu_id}")
async def get_menu(account_id: str, menu_id: Int64, session: SessionDep) -> dict[str, Any]:
    menu = await _run(
        session, account_id, lambda: cc.get_menu(session=session, account_id=account_id, menu_id=menu_id), write=False
    )
    return await menu_view(session, menu)


@router.patch("/menus/{menu_id}")
async def update_menu(
    account_id: str, menu_id: Int64, body: MenuPatch, context: ContextDep, session: SessionDep
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    menu = await _run(
        session,
        account_id,
        lambda: cc.update_menu(session=session, account_id=account_id, menu_id=menu_id, changes=changes),
    )
    _poke(context)
    return await menu_view(session, menu)


@router.delete("/menus/{menu_id}")
async def delete_menu(account_id: str, menu_id: Int64, session: SessionDep) -> dict[str, Any]:
    menu = await _run(
        session, account_id, lambda: cc.delete_menu(session=session, account_id=account_id, menu_id=menu_id)
    )
    return await menu_view(session, menu)


# ---- outbound numbers, CRM tickets, end users -----------------------------------------------------


@router.post("/outbound-numbers", status_code=201)
async def create_outbound_number(account_id: str, body: OutboundNumberIn, session: SessionDep) -> dict[str, Any]:
    number = await _run(
        session,
        account_id,
        lambda: cc.create_outbound_number(session=session, account_id=account_id, **body.model_dump()),
    )
    return number_out(number)


@router.get("/outbound-numbers")
async def list_outbound_numbers(account_id: str, session: SessionDep) -> dict[str, Any]:
    found = await _run(
        session, account_id, lambda: cc.list_outbound_numbers(session=session, account_id=account_id), write=False
    )
    return {"outbound_numbers": [number_out(number) for number in found]}


@router.patch("/outbound-numbers/{number_id}")
async def update_outbound_number(
    account_id: str, number_id: Int64, body: OutboundNumberPatch, session: SessionDep
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    number = await _run(
        session,
        account_id,
        lambda: cc.update_outbound_number(session=session, account_id=account_id, number_id=number_id, changes=changes),
    )
    return number_out(number)


@router.delete("/outbound-numbers/{number_id}")
async def delete_outbound_number(account_id: str, number_id: Int64, session: SessionDep) -> dict[str, Any]:
    number = await _run(
        session,
        account_id,
        lambda: cc.delete_outbound_number(session=session, account_id=account_id, number_id=number_id),
    )
    return number_out(number)


@router.post("/crm-tickets", status_code=201)
async def create_crm_ticket(account_id: str, body: CrmTicketIn, session: SessionDep) -> dict[str, Any]:
    ticket = await _run(
        session, account_id, lambda: cc.create_crm_ticket(session=session, account_id=account_id, **body.model_dump())
    )
    return ticket_out(ticket)


@router.get("/crm-tickets")
async def list_crm_tickets(account_id: str, session: SessionDep) -> dict[str, Any]:
    found = await _run(
        session, account_id, lambda: cc.list_crm_tickets(session=session, account_id=account_id), write=False
    )
    return {"crm_tickets": [ticket_out(ticket) for ticket in found]}


@router.get("/end-users")
async def list_end_users(account_id: str, session: SessionDep) -> dict[str, Any]:
    found = await _run(
        session, account_id, lambda: cc.list_end_users(session=session, account_id=account_id), write=False
    )
    return {"end_users": [end_user_out(user) for user in found]}
