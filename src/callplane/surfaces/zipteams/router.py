"""Zipteams Batch Call Ingestion API: POST /partner/ingest/batch-call (also under /api/v1)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from callplane.core.ingestion import service as ingestion
from callplane.core.tenancy.access import check_partner_may_ingest, partner_sub_tenant
from callplane.errors import PermissionDenied
from callplane.observability.metrics import INGESTION_REJECTED
from callplane.surfaces.context import app_context
from callplane.surfaces.http import BodyTooLarge, JsonBodyError, JsonRoute, json_response, read_json
from callplane.surfaces.zipteams import errors
from callplane.surfaces.zipteams.auth import caller
from callplane.surfaces.zipteams.mapping import parse_batch

router = APIRouter(route_class=JsonRoute, tags=["Zipteams Batch Call Ingestion"])


@router.post("/partner/ingest/batch-call")
@router.post("/api/v1/partner/ingest/batch-call", include_in_schema=False)
async def ingest_batch(request: Request) -> Response:
    """Submit up to 50 finished calls; each is processed asynchronously and at most once."""
    context = app_context(request)
    settings = context.settings
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.batch_max_body_bytes:
        return errors.too_large()
    who = caller(request)
    async with context.sessions() as session, session.begin():
        principal = await context.lookups.principal_for_token(session, who.token) if who.token else None
        if principal is None:
            return errors.forbidden()
        try:
            check_partner_may_ingest(principal, who.partner_id)
        except PermissionDenied:
            return errors.forbidden()
        if not who.tenant_id:
            return errors.failure(400, "Tenant ID is required")
        if not who.sub_tenant_id:
            return errors.failure(400, "Sub-Tenant ID is required")
        limit = principal.account.rate_limit_per_minute or settings.batch_rate_limit_per_minute
        retry_after = context.rate_limiter.hit(f"batch:{principal.account.id}", limit)
        if retry_after is not None:
            return errors.rate_limited(retry_after)
        sub_tenant = await partner_sub_tenant(
            session=session, principal=principal, tenant_id=who.tenant_id, sub_tenant_id=who.sub_tenant_id
        )
        if sub_tenant is None:
            return errors.forbidden()
        try:
            body = await read_json(request, max_bytes=settings.batch_max_body_bytes)
        except BodyTooLarge:
            return errors.too_large()
        except JsonBodyError:
            return errors.validation_failed([{"field": "body", "message": "body must be valid JSON"}])
        submissions, field_errors = parse_batch(body)
        if field_errors:
            INGESTION_REJECTED.labels("batch", "invalid_input").inc()  # the only batch refusal core never sees
            return errors.validation_failed([error.as_dict() for error in field_errors])
        await ingestion.accept_batch(
            session=session,
            principal=principal,
            organization_id=sub_tenant.id,
            submissions=submissions,
            max_attempts=settings.job_max_attempts,
        )
    return json_response({"success": True})
