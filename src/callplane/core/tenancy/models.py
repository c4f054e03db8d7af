"""Who owns what: accounts (the tenant boundary), organizations inside them, campaigns, tokens."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from callplane.db.base import Base, new_id, utcnow


class AccountKind(StrEnum):
    """A call-tracking network (single-call ingestion) or a partner (batch ingestion)."""

    NETWORK = "network"
    PARTNER = "partner"


class OrganizationKind(StrEnum):
    ADVERTISER = "advertiser"
    TENANT = "tenant"
    SUB_TENANT = "sub_tenant"


class CampaignKind(StrEnum):
    EXTERNAL_ONLY = "external_only"
    STANDARD = "standard"


class Account(Base):
    """The tenant boundary: nothing is ever visible across two accounts."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(255))
    default_language_code: Mapped[str] = mapped_column(String(16), default="en-US")
    language_codes: Mapped[list[str]] = mapped_column(default=list)
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    ingestion_enabled: Mapped[bool] = mapped_column(default=True)
    rate_limit_per_minute: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("kind", "external_id"),)


class Organization(Base):
    """A unit inside an account: an advertiser, a partner's tenant or a tenant's sub-tenant."""

    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    # parent_id, or the account id for top-level units: a non-null key so uniqueness holds on both databases.
    scope_key: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("scope_key", "kind", "external_id"),)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16), default=CampaignKind.EXTERNAL_ONLY)
    # Either a transcription product or at least one voice signal turns transcription on.
    transcription_enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("account_id", "external_id"),)


class SignalDefinition(Base):
    __tablename__ = "signal_definitions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    name_key: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    phrases: Mapped[dict[str, Any]] = mapped_column(default=dict)
    examples: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("account_id", "name_key"),)


class CustomDataField(Base):
    __tablename__ = "custom_data_fields"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    api_name: Mapped[str] = mapped_column(String(255))
    api_name_key: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("account_id", "api_name_key"),)


class ApiToken(Base):
    """A bearer credential. Only its SHA-256 is stored: tokens are 256-bit random, so a slow hash adds nothing."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    organization_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class RecordingAuthMethod(StrEnum):
    BEARER = "bearer"
    QUERY = "query"
    HEADER = "header"


class RecordingAuthConfig(Base):
    """How to authenticate when fetching a customer's recording; the secret is encrypted at rest."""

    __tablename__ = "recording_auth_configs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255), default="")
    method: Mapped[str] = mapped_column(String(16))
    parameter_name: Mapped[str] = mapped_column(String(255), default="")
    secret_ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_recording_auth_configs_account", "account_id"),)


class SftpAccessConfig(Base):
    """An account's direct SFTP access to its recordings (for calls submitted with recording_filename).

    The server's host key is pinned, never learned on first use; credentials are encrypted at rest.
    """

    __tablename__ = "sftp_access_configs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(default=22)
    username: Mapped[str] = mapped_column(String(255))
    known_host_key: Mapped[str] = mapped_column(Text)
    base_dir: Mapped[str] = mapped_column(Text, default=".")
    password_ciphertext: Mapped[str | None] = mapped_column(Text)
    private_key_ciphertext: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
