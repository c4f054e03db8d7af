"""Native admin API: an account's direct S3 / Azure Blob access to its own recordings (Invoca's "Direct Recording
Access")."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from callplane.core.recordings import bucket_access
from callplane.core.recordings.bucket_access import AzureBlobAccessConfig, S3AccessConfig
from callplane.surfaces.admin.router import _commit, require_admin
from callplane.surfaces.context import ContextDep, SessionDep
from callplane.surfaces.http import JsonRoute

router = APIRouter(
    route_class=JsonRoute, prefix="/v1/admin", tags=["Admin: recording access"], dependencies=[Depends(require_admin)]
)


class S3AccessIn(BaseModel):
    bucket: str = Field(min_length=1, max_length=255)
    region: str | None = Field(default=None, max_length=64)
    prefix: str = Field(default="", description="folder in the bucket the recording_filename is relative to")
    endpoint_url: str | None = Field(default=None, description="unset: AWS; set for an S3-compatible service")
    access_key_id: str = Field(min_length=1, max_length=255)
    secret_access_key: str = Field(min_length=1, description="stored encrypted, never shown again")


def s3_access_out(config: S3AccessConfig) -> dict[str, Any]:
    return {
        "bucket": config.bucket,
        "region": config.region,
        "prefix": config.prefix,
        "endpoint_url": config.endpoint_url,
        "access_key_id": config.access_key_id,
        "secret_access_key_set": bool(config.secret_access_key_ciphertext),
        "created_at": config.created_at,
    }


@router.put("/accounts/{account_id}/s3-access")
async def set_s3_access(account_id: str, body: S3AccessIn, context: ContextDep, session: SessionDep) -> dict[str, Any]:
    """Direct S3 access to the account's recordings: calls with a recording_filename (or none: the external id)
    are read from ``prefix/<filename>`` in the bucket; it takes precedence over the account's SFTP access."""
    config = await _commit(
        session,
        lambda: bucket_access.set_s3_access(
            session=session, secret_box=context.secret_box, account_id=account_id, **body.model_dump()
        ),
    )
    return s3_access_out(config)


@router.get("/accounts/{account_id}/s3-access")
async def get_s3_access(account_id: str, session: SessionDep) -> dict[str, Any]:
    config = await bucket_access.get_s3_access(session=session, account_id=account_id)
    if config is None:
        raise HTTPException(404, "no S3 access configured")
    return s3_access_out(config)


@router.delete("/accounts/{account_id}/s3-access", status_code=204)
async def delete_s3_access(account_id: str, session: SessionDep) -> None:
    if not await _commit(session, lambda: bucket_access.delete_s3_access(session=session, account_id=account_id)):
        raise HTTPException(404, "no S3 access configured")


class AzureBlobAccessIn(BaseModel):
    storage_account: str = Field(min_length=1, max_length=255)
    container: str = Field(min_length=1, max_length=255)
    prefix: str = Field(default="", description="folder in the container the recording_filename is relative to")
    endpoint_url: str | None = Field(default=None, description="the blob service URL; unset: Azure's for the account")
    credential_kind: Literal["key", "sas"] = Field(description="an account key, or a SAS token with read permission")
    credential: str = Field(min_length=1, description="stored encrypted, never shown again")


def azure_blob_access_out(config: AzureBlobAccessConfig) -> dict[str, Any]:
    return {
        "storage_account": config.storage_account,
        "container": config.container,
        "prefix": config.prefix,
        "endpoint_url": config.endpoint_url,
        "credential_kind": config.credential_kind,
        "credential_set": bool(config.credential_ciphertext),
        "created_at": config.created_at,
    }


@router.put("/accounts/{account_id}/azure-blob-access")
async def set_azure_blob_access(
    account_id: str, body: AzureBlobAccessIn, context: ContextDep, session: SessionDep
) -> dict[str, Any]:
    """Direct Azure Blob access to the account's recordings: calls with a recording_filename (or none: the external
    id) are read from ``prefix/<filename>`` in the container; S3 access, if also set, is used first."""
    config = await _commit(
        session,
        lambda: bucket_access.set_azure_blob_access(
            session=session, secret_box=context.secret_box, account_id=account_id, **body.model_dump()
        ),
    )
    return azure_blob_access_out(config)


@router.get("/accounts/{account_id}/azure-blob-access")
async def get_azure_blob_access(account_id: str, session: SessionDep) -> dict[str, Any]:
    config = await bucket_access.get_azure_blob_access(session=session, account_id=account_id)
    if config is None:
        raise HTTPException(404, "no Azure Blob access configured")
    return azure_blob_access_out(config)


@router.delete("/accounts/{account_id}/azure-blob-access", status_code=204)
async def delete_azure_blob_access(account_id: str, session: SessionDep) -> None:
    removed = await _commit(
        session, lambda: bucket_access.delete_azure_blob_access(session=session, account_id=account_id)
    )
    if not removed:
        raise HTTPException(404, "no Azure Blob access configured")
