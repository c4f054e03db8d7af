"""Native admin API for call tracking: campaign promo numbers and marketing data values (network, advertiser,
campaign, promo number)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from callplane.core.call_tracking import service as tracking
from callplane.core.call_tracking.models import OwnerType, PromoNumber
from callplane.surfaces.admin.router import _commit, require_admin
from callplane.surfaces.context import ContextDep, SessionDep
from callplane.surfaces.http import JsonRoute
from callplane.surfaces.targets import outbound_policy

router = APIRouter(
    route_class=JsonRoute, prefix="/v1/admin", tags=["Admin: call tracking"], dependencies=[Depends(require_admin)]
)


class PromoNumberIn(BaseModel):
    campaign_id: str
    number: str = Field(min_length=1, max_length=64, description="the called number (any format) or SIP user")
    destination: str = Field(
        min_length=1, max_length=255, description="sip:user@host[:port], or a phone number dialled through trunk_id"
    )
    trunk_id: str | None = None
    configuration_id: str | None = Field(
        default=None, description="a voice configuration; default: a new one with postCallProcessing = record"
    )
    description: str = ""
    external_id: str | None = Field(default=None, max_length=255, description="the network's promo number id")
    media_type: str | None = Field(default=None, max_length=64)
    record: bool = True
    custom_data: dict[str, str] = Field(default_factory=dict, description="values set on the promo number")


class CustomDataValuesIn(BaseModel):
    owner_type: OwnerType
    owner_id: str | None = Field(default=None, description="omit for the network (the account itself)")
    values: dict[str, str | None] = Field(description="field api name -> value; null clears it")


def promo_out(promo: PromoNumber, custom_data: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": promo.id,
        "account_id": promo.account_id,
        "campaign_id": promo.campaign_id,
        "number": promo.number,
        "external_id": promo.external_id,
        "description": promo.description,
        "media_type": promo.media_type,
        "destination_type": promo.destination_type,
        "destination": promo.destination,
        "trunk_id": promo.trunk_id,
        "configuration_id": promo.configuration_id,
        "record": promo.record,
        "created_at": promo.created_at,
    }
    if custom_data is not None:
        out["custom_data"] = dict(custom_data)
    return out


@router.post("/accounts/{account_id}/promo-numbers", status_code=201)
async def create_promo_number(
    account_id: str, body: PromoNumberIn, context: ContextDep, session: SessionDep
) -> dict[str, Any]:
    async def work() -> dict[str, Any]:
        promo = await tracking.create_promo_number(
            session=session,
            account_id=account_id,
            campaign_id=body.campaign_id,
            number=body.number,
            destination=body.destination,
            trunk_id=body.trunk_id,
            configuration_id=body.configuration_id,
            description=body.description,
            external_id=body.external_id,
            media_type=body.media_type,
            record=body.record,
            policy=outbound_policy(context),
        )
        values = await tracking.set_custom_data_values(
            session=session,
            account_id=account_id,
            owner_type=OwnerType.PROMO_NUMBER,
            owner_id=promo.id,
            values=dict(body.custom_data),
        )
        return promo_out(promo, values)

    return await _commit(session, work)


@router.get("/accounts/{account_id}/promo-numbers")
async def list_promo_numbers(account_id: str, session: SessionDep) -> dict[str, Any]:
    promos = await tracking.list_promo_numbers(session=session, account_id=account_id)
    return {"promo_numbers": [promo_out(promo) for promo in promos]}


@router.get("/accounts/{account_id}/promo-numbers/{promo_number_id}")
async def get_promo_number(account_id: str, promo_number_id: str, session: SessionDep) -> dict[str, Any]:
    async def work() -> dict[str, Any]:
        promo = await tracking.get_promo_number(session=session, account_id=account_id, promo_number_id=promo_number_id)
        values = await tracking.list_custom_data_values(
            session=session, owner_type=OwnerType.PROMO_NUMBER, owner_id=promo.id
        )
        return promo_out(promo, values)

    return await _commit(session, work)


@router.delete("/accounts/{account_id}/promo-numbers/{promo_number_id}")
async def delete_promo_number(account_id: str, promo_number_id: str, session: SessionDep) -> dict[str, Any]:
    async def work() -> dict[str, Any]:
        promo = await tracking.delete_promo_number(
            session=session, account_id=account_id, promo_number_id=promo_number_id
        )
        return promo_out(promo)

    return await _commit(session, work)


@router.put("/accounts/{account_id}/custom-data-values")
async def set_custom_data_values(account_id: str, body: CustomDataValuesIn, session: SessionDep) -> dict[str, Any]:
    owner_id = body.owner_id if body.owner_type is not OwnerType.NETWORK else (body.owner_id or account_id)

    async def work() -> dict[str, Any]:
        values = await tracking.set_custom_data_values(
            session=session,
            account_id=account_id,
            owner_type=body.owner_type,
            owner_id=owner_id or "",
            values=body.values,
        )
        return {"owner_type": body.owner_type, "owner_id": owner_id, "values": dict(values)}

    return await _commit(session, work)


@router.get("/accounts/{account_id}/custom-data-values")
async def list_custom_data_values(
    account_id: str, owner_type: OwnerType, session: SessionDep, owner_id: str | None = None
) -> dict[str, Any]:
    owner = owner_id if owner_type is not OwnerType.NETWORK else (owner_id or account_id)

    async def work() -> dict[str, Any]:
        await tracking.check_owner(session, account_id, owner_type, owner or "")
        values = await tracking.list_custom_data_values(session=session, owner_type=owner_type, owner_id=owner or "")
        return {"owner_type": owner_type, "owner_id": owner, "values": dict(values)}

    return await _commit(session, work)
