"""Who calls the Invoca APIs: the ``oauth_token`` in the JSON body, the query string, or a header; and the preamble
every Invoca write route starts with (the body and the token, read once)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.tenancy.schemas import Principal
from callplane.core.tenancy.service import TenancyLookups
from callplane.surfaces.http import NUL_MESSAGE, JsonBodyError, bearer_token, read_json


def oauth_token(request: Request, body: object) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("oauth_token"), str) and body["oauth_token"]:
        return str(body["oauth_token"])
    return request.query_params.get("oauth_token") or bearer_token(request)


@dataclass(frozen=True, slots=True)
class InvocaRequest:
    """A write request's JSON body (None when it cannot be read: `unreadable` says why) and its token."""

    body: Any
    unreadable: str
    token: str | None

    async def principal(self, session: AsyncSession, lookups: TenancyLookups) -> Principal | None:
        """The token's principal; None without a token or for an unknown one (the route answers 401)."""
        return await lookups.principal_for_token(session, self.token) if self.token else None


async def read_request(request: Request) -> InvocaRequest:
    """The body and token of a write route. Called by the routes rather than declared with `Depends`: on the
    ingestion hot path, dependency injection costs a measurable share of each request. The body is read before
    authenticating because the token may be in it."""
    unreadable = "request body must be JSON"
    try:
        body = await read_json(request)
    except JsonBodyError as error:
        body = None
        if error.reason == NUL_MESSAGE:
            unreadable = f"request body {NUL_MESSAGE}"
    return InvocaRequest(body=body, unreadable=unreadable, token=oauth_token(request, body))
