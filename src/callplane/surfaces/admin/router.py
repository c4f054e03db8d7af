"""Native admin API: accounts, organizations, campaigns, definitions, tokens and recording auth configs."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.tenancy import service as tenancy
from callplane.core.tenancy.models import (
    Account,
    AccountKind,
    ApiToken,
    Campaign,
    CampaignKind,
    CustomDataField,
    Organization,
    OrganizationKind,
    RecordingAuthConfig,
    RecordingAuthMethod,
    SftpAccessConfig,
    SignalDefinition,
)
from callplane.core.tenancy.service import TenancyLookups
from callplane.errors import CallplaneError, Conflict, InvalidInput, NotFound
from callplane.surfaces.context import ContextDep, SessionDep
from callplane.surfaces.http import INT32_MAX, JsonRoute, bearer_token


async def require_admin(request: Request, context: ContextDep) -> None:
    token = bearer_token(request) or ""
    if not hmac.compare_digest(token.encode(), context.admin_token.encode()):
        raise HTTPException(401, "invalid or missing admin token", headers={"WWW-Authenticate": "Bearer"})


T = TypeVar("T")

router = APIRouter(route_class=JsonRoute, prefix="/v1/admin", tags=["Admin"], dependencies=[Depends(require_admin)])


class AccountIn(BaseModel):
    kind: AccountKind
    name: str = Field(min_length=1, max_length=255)
    external_id: str | None = Field(default=None, max_length=255)
    default_language_code: str = "en-US"
    language_codes: list[str] | None = None
    time_zone: str = "UTC"
    ingestion_enabled: bool = True
    rate_limit_per_minute: int | None = Field(default=None, ge=1, le=INT32_MAX)


class AccountPatch(BaseModel):
    name: str | None = None
    default_language_code: str | None = None
    language_codes: list[str] | None = None
    time_zone: str | None = None
    ingestion_enabled: bool | None = None
    rate_limit_per_minute: int | None = Field(default=None, ge=1, le=INT32_MAX)


class OrganizationIn(BaseModel):
    kind: OrganizationKind
    external_id: str = Field(min_length=1, max_length=255)
    name: str = ""
    parent_id: str | None = None


class CampaignIn(BaseModel):
    organization_id: str
    external_id: str = Field(min_length=1, max_length=255)
    name: str = ""
    kind: CampaignKind = CampaignKind.EXTERNAL_ONLY
    transcription_enabled: bool = True


class SignalDefinitionIn(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    description: str = ""
    phrases: dict[str, list[str]] | None = Field(
        default=None, description='phrases per speaker: {"caller": [...], "agent": [...], "any": [...]}'
    )
    examples: list[str] | None = None


class CustomDataFieldIn(BaseModel):
    api_name: str = Field(min_length=1, max_length=255)
    display_name: str = ""


class TokenIn(BaseModel):
    name: str = ""
    organization_id: str | None = None


class SftpAccessIn(BaseModel):
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(default=22, ge=1, le=65535)
    username: str = Field(min_length=1, max_length=255)
    known_host_key: str = Field(min_length=1, description='the server\'s public host key, e.g. "ssh-ed25519 AAAA..."')
    base_dir: str = "."
    password: str | None = None
    private_key: str | None = None


def sftp_out(config: SftpAccessConfig) -> dict[str, Any]:
    return {
        "host": config.host,
        "port": config.port,
        "username": config.username,
        "known_host_key": config.known_host_key,
        "base_dir": config.base_dir,
        "password_set": config.password_ciphertext is not None,
        "private_key_set": config.private_key_ciphertext is not None,
        "created_at": config.created_at,
    }


class RecordingAuthConfigIn(BaseModel):
    method: RecordingAuthMethod
    secret: str = Field(min_length=1)
    parameter_name: str = ""
    name: str = ""


def _fail(error: CallplaneError) -> HTTPException:
    if isinstance(error, NotFound):
        return HTTPException(404, error.message)
    if isinstance(error, Conflict):
        return HTTPException(409, error.message)
    if isinstance(error, InvalidInput):
        return HTTPException(422, error.message)
    raise error


async def _commit(
    session: AsyncSession, work: Callable[[], Awaitable[T]], *, invalidate: TenancyLookups | None = None
) -> T:
    """Run one admin write in its own transaction; tenancy caches are cleared once it has committed."""
    try:
        async with session.begin():
            result = await work()
    except CallplaneError as error:
        raise _fail(error) from error
    if invalidate is not None:
        invalidate.invalidate()
    return result


def account_out(a: Account) -> dict[str, Any]:
    return {
        "id": a.id,
        "kind": a.kind,
        "name": a.name,
        "external_id": a.external_id,
        "default_language_code": a.default_language_code,
        "language_codes": a.language_codes,
        "time_zone": a.time_zone,
        "ingestion_enabled": a.ingestion_enabled,
        "rate_limit_per_minute": a.rate_limit_per_minute,
        "created_at": a.created_at,
    }


def organization_out(o: Organization) -> dict[str, Any]:
    return {
        "id": o.id,
        "account_id": o.account_id,
        "kind": o.kind,
        "external_id": o.external_id,
        "name": o.name,
        "parent_id": o.parent_id,
        "created_at": o.created_at,
    }


def campaign_out(c: Campaign) -> dict[str, Any]:
    return {
        "id": c.id,
        "account_id": c.account_id,
        "organization_id": c.organization_id,
        "external_id": c.external_id,
        "name": c.name,
        "kind": c.kind,
        "transcription_enabled": c.transcription_enabled,
        "created_at": c.created_at,
    }


def signal_out(s: SignalDefinition) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "phrases": s.phrases,
        "examples": s.examples,
        "created_at": s.created_at,
    }


def field_out(f: CustomDataField) -> dict[str, Any]:
    return {"id": f.id, "api_name": f.api_name, "display_name": f.display_name, "created_at": f.created_at}


def token_out(t: ApiToken) -> dict[str, Any]:
    return {
        "id": t.id,
        "account_id": t.account_id,
        "organization_id": t.organization_id,
        "name": t.name,
        "token_prefix": t.token_prefix,
        "created_at": t.created_at,
        "revoked_at": t.revoked_at,
    }


def auth_config_out(c: RecordingAuthConfig) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "method": c.method,
        "parameter_name": c.parameter_name,
        "created_at": c.created_at,
    }


@router.post("/accounts", status_code=201)
async def create_account(body: AccountIn, context: ContextDep, session: SessionDep) -> dict[str, Any]:
    account = await _commit(session, lambda: tenancy.create_account(session=session, **body.model_dump()))
    return account_out(account)


@router.get("/accounts")
async def list_accounts(session: SessionDep) -> dict[str, Any]:
    return {"accounts": [account_out(a) for a in await tenancy.list_accounts(session=session)]}


@router.get("/accounts/{account_id}")
async def get_account(account_id: str, session: SessionDep) -> dict[str, Any]:
    try:
        return account_out(await tenancy.get_account(session=session, account_id=account_id))
    except CallplaneError as error:
        raise _fail(error) from error


@router.patch("/accounts/{account_id}")
async def update_account(
    account_id: str, body: AccountPatch, context: ContextDep, session: SessionDep
) -> dict[str, Any]:
    account = await _commit(
        session,
        lambda: tenancy.update_account(
            session=session, account_id=account_id, changes=_patch_changes(body, nullable={"rate_limit_per_minute"})
        ),
        invalidate=context.lookups,
    )
    return account_out(account)


def _patch_changes(body: BaseModel, *, nullable: set[str]) -> dict[str, Any]:
    """The fields a PATCH sets. An explicit null leaves a field that cannot be empty unchanged (it used to reach
    the database as NULL: a 500); in `nullable` fields it clears the value."""
    return {
        name: value
        for name, value in body.model_dump(exclude_unset=True).items()
        if value is not None or name in nullable
    }


@router.post("/accounts/{account_id}/organizations", status_code=201)
async def create_organization(
    account_id: str, body: OrganizationIn, context: ContextDep, session: SessionDep
) -> dict[str, Any]:
    organization = await _commit(
        session,
        lambda: tenancy.create_organization(session=session, account_id=account_id, **body.model_dump()),
        invalidate=context.lookups,
    )
    return organization_out(organization)


@router.get("/accounts/{account_id}/organizations")
async def list_organizations(account_id: str, session: SessionDep) -> dict[str, Any]:
    found = await tenancy.list_organizations(session=session, account_id=account_id)
    return {"organizations": [organization_out(o) for o in found]}


@router.post("/accounts/{account_id}/campaigns", status_code=201)
async def create_campaign(
    account_id: str, body: CampaignIn, context: ContextDep, session: SessionDep
) -> dict[str, Any]:
    campaign = await _commit(
        session,
        lambda: tenancy.create_campaign(session=session, account_id=account_id, **body.model_dump()),
        invalidate=context.lookups,
    )
    return campaign_out(campaign)


@router.get("/accounts/{account_id}/campaigns")
async def list_campaigns(account_id: str, session: SessionDep) -> dict[str, Any]:
    return {
        "campaigns": [campaign_out(c) for c in await tenancy.list_campaigns(session=session, account_id=account_id)]
    }


@router.post("/accounts/{account_id}/signal-definitions", status_code=201)
async def create_signal_definition(
    account_id: str, body: SignalDefinitionIn, context: ContextDep, session: SessionDep
) -> dict[str, Any]:
    definition = await _commit(
        session,
        lambda: tenancy.create_signal_definition(session=session, account_id=account_id, **body.model_dump()),
        invalidate=context.lookups,
    )
    return signal_out(definition)


@router.get("/accounts/{account_id}/signal-definitions")
async def list_signal_definitions(account_id: str, session: SessionDep) -> dict[str, Any]:
    found = await tenancy.list_signal_definitions(session=session, account_id=account_id)
    return {"signal_definitions": [signal_out(s) for s in found]}


@router.post("/accounts/{account_id}/custom-data-fields", status_code=201)
async def create_custom_data_field(
    account_id: str, body: CustomDataFieldIn, context: ContextDep, session: SessionDep
) -> dict[str, Any]:
    field = await _commit(
        session,
        lambda: tenancy.create_custom_data_field(session=session, account_id=account_id, **body.model_dump()),
        invalidate=context.lookups,
    )
    return field_out(field)


@router.get("/accounts/{account_id}/custom-data-fields")
async def list_custom_data_fields(account_id: str, session: SessionDep) -> dict[str, Any]:
    found = await tenancy.list_custom_data_fields(session=session, account_id=account_id)
    return {"custom_data_fields": [field_out(f) for f in found]}


@router.post("/accounts/{account_id}/tokens", status_code=201)
async def issue_token(account_id: str, body: TokenIn, session: SessionDep) -> dict[str, Any]:
    """The plaintext token is in this response only; callplane keeps its hash."""
    token, plaintext = await _commit(
        session,
        lambda: tenancy.issue_token(
            session=session, account_id=account_id, organization_id=body.organization_id, name=body.name
        ),
    )
    return token_out(token) | {"token": plaintext}


@router.get("/accounts/{account_id}/tokens")
async def list_tokens(account_id: str, session: SessionDep) -> dict[str, Any]:
    return {"tokens": [token_out(t) for t in await tenancy.list_tokens(session=session, account_id=account_id)]}


@router.delete("/accounts/{account_id}/tokens/{token_id}")
async def revoke_token(account_id: str, token_id: str, context: ContextDep, session: SessionDep) -> dict[str, Any]:
    token = await _commit(
        session,
        lambda: tenancy.revoke_token(session=session, account_id=account_id, token_id=token_id),
        invalidate=context.lookups,
    )
    return token_out(token)


@router.post("/accounts/{account_id}/recording-auth-configs", status_code=201)
async def create_recording_auth_config(
    account_id: str, body: RecordingAuthConfigIn, context: ContextDep, session: SessionDep
) -> dict[str, Any]:
    config = await _commit(
        session,
        lambda: tenancy.create_recording_auth_config(
            session=session, secret_box=context.secret_box, account_id=account_id, **body.model_dump()
        ),
        invalidate=context.lookups,
    )
    return auth_config_out(config)


@router.get("/accounts/{account_id}/recording-auth-configs")
async def list_recording_auth_configs(account_id: str, session: SessionDep) -> dict[str, Any]:
    found = await tenancy.list_recording_auth_configs(session=session, account_id=account_id)
    return {"recording_auth_configs": [auth_config_out(c) for c in found]}


@router.put("/accounts/{account_id}/sftp-access")
async def set_sftp_access(
    account_id: str, body: SftpAccessIn, context: ContextDep, session: SessionDep
) -> dict[str, Any]:
    """Direct SFTP access to the account's recordings (used for calls that name a recording_filename)."""
    config = await _commit(
        session,
        lambda: tenancy.set_sftp_access(
            session=session, secret_box=context.secret_box, account_id=account_id, **body.model_dump()
        ),
    )
    return sftp_out(config)


@router.get("/accounts/{account_id}/sftp-access")
async def get_sftp_access(account_id: str, session: SessionDep) -> dict[str, Any]:
    config = await tenancy.get_sftp_access(session=session, account_id=account_id)
    if config is None:
        raise HTTPException(404, "no SFTP access configured")
    return sftp_out(config)
