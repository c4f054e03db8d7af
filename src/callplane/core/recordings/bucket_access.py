"""Direct access to a customer's own S3 bucket or Azure Blob container (Invoca's "Direct Recording Access to
S3/Azure/SFTP"): the per-account configuration rows, and the admin operations on them. Keys and SAS tokens are
encrypted at rest like SFTP's."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.tenancy.service import get_account
from callplane.db.base import Base, new_id, utcnow
from callplane.errors import InvalidInput

if TYPE_CHECKING:  # the fetchers pull in boto3 and the Azure SDK: imported where an access is built
    from callplane.core.recordings.fetch_azure import AzureBlobAccess, AzureCredentialKind
    from callplane.core.recordings.fetch_s3 import S3Access


class S3AccessConfig(Base):
    """An account's direct S3 access (for calls submitted with recording_filename, or none: the external id)."""

    __tablename__ = "s3_access_configs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), unique=True)
    bucket: Mapped[str] = mapped_column(String(255))
    region: Mapped[str | None] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(Text, default="")
    endpoint_url: Mapped[str | None] = mapped_column(Text)  # unset: AWS; set for S3-compatible services
    access_key_id: Mapped[str] = mapped_column(String(255))
    secret_access_key_ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


async def set_s3_access(
    *,
    session: AsyncSession,
    secret_box: SecretBox,
    account_id: str,
    bucket: str,
    access_key_id: str,
    secret_access_key: str,
    region: str | None = None,
    prefix: str = "",
    endpoint_url: str | None = None,
) -> S3AccessConfig:
    """Create or replace the account's S3 access."""
    await get_account(session=session, account_id=account_id)
    if not bucket.strip() or not access_key_id.strip() or not secret_access_key:
        raise InvalidInput("S3 access needs a bucket, an access key id and a secret access key")
    if endpoint_url is not None and not endpoint_url.startswith(("https://", "http://")):
        raise InvalidInput("the S3 endpoint URL must start with https:// (or http:// for an allow-listed host)")
    config = await get_s3_access(session=session, account_id=account_id)
    if config is None:
        config = S3AccessConfig(account_id=account_id)
        session.add(config)
    config.bucket, config.region, config.prefix = bucket.strip(), region or None, prefix.strip("/")
    config.endpoint_url, config.access_key_id = endpoint_url or None, access_key_id.strip()
    config.secret_access_key_ciphertext = secret_box.encrypt(secret_access_key)
    await session.flush()
    return config


async def get_s3_access(*, session: AsyncSession, account_id: str) -> S3AccessConfig | None:
    return await session.scalar(select(S3AccessConfig).where(S3AccessConfig.account_id == account_id))


async def delete_s3_access(*, session: AsyncSession, account_id: str) -> bool:
    config = await get_s3_access(session=session, account_id=account_id)
    if config is None:
        return False
    await session.delete(config)
    await session.flush()
    return True


def s3_access_of(config: S3AccessConfig, secret_box: SecretBox) -> S3Access:
    """The fetcher's view of a configuration, with the secret decrypted (never logged: S3Access redacts it)."""
    from callplane.core.recordings.fetch_s3 import S3Access

    return S3Access(
        bucket=config.bucket,
        region=config.region,
        prefix=config.prefix,
        endpoint_url=config.endpoint_url,
        access_key_id=config.access_key_id,
        secret_access_key=secret_box.decrypt(config.secret_access_key_ciphertext),
    )


class AzureBlobAccessConfig(Base):
    """An account's direct Azure Blob access: a container in a storage account, read with its key or a SAS."""

    __tablename__ = "azure_blob_access_configs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), unique=True)
    storage_account: Mapped[str] = mapped_column(String(255))
    container: Mapped[str] = mapped_column(String(255))
    prefix: Mapped[str] = mapped_column(Text, default="")
    endpoint_url: Mapped[str | None] = mapped_column(Text)  # unset: https://<account>.blob.core.windows.net
    credential_kind: Mapped[str] = mapped_column(String(8))  # "key" or "sas"
    credential_ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


async def set_azure_blob_access(
    *,
    session: AsyncSession,
    secret_box: SecretBox,
    account_id: str,
    storage_account: str,
    container: str,
    credential_kind: AzureCredentialKind,
    credential: str,
    prefix: str = "",
    endpoint_url: str | None = None,
) -> AzureBlobAccessConfig:
    """Create or replace the account's Azure Blob access."""
    await get_account(session=session, account_id=account_id)
    if not storage_account.strip() or not container.strip() or not credential.strip():
        raise InvalidInput("Azure Blob access needs a storage account, a container and an account key or SAS token")
    if credential_kind not in ("key", "sas"):
        raise InvalidInput("the Azure credential kind is 'key' (an account key) or 'sas' (a SAS token)")
    if endpoint_url is not None and not endpoint_url.startswith(("https://", "http://")):
        raise InvalidInput("the Azure blob endpoint URL must start with https:// (or http:// for an allow-listed host)")
    config = await get_azure_blob_access(session=session, account_id=account_id)
    if config is None:
        config = AzureBlobAccessConfig(account_id=account_id)
        session.add(config)
    config.storage_account, config.container = storage_account.strip(), container.strip()
    config.prefix, config.endpoint_url = prefix.strip("/"), endpoint_url or None
    config.credential_kind = credential_kind
    config.credential_ciphertext = secret_box.encrypt(credential.strip())
    await session.flush()
    return config


async def get_azure_blob_access(*, session: AsyncSession, account_id: str) -> AzureBlobAccessConfig | None:
    return await session.scalar(select(AzureBlobAccessConfig).where(AzureBlobAccessConfig.account_id == account_id))


async def delete_azure_blob_access(*, session: AsyncSession, account_id: str) -> bool:
    config = await get_azure_blob_access(session=session, account_id=account_id)
    if config is None:
        return False
    await session.delete(config)
    await session.flush()
    return True


def azure_blob_access_of(config: AzureBlobAccessConfig, secret_box: SecretBox) -> AzureBlobAccess:
    from callplane.core.recordings.fetch_azure import AzureBlobAccess

    return AzureBlobAccess(
        account_name=config.storage_account,
        container=config.container,
        prefix=config.prefix,
        endpoint_url=config.endpoint_url,
        credential_kind="sas" if config.credential_kind == "sas" else "key",
        credential=secret_box.decrypt(config.credential_ciphertext),
    )
