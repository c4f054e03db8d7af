"""Build tenants through the real admin API, the way an operator would."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Network:
    account_id: str
    advertiser_id: str
    campaign_id: str
    campaign_external_id: str
    token: str
    signals: list[str] = field(default_factory=list)
    custom_fields: list[str] = field(default_factory=list)


@dataclass
class Partner:
    account_id: str
    external_id: str
    tenant: str
    sub_tenant: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "x-partner-id": self.external_id,
            "x-tenant-id": self.tenant,
            "x-sub-tenant-id": self.sub_tenant,
        }


class Admin:
    def __init__(self, base_url: str, admin_token: str) -> None:
        self.client = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(f"/v1/admin{path}", json=body)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.patch(f"/v1/admin{path}", json=body)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def network(
        self,
        *,
        time_zone: str = "America/Los_Angeles",
        language_codes: list[str] | None = None,
        default_language_code: str = "en-US",
        campaign_kind: str = "external_only",
        transcription_enabled: bool = True,
        ingestion_enabled: bool = True,
    ) -> Network:
        suffix = secrets.token_hex(4)
        account = self.post(
            "/accounts",
            {
                "kind": "network",
                "name": f"Network {suffix}",
                "external_id": f"net-{suffix}",
                "time_zone": time_zone,
                "default_language_code": default_language_code,
                "language_codes": language_codes or [default_language_code],
                "ingestion_enabled": ingestion_enabled,
            },
        )
        advertiser = self.post(
            f"/accounts/{account['id']}/organizations", {"kind": "advertiser", "external_id": f"adv-{suffix}"}
        )
        campaign = self.post(
            f"/accounts/{account['id']}/campaigns",
            {
                "organization_id": advertiser["id"],
                "external_id": "86",
                "kind": campaign_kind,
                "transcription_enabled": transcription_enabled,
            },
        )
        self.post(f"/accounts/{account['id']}/signal-definitions", {"name": "Sale"})
        self.post(f"/accounts/{account['id']}/signal-definitions", {"name": "Free Trial"})
        self.post(f"/accounts/{account['id']}/custom-data-fields", {"api_name": "account_type"})
        token = self.post(f"/accounts/{account['id']}/tokens", {"name": "test"})["token"]
        return Network(
            account_id=account["id"],
            advertiser_id=advertiser["id"],
            campaign_id=campaign["id"],
            campaign_external_id="86",
            token=token,
            signals=["Sale", "Free Trial"],
            custom_fields=["account_type"],
        )

    def partner(self, *, rate_limit_per_minute: int | None = None) -> Partner:
        suffix = secrets.token_hex(4)
        external_id = f"p-{suffix}"
        account = self.post(
            "/accounts",
            {
                "kind": "partner",
                "name": f"Partner {suffix}",
                "external_id": external_id,
                "rate_limit_per_minute": rate_limit_per_minute,
            },
        )
        tenant = self.post(f"/accounts/{account['id']}/organizations", {"kind": "tenant", "external_id": "tenant1"})
        self.post(
            f"/accounts/{account['id']}/organizations",
            {"kind": "sub_tenant", "external_id": "subtenant1", "parent_id": tenant["id"]},
        )
        token = self.post(f"/accounts/{account['id']}/tokens", {"name": "test"})["token"]
        return Partner(
            account_id=account["id"], external_id=external_id, tenant="tenant1", sub_tenant="subtenant1", token=token
        )
