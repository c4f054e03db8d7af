"""Bearer-token authentication for the native API."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from callplane.core.tenancy.schemas import Principal
from callplane.surfaces.context import ContextDep
from callplane.surfaces.http import bearer_token


async def require_principal(request: Request, context: ContextDep) -> Principal:
    token = bearer_token(request)
    if token:
        async with context.sessions() as session:
            principal = await context.lookups.principal_for_token(session, token)
        if principal is not None:
            return principal
    raise HTTPException(401, "invalid or missing API token", headers={"WWW-Authenticate": "Bearer"})


PrincipalDep = Annotated[Principal, Depends(require_principal)]
