"""`callplane admin cc-*`: a contact center set up from the command line, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from callplane.cli import app
from callplane.testing.server import DEFAULT_POSTGRES_ADMIN_URL, scratch_postgres_database


def _run(*args: str) -> Any:
    result = CliRunner().invoke(app, ["admin", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_cli_sets_up_agents_menus_numbers_and_tickets(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with contextlib.ExitStack() as stack:
        monkeypatch.setenv("CALLPLANE_ENVIRONMENT", "test")
        monkeypatch.setenv("CALLPLANE_DATA_DIR", str(tmp_path / "data"))
        if database == "postgresql":
            admin_url = os.environ.get("CALLPLANE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
            monkeypatch.setenv("CALLPLANE_DATABASE_URL", stack.enter_context(scratch_postgres_database(admin_url)))
        account = _run("create-account", "--kind", "network", "--name", "Acme", "--external-id", "acme")["id"]
        agent = _run(
            "cc-create-agent", "--account-id", account, "--email", "Ada@Acme.io", "--endpoint-user", "ada",
            "--endpoint-host", "10.0.0.5:5060", "--first-name", "Ada", "--no-can-place-calls",
        )  # fmt: skip
        assert agent["email"] == "ada@acme.io" and agent["status"] == "unavailable" and not agent["can_place_calls"]
        available = _run(
            "cc-set-agent-status", "--account-id", account, "--agent-id", str(agent["id"]), "--status", "available"
        )
        assert available["status"] == "available" and available["last_idle_at"]
        number = _run("cc-create-outbound-number", "--account-id", account, "--number", "+1 339-219-5276")
        assert number["number"] == "+13392195276" and number["is_default"]
        menu = _run(
            "cc-create-menu", "--account-id", account, "--name", "Support", "--language", "en", "--language", "de",
            "--agent-id", str(agent["id"]), "--outbound-number-id", str(number["id"]),
        )  # fmt: skip
        assert menu["languages"] == ["en", "de"] and menu["agent_ids"] == [agent["id"]]
        closed = _run(
            "cc-set-menu-state", "--account-id", account, "--menu-id", str(menu["id"]), "--state", "after_hours"
        )
        assert closed["state"] == "after_hours"
        ticket = _run(
            "cc-create-crm-ticket", "--account-id", account, "--ticket-id", "71450", "--out-contact-id", "c1",
            "--number", "+1 859-657-9625",
        )  # fmt: skip
        assert ticket["number"] == "+18596579625"
        listed = _run("cc-list", "--account-id", account)
        assert [a["id"] for a in listed["agents"]] == [agent["id"]]
        assert [m["id"] for m in listed["menus"]] == [menu["id"]]
        assert [n["id"] for n in listed["outbound_numbers"]] == [number["id"]]
        refused = CliRunner().invoke(
            app, ["admin", "cc-create-outbound-number", "--account-id", account, "--number", "12"]
        )
        assert refused.exit_code != 0
