"""`callplane admin *-promo-number(s)` and `set-custom-data`: call tracking set up from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from callplane.cli import app


def _run(*args: str, ok: bool = True) -> Any:
    result = CliRunner().invoke(app, ["admin", *args])
    if not ok:
        assert result.exit_code != 0, result.output
        return result
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_the_cli_manages_promo_numbers_and_marketing_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLPLANE_ENVIRONMENT", "test")
    monkeypatch.setenv("CALLPLANE_DATA_DIR", str(tmp_path / "data"))
    account = _run("create-account", "--kind", "network", "--name", "Acme", "--external-id", "acme")["id"]
    advertiser = _run("create-organization", "--account-id", account, "--kind", "advertiser", "--external-id", "adv-1")[
        "id"
    ]
    campaign = _run("create-campaign", "--account-id", account, "--organization-id", advertiser, "--external-id", "86")[
        "id"
    ]
    _run("create-custom-data-field", "--account-id", account, "--api-name", "channel")
    promo = _run(
        "create-promo-number", "--account-id", account, "--campaign-id", campaign, "--number", "888-555-0142",
        "--destination", "sip:agent@10.0.0.5:5060", "--external-id", "pn-1", "--description", "Radio",
    )  # fmt: skip
    assert (promo["number"], promo["destination_type"], promo["external_id"]) == ("+18885550142", "SIP", "pn-1")
    assert promo["record"] is True and promo["configuration_id"]
    values = _run(
        "set-custom-data", "--account-id", account, "--owner-type", "promo_number", "--owner-id", promo["id"],
        "--value", "channel=radio",
    )  # fmt: skip
    assert values["values"] == {"channel": "radio"}
    network = _run("set-custom-data", "--account-id", account, "--owner-type", "network", "--value", "channel=web")
    assert (network["owner_id"], network["values"]) == (account, {"channel": "web"})
    assert [p["id"] for p in _run("list-promo-numbers", "--account-id", account)] == [promo["id"]]
    refused = _run(
        "create-promo-number", "--account-id", account, "--campaign-id", campaign, "--number", "+18885550142",
        "--destination", "sip:agent@10.0.0.5", ok=False,
    )  # fmt: skip
    assert "already exists" in str(refused.exception)
    assert _run("delete-promo-number", "--account-id", account, "--promo-number-id", promo["id"])["id"] == promo["id"]
    assert _run("list-promo-numbers", "--account-id", account) == []
