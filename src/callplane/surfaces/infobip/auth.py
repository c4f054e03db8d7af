"""Who calls the Infobip Calls API: `Authorization: App <key>` (or `Bearer <key>`), with the account's rate limit."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from callplane.core.tenancy.schemas import Principal
from callplane.surfaces.context import ContextDep
from callplane.surfaces.infobip.errors import InfobipError

AUTH_SCHEMES = ("app", "bearer")


def api_key(request: Request) -> str | None:
    """The key from `Authorization: App <key>` (or `Bearer <key>`: the same API token)."""
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() in AUTH_SCHEMES and value.strip():
        return value.strip()
    return None


async def require_voice_principal(request: Request, context: ContextDep) -> Principal:
    """The calling account, from one of our hashed API tokens, with its per-minute limit applied."""
    key = api_key(request)
    principal = None
    if key:
        async with context.sessions() as session:
            principal = await context.lookups.principal_for_token(session, key)
    if principal is None:
        raise InfobipError(401, "Invalid login details", headers={"WWW-Authenticate": "App"})
    limit = principal.account.rate_limit_per_minute
    if limit is not None:
        retry_after = context.rate_limiter.hit(f"calls:{principal.account.id}", limit)
        if retry_after is not None:
            raise InfobipError(429, "Too many requests", headers={"Retry-After": str(int(retry_after))})
    return principal


VoicePrincipalDep = Annotated[Principal, Depends(require_voice_principal)]
