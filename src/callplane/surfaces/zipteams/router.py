"""Zipteams Batch Call Ingestion API: POST /partner/ingest/batch-call (also under /api/v1)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from callplane.core.ingestion import service as ingestion
from callplane.core.tenancy.models import AccountKind, OrganizationKind
from callplane.core.tenancy.service import find_organization
from callplane.surfaces.context import app_context
from callplane.surfaces.http import BodyTooLarge, JsonBodyError, JsonRoute, bearer_token, json_response, read_json
from callplane.surfaces.zipteams.mapping import parse_batch

router = APIRouter(route_class=JsonRoute, tags=["Zipteams Batch Call Ingestion"])


def _failure(status_code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"success": False, "message": message}, status_code, headers)


@router.post("/partner/ingest/batch-call")
@router.post("/api/v1/partner/ingest/batch-call", include_in_schema=False)
async def ingest_batch(request: Request) -> Response:
    """Submit up to 50 finished calls; each is processed asynchronously and at most once."""
    context = app_context(request)
    settings = context.settings
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.batch_max_body_bytes:
        return _failure(413, "Payload too large. The maximum request payload size is 5MB.")
    token = bearer_token(request) or request.headers.get("x-api-key")
    partner_header = request.headers.get("x-partner-id", "").strip()
    tenant_header = request.headers.get("x-tenant-id", "").strip()
    sub_tenant_header = request.headers.get("x-sub-tenant-id", "").strip()
    async with context.sessions() as session, session.begin():
        principal = await context.lookups.principal_for_token(session, token) if token else None
        if (
            principal is None
            or principal.account.kind != AccountKind.PARTNER
            or not partner_header
            or partner_header != principal.account.external_id
            or not principal.account.ingestion_enabled
        ):
            return _failure(403, "Forbidden")
        if not tenant_header:
            return _failure(400, "Tenant ID is required")
        if not sub_tenant_header:
            return _failure(400, "Sub-Tenant ID is required")
        limit = principal.account.rate_limit_per_minute or settings.batch_rate_limit_per_minute
        retry_after = context.rate_limiter.hit(f"batch:{principal.account.id}", limit)
        if retry_after is not None:
            return _failure(
                429,
                f"Rate limit exceeded. Try again in {int(retry_after)} seconds.",
                {"Retry-After": str(int(retry_after))},
            )
        tenant = await find_organization(
            session=session,
            account_id=principal.account.id,
            kind=OrganizationKind.TENANT,
            external_id=tenant_header,
            parent_id=None,
        )
        sub_tenant = tenant and await find_organization(
            session=session,
            account_id=principal.account.id,
            kind=OrganizationKind.SUB_TENANT,
            external_id=sub_tenant_header,
            parent_id=tenant.id,
        )
        if sub_tenant is None or not principal.may_see_organization(sub_tenant.id):
            return _failure(403, "Forbidden")
        try:
            body = await read_json(request, max_bytes=settings.batch_max_body_bytes)
        except BodyTooLarge:
            return _failure(413, "Payload too large. The maximum request payload size is 5MB.")
        except JsonBodyError:
            return json_response(
                {
                    "success": False,
                    "message": "Validation failed",
                    "errors": [{"field": "body", "message": "body must be valid JSON"}],
                },
                422,
            )
        submissions, field_errors = parse_batch(body)
        if field_errors:
            return json_response(
                {
                    "success": False,
                    "message": "Validation failed",
                    "errors": [error.as_dict() for error in field_errors],
                },
                422,
            )
        await ingestion.accept_batch(
            session=session, principal=principal, organization_id=sub_tenant.id, submissions=submissions
        )
    return json_response({"success": True})
