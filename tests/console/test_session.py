"""The console's session cookie, sign-in redirects and CSV cells, without a browser."""

from __future__ import annotations

import importlib

import pytest
from cryptography.fernet import Fernet

from callplane.surfaces.console import session as sessions

# The module, not the APIRouter its package exports under the same name.
router = importlib.import_module("callplane.surfaces.console.router")

KEY = Fernet.generate_key().decode()


def test_a_sealed_session_opens_only_with_its_key_and_unaltered() -> None:
    value, csrf = sessions.seal(KEY, subject="token-id", admin_token="admin")
    assert sessions.unseal(KEY, value) == {"sub": "token-id", "csrf": csrf}
    assert "token-id" not in value  # encrypted, not only signed
    assert sessions.unseal(Fernet.generate_key().decode(), value) is None
    altered = value[:-6] + ("A" if value[-6] != "A" else "B") + value[-5:]
    assert sessions.unseal(KEY, altered) is None
    assert sessions.unseal(KEY, "not a cookie") is None


def test_an_admin_session_names_a_digest_of_the_admin_token() -> None:
    value, _csrf = sessions.seal(KEY, subject=sessions.ADMIN, admin_token="the-admin-token")
    data = sessions.unseal(KEY, value)
    assert data is not None and data["adm"] == sessions.admin_digest("the-admin-token")
    assert data["adm"] != sessions.admin_digest("a-rotated-token")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/console/calls/abc?t=3", "/console/calls/abc?t=3"),
        ("https://evil.example/console/", "/console/calls"),
        ("//evil.example/console/", "/console/calls"),
        ("/console/\\evil", "/console/calls"),
        ("/v1/calls", "/console/calls"),
        (None, "/console/calls"),
    ],
)
def test_sign_in_only_returns_to_a_console_page(target: str | None, expected: str) -> None:
    assert router._safe_next(target) == expected


def test_csv_cells_never_start_a_formula() -> None:
    assert router._csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert router._csv_cell("-1+1") == "'-1+1"
    assert router._csv_cell("+12025550100") == "+12025550100"  # a phone number is a number, not a formula
    assert router._csv_cell("plain") == "plain"
    assert router._csv_cell(None) == ""
