"""Where Invoca clients put their token: ``oauth_token`` in the JSON body, the query string, or a header."""

from __future__ import annotations

from fastapi import Request

from callplane.surfaces.http import bearer_token


def oauth_token(request: Request, body: object) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("oauth_token"), str) and body["oauth_token"]:
        return str(body["oauth_token"])
    return request.query_params.get("oauth_token") or bearer_token(request)
