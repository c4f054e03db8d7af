"""Create and look up accounts, organizations, campaigns, definitions and tokens."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.tenancy.cache import TtlCache
from callplane.core.tenancy.errors import AccountNotFound, AlreadyExists, OrganizationNotFound
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
from callplane.core.tenancy.schemas import AccountCatalog, AccountInfo, CampaignInfo, Principal
from callplane.core.tenancy.secrets_box import SecretBox
from callplane.core.tenancy.tokens import generate_token, hash_token
from callplane.db.base import utcnow
from callplane.errors import InvalidInput

SUPPORTED_LANGUAGE_CODES = ("en-US", "en-GB", "es-ES", "fr-FR")


class TenancyLookups:
    """Cached reads used on every request; admin writes in this process clear the caches."""

    def __init__(self, ttl_seconds: float) -> None:
        self.principals = TtlCache(ttl_seconds)
        self.campaigns = TtlCache(ttl_seconds)
        self.catalogs = TtlCache(ttl_seconds)

    def invalidate(self) -> None:
        self.principals.clear()
        self.campaigns.clear()
        self.catalogs.clear()

    def cached_principal(self, token: str) -> Principal | None:
        """The token's principal when it is cached: a read-only request then needs no ORM session for it."""
        return self.principals.get(hash_token(token))

    async def principal_for_token(self, session: AsyncSession, token: str) -> Principal | None:
        token_hash = hash_token(token)
        cached = self.principals.get(token_hash)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        principal = await _load_principal(session, token_hash)
        if principal is not None:
            self.principals.put(token_hash, principal)
        return principal

    async def campaign(self, session: AsyncSession, account_id: str, external_id: str) -> CampaignInfo | None:
        key = (account_id, external_id)
        cached = self.campaigns.get(key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        row = await session.scalar(
            select(Campaign).where(Campaign.account_id == account_id, Campaign.external_id == external_id)
        )
        if row is None:
            return None
        info = CampaignInfo(
            id=row.id,
            account_id=row.account_id,
            organization_id=row.organization_id,
            external_id=row.external_id,
            name=row.name,
            kind=row.kind,
            transcription_enabled=row.transcription_enabled,
        )
        self.campaigns.put(key, info)
        return info

    async def catalog(self, session: AsyncSession, account_id: str) -> AccountCatalog:
        cached = self.catalogs.get(account_id)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        signals = (
            await session.execute(
                select(SignalDefinition.name_key, SignalDefinition.id, SignalDefinition.name).where(
                    SignalDefinition.account_id == account_id
                )
            )
        ).all()
        fields = (
            await session.execute(
                select(CustomDataField.api_name_key, CustomDataField.id, CustomDataField.api_name).where(
                    CustomDataField.account_id == account_id
                )
            )
        ).all()
        auth_ids = await session.scalars(
            select(RecordingAuthConfig.id).where(RecordingAuthConfig.account_id == account_id)
        )
        catalog = AccountCatalog(
            signals={key: (id_, name) for key, id_, name in signals},
            custom_fields={key: (id_, name) for key, id_, name in fields},
            recording_auth_config_ids=frozenset(auth_ids),
        )
        self.catalogs.put(account_id, catalog)
        return catalog


def account_info(account: Account) -> AccountInfo:
    return AccountInfo(
        id=account.id,
        kind=account.kind,
        name=account.name,
        external_id=account.external_id,
        default_language_code=account.default_language_code,
        language_codes=tuple(account.language_codes or ()),
        time_zone=account.time_zone,
        ingestion_enabled=account.ingestion_enabled,
        rate_limit_per_minute=account.rate_limit_per_minute,
    )


async def _load_principal(session: AsyncSession, token_hash: str) -> Principal | None:
    row = (
        await session.execute(
            select(ApiToken, Account)
            .join(Account, Account.id == ApiToken.account_id)
            .where(ApiToken.token_hash == token_hash, ApiToken.revoked_at.is_(None))
        )
    ).first()
    if row is None:
        return None
    token, account = row
    scope = None
    if token.organization_id is not None:
        scope = frozenset(await organization_subtree(session, account.id, token.organization_id))
    return Principal(
        token_id=token.id,
        account=account_info(account),
        organization_id=token.organization_id,
        organization_scope=scope,
    )


async def organization_subtree(session: AsyncSession, account_id: str, root_id: str) -> set[str]:
    rows = (
        await session.execute(
            select(Organization.id, Organization.parent_id).where(Organization.account_id == account_id)
        )
    ).all()
    children: dict[str | None, list[str]] = {}
    for org_id, parent_id in rows:
        children.setdefault(parent_id, []).append(org_id)
    found, frontier = {root_id}, [root_id]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


async def _flush_unique(session: AsyncSession, what: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(f"{what} already exists") from exc


def _check_languages(default_language_code: str, language_codes: Iterable[str]) -> None:
    for code in [default_language_code, *language_codes]:
        if code not in SUPPORTED_LANGUAGE_CODES:
            raise InvalidInput(f"language code {code!r} is not supported ({', '.join(SUPPORTED_LANGUAGE_CODES)})")


def _check_time_zone(time_zone: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"unknown time zone {time_zone!r}") from exc


async def create_account(
    *,
    session: AsyncSession,
    kind: AccountKind,
    name: str,
    external_id: str | None = None,
    default_language_code: str = "en-US",
    language_codes: list[str] | None = None,
    time_zone: str = "UTC",
    ingestion_enabled: bool = True,
    rate_limit_per_minute: int | None = None,
) -> Account:
    _check_languages(default_language_code, language_codes or [])
    _check_time_zone(time_zone)
    account = Account(
        kind=kind,
        name=name,
        external_id=external_id,
        default_language_code=default_language_code,
        language_codes=list(language_codes or [default_language_code]),
        time_zone=time_zone,
        ingestion_enabled=ingestion_enabled,
        rate_limit_per_minute=rate_limit_per_minute,
    )
    session.add(account)
    await _flush_unique(session, f"{kind} {external_id!r}")
    return account


async def update_account(*, session: AsyncSession, account_id: str, changes: dict[str, Any]) -> Account:
    account = await get_account(session=session, account_id=account_id)
    if "default_language_code" in changes or "language_codes" in changes:
        _check_languages(
            changes.get("default_language_code", account.default_language_code),
            changes.get("language_codes", account.language_codes),
        )
    if "time_zone" in changes:
        _check_time_zone(changes["time_zone"])
    for key, value in changes.items():
        setattr(account, key, value)
    await session.flush()
    return account


async def get_account(*, session: AsyncSession, account_id: str) -> Account:
    account = await session.get(Account, account_id)
    if account is None:
        raise AccountNotFound()
    return account


async def list_accounts(*, session: AsyncSession) -> list[Account]:
    return list(await session.scalars(select(Account).order_by(Account.created_at)))


async def create_organization(
    *,
    session: AsyncSession,
    account_id: str,
    kind: OrganizationKind,
    external_id: str,
    name: str = "",
    parent_id: str | None = None,
) -> Organization:
    await get_account(session=session, account_id=account_id)
    if parent_id is not None:
        parent = await session.get(Organization, parent_id)
        if parent is None or parent.account_id != account_id:
            raise OrganizationNotFound("parent organization does not exist in this account")
    if kind == OrganizationKind.SUB_TENANT and parent_id is None:
        raise InvalidInput("a sub-tenant needs a parent tenant")
    organization = Organization(
        account_id=account_id,
        parent_id=parent_id,
        scope_key=parent_id or account_id,
        kind=kind,
        external_id=external_id,
        name=name or external_id,
    )
    session.add(organization)
    await _flush_unique(session, f"{kind} {external_id!r}")
    return organization


async def find_organization(
    *, session: AsyncSession, account_id: str, kind: OrganizationKind, external_id: str, parent_id: str | None
) -> Organization | None:
    return await session.scalar(
        select(Organization).where(
            Organization.scope_key == (parent_id or account_id),
            Organization.kind == kind,
            Organization.external_id == external_id,
        )
    )


async def list_organizations(*, session: AsyncSession, account_id: str) -> list[Organization]:
    return list(
        await session.scalars(
            select(Organization).where(Organization.account_id == account_id).order_by(Organization.created_at)
        )
    )


async def create_campaign(
    *,
    session: AsyncSession,
    account_id: str,
    organization_id: str,
    external_id: str,
    name: str = "",
    kind: CampaignKind = CampaignKind.EXTERNAL_ONLY,
    transcription_enabled: bool = True,
) -> Campaign:
    organization = await session.get(Organization, organization_id)
    if organization is None or organization.account_id != account_id:
        raise OrganizationNotFound()
    campaign = Campaign(
        account_id=account_id,
        organization_id=organization_id,
        external_id=external_id,
        name=name or external_id,
        kind=kind,
        transcription_enabled=transcription_enabled,
    )
    session.add(campaign)
    await _flush_unique(session, f"campaign {external_id!r}")
    return campaign


async def list_campaigns(*, session: AsyncSession, account_id: str) -> list[Campaign]:
    return list(
        await session.scalars(select(Campaign).where(Campaign.account_id == account_id).order_by(Campaign.created_at))
    )


async def create_signal_definition(
    *,
    session: AsyncSession,
    account_id: str,
    name: str,
    description: str = "",
    phrases: dict[str, list[str]] | None = None,
    examples: list[str] | None = None,
) -> SignalDefinition:
    await get_account(session=session, account_id=account_id)
    if not name.strip():
        raise InvalidInput("signal name must not be empty")
    definition = SignalDefinition(
        account_id=account_id,
        name=name.strip(),
        name_key=name.strip().casefold(),
        description=description,
        phrases=phrases or {},
        examples=examples or [],
    )
    session.add(definition)
    await _flush_unique(session, f"signal {name!r}")
    return definition


async def list_signal_definitions(*, session: AsyncSession, account_id: str) -> list[SignalDefinition]:
    return list(
        await session.scalars(
            select(SignalDefinition).where(SignalDefinition.account_id == account_id).order_by(SignalDefinition.name)
        )
    )


async def create_custom_data_field(
    *, session: AsyncSession, account_id: str, api_name: str, display_name: str = ""
) -> CustomDataField:
    await get_account(session=session, account_id=account_id)
    if not api_name.strip():
        raise InvalidInput("custom data field name must not be empty")
    field = CustomDataField(
        account_id=account_id,
        api_name=api_name.strip(),
        api_name_key=api_name.strip().casefold(),
        display_name=display_name or api_name.strip(),
    )
    session.add(field)
    await _flush_unique(session, f"custom data field {api_name!r}")
    return field


async def list_custom_data_fields(*, session: AsyncSession, account_id: str) -> list[CustomDataField]:
    return list(
        await session.scalars(
            select(CustomDataField).where(CustomDataField.account_id == account_id).order_by(CustomDataField.api_name)
        )
    )


async def issue_token(
    *, session: AsyncSession, account_id: str, organization_id: str | None = None, name: str = ""
) -> tuple[ApiToken, str]:
    """Create a token and return it with its plaintext, which is never stored and never shown again."""
    await get_account(session=session, account_id=account_id)
    if organization_id is not None:
        organization = await session.get(Organization, organization_id)
        if organization is None or organization.account_id != account_id:
            raise OrganizationNotFound()
    plaintext = generate_token()
    token = ApiToken(
        account_id=account_id,
        organization_id=organization_id,
        name=name,
        token_hash=hash_token(plaintext),
        token_prefix=plaintext[:10],
    )
    session.add(token)
    await session.flush()
    return token, plaintext


async def revoke_token(*, session: AsyncSession, account_id: str, token_id: str) -> ApiToken:
    token = await session.get(ApiToken, token_id)
    if token is None or token.account_id != account_id:
        raise AccountNotFound("token does not exist in this account")
    token.revoked_at = utcnow()
    await session.flush()
    return token


async def list_tokens(*, session: AsyncSession, account_id: str) -> list[ApiToken]:
    return list(
        await session.scalars(select(ApiToken).where(ApiToken.account_id == account_id).order_by(ApiToken.created_at))
    )


async def create_recording_auth_config(
    *,
    session: AsyncSession,
    secret_box: SecretBox,
    account_id: str,
    method: RecordingAuthMethod,
    secret: str,
    parameter_name: str = "",
    name: str = "",
) -> RecordingAuthConfig:
    await get_account(session=session, account_id=account_id)
    if method in (RecordingAuthMethod.QUERY, RecordingAuthMethod.HEADER) and not parameter_name:
        raise InvalidInput(f"a {method} auth configuration needs a parameter name")
    if not secret:
        raise InvalidInput("the secret must not be empty")
    config = RecordingAuthConfig(
        account_id=account_id,
        name=name,
        method=method,
        parameter_name=parameter_name,
        secret_ciphertext=secret_box.encrypt(secret),
    )
    session.add(config)
    await session.flush()
    return config


async def list_recording_auth_configs(*, session: AsyncSession, account_id: str) -> list[RecordingAuthConfig]:
    return list(await session.scalars(select(RecordingAuthConfig).where(RecordingAuthConfig.account_id == account_id)))


async def set_sftp_access(
    *,
    session: AsyncSession,
    secret_box: SecretBox,
    account_id: str,
    host: str,
    username: str,
    known_host_key: str,
    port: int = 22,
    base_dir: str = ".",
    password: str | None = None,
    private_key: str | None = None,
) -> SftpAccessConfig:
    """Create or replace the account's SFTP access; at least one credential is required."""
    await get_account(session=session, account_id=account_id)
    if not password and not private_key:
        raise InvalidInput("SFTP access needs a password or a private key")
    if not known_host_key.strip():
        raise InvalidInput("SFTP access needs the server's host key (it is pinned, never learned)")
    config = await session.scalar(select(SftpAccessConfig).where(SftpAccessConfig.account_id == account_id))
    if config is None:
        config = SftpAccessConfig(account_id=account_id)
        session.add(config)
    config.host, config.port, config.username = host, port, username
    config.known_host_key, config.base_dir = known_host_key.strip(), base_dir
    config.password_ciphertext = secret_box.encrypt(password) if password else None
    config.private_key_ciphertext = secret_box.encrypt(private_key) if private_key else None
    await session.flush()
    return config


async def get_sftp_access(*, session: AsyncSession, account_id: str) -> SftpAccessConfig | None:
    return await session.scalar(select(SftpAccessConfig).where(SftpAccessConfig.account_id == account_id))
