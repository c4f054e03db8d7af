"""The console's sign-in session: an encrypted, expiring cookie that names the API token used to sign in.

The cookie never holds the token itself: a tenant's session names the token's id (checked on every request, so a
revoked token ends its sessions at once), the admin's a digest of the admin token (a rotated admin token ends
them). Fernet both authenticates and encrypts the cookie, with a key derived from the secret key for this use
only. Forms carry the session's CSRF token; the cookie is HttpOnly, SameSite=Strict and scoped to /console.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

COOKIE = "callplane_console"
LOGIN_COOKIE = "callplane_console_login"  # the sign-in form's CSRF token, before there is a session
COOKIE_PATH = "/console"
SESSION_SECONDS = 12 * 3600
ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: a tenant (one account, maybe one organization subtree) or the admin (every account)."""

    csrf: str
    account_id: str | None  # None: the admin token, which sees every account
    account_name: str
    token_id: str | None = None
    organization_scope: frozenset[str] | None = None  # None: the whole account

    @property
    def is_admin(self) -> bool:
        return self.account_id is None


@lru_cache(maxsize=8)
def _fernet(secret_key: str) -> Fernet:
    derived = hmac.new(secret_key.encode(), b"callplane console session cookie", hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(derived))


def admin_digest(admin_token: str) -> str:
    return hashlib.sha256(b"console:" + admin_token.encode()).hexdigest()[:32]


def seal(secret_key: str, *, subject: str, admin_token: str) -> tuple[str, str]:
    """A new session cookie value for `subject` (a token id, or ADMIN) and its CSRF token."""
    csrf = secrets.token_urlsafe(32)
    payload: dict[str, Any] = {"sub": subject, "csrf": csrf}
    if subject == ADMIN:
        payload["adm"] = admin_digest(admin_token)
    return _fernet(secret_key).encrypt(json.dumps(payload).encode()).decode(), csrf


def unseal(secret_key: str, value: str) -> dict[str, Any] | None:
    """The cookie's payload, or None when it was not made here, was altered or is older than SESSION_SECONDS."""
    try:
        data = json.loads(_fernet(secret_key).decrypt(value.encode(), ttl=SESSION_SECONDS))
    except (InvalidToken, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("sub"), str) or not isinstance(data.get("csrf"), str):
        return None
    return data


def same_secret(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())
