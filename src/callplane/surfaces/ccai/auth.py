"""Who calls the CCAI Platform API: HTTP Basic credentials carrying one of our API tokens, with the rate limit."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Request

from callplane.core.tenancy.schemas import Principal
from callplane.surfaces.ccai.errors import CcaiError
from callplane.surfaces.context import ContextDep


def _credentials(request: Request) -> list[str]:
    """Candidate API tokens from `Authorization: Basic base64(user:password)`: the password (the API token,
    with the subdomain as user), or the user when the password is empty."""
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return []
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return []
    user, _, password = decoded.partition(":")
    return [token for token in (password, user) if token]


async def require_principal(request: Request, context: ContextDep) -> Principal:
    """The account of the API token in the Basic credentials, with its per-minute limit applied (429)."""
    found = None
    async with context.sessions() as session:
        for token in _credentials(request):
            found = await context.lookups.principal_for_token(session, token)
            if found is not None:
                break
    if found is None:
        raise CcaiError(401, "Unauthorized", headers={"WWW-Authenticate": 'Basic realm="callplane"'})
    limit = found.account.rate_limit_per_minute
    if limit is not None:
        retry_after = context.rate_limiter.hit(f"ccai:{found.account.id}", limit)
        if retry_after is not None:
            raise CcaiError(429, "Too many requests", headers={"Retry-After": str(int(retry_after))})
    return found


PrincipalDep = Annotated[Principal, Depends(require_principal)]
