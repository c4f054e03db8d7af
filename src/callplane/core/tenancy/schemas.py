"""Plain values the tenancy service hands to the rest of the core (no ORM objects leak out)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AccountInfo:
    id: str
    kind: str
    name: str
    external_id: str | None
    default_language_code: str
    language_codes: tuple[str, ...]
    time_zone: str
    ingestion_enabled: bool
    rate_limit_per_minute: int | None


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's account and, for a scoped token, the organization subtree it may see."""

    token_id: str
    account: AccountInfo
    organization_id: str | None = None
    organization_scope: frozenset[str] | None = None  # None: the whole account

    def may_see_organization(self, organization_id: str | None) -> bool:
        return self.organization_scope is None or organization_id in self.organization_scope


@dataclass(frozen=True)
class CampaignInfo:
    id: str
    account_id: str
    organization_id: str
    external_id: str
    name: str
    kind: str
    transcription_enabled: bool


@dataclass(frozen=True)
class AccountCatalog:
    """An account's signal and custom data definitions, keyed by their case-folded names."""

    signals: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (id, name)
    custom_fields: dict[str, tuple[str, str]] = field(default_factory=dict)
    recording_auth_config_ids: frozenset[str] = frozenset()
