"""Who calls the Zipteams batch API: a bearer token (or `x-api-key`) and the partner, tenant and sub-tenant headers."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from callplane.surfaces.http import bearer_token


@dataclass(frozen=True, slots=True)
class Caller:
    token: str | None
    partner_id: str
    tenant_id: str
    sub_tenant_id: str


def caller(request: Request) -> Caller:
    headers = request.headers
    return Caller(
        token=bearer_token(request) or headers.get("x-api-key"),
        partner_id=headers.get("x-partner-id", "").strip(),
        tenant_id=headers.get("x-tenant-id", "").strip(),
        sub_tenant_id=headers.get("x-sub-tenant-id", "").strip(),
    )
