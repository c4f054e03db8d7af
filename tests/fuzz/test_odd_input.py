"""Odd input found by probing (issue 12): each is a 4xx in its surface's own error body, on both databases.

NUL in a path or query parameter (PostgreSQL text cannot hold one), NUL / lone surrogates / `1e400` / deep nesting in
JSON bodies, CCAI ids of 20 digits or Unicode digits, Infobip pages beyond 64 bits.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from callplane.media.audio import write_wav
from callplane.testing.factories import Admin, Network, Partner
from callplane.testing.server import RunningServer
from tests.conftest import ADMIN_TOKEN

INVOCA_VERSION = "2022-03-01"
NUL_TEXT = "must not contain a NUL character"


@dataclass
class Clients:
    native: httpx.Client
    admin: httpx.Client
    infobip: httpx.Client
    ccai: httpx.Client
    invoca: httpx.Client
    zipteams: httpx.Client
    partner: Partner
    network: Network


@pytest.fixture(scope="module")
def clients(server: RunningServer, admin: Admin) -> Iterator[Clients]:
    network: Network = admin.network()
    partner = admin.partner()
    basic = "Basic " + base64.b64encode(f"acme:{network.token}".encode()).decode()

    def client(headers: dict[str, str]) -> httpx.Client:
        return httpx.Client(base_url=server.base_url, headers=headers, timeout=30)

    made = Clients(
        native=client({"Authorization": f"Bearer {network.token}"}),
        admin=client({"Authorization": f"Bearer {ADMIN_TOKEN}"}),
        infobip=client({"Authorization": f"App {network.token}"}),
        ccai=client({"Authorization": basic}),
        invoca=client({"Authorization": f"Bearer {network.token}"}),
        zipteams=client(partner.headers),
        partner=partner,
        network=network,
    )
    yield made
    for http in (made.native, made.admin, made.infobip, made.ccai, made.invoca, made.zipteams):
        http.close()


JSON = {"content-type": "application/json"}


# ---- NUL in path and query parameters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "loc"),
    [
        ("/v1/calls?external_id=%00", ["query", "external_id"]),
        ("/v1/calls?status=a%00b&origin=x", ["query", "status"]),
        ("/v1/calls/%00", ["path", "path"]),
        ("/v1/webhook-deliveries?status=%00", ["query", "status"]),
    ],
)
def test_nul_in_native_parameters_is_a_422(clients: Clients, path: str, loc: list[str]) -> None:
    response = clients.native.get(path)
    assert response.status_code == 422
    assert response.json() == {"detail": [{"type": "value_error", "loc": loc, "msg": NUL_TEXT}]}


def test_nul_in_admin_parameters_is_a_422(clients: Clients) -> None:
    response = clients.admin.get("/v1/admin/accounts/%00/campaigns")
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == NUL_TEXT


@pytest.mark.parametrize("path", ["/calls/1/calls?state=%00", "/calls/1/calls/ab%00cd", "/calls/1/sip-trunks/%00"])
def test_nul_in_infobip_parameters_is_a_400(clients: Clients, path: str) -> None:
    response = clients.infobip.get(path)
    assert response.status_code == 400
    exception = response.json()["requestError"]["serviceException"]
    assert exception["messageId"] == "BAD_REQUEST"
    assert list(exception["validationErrors"].values()) == [[NUL_TEXT]]


def test_nul_in_ccai_parameters_is_a_400(clients: Clients) -> None:
    response = clients.ccai.get("/apps/api/v1/calls?status=%00")
    assert response.status_code == 400
    assert response.json() == {"message": f"status {NUL_TEXT}"}


def test_nul_in_invoca_parameters_uses_each_api_s_body(clients: Clients) -> None:
    found = clients.invoca.get("/api/2022-08-01/calls_in_progress/current_calls.json?external_unique_id=%00")
    assert found.status_code == 400
    assert found.json() == {"error": "InvalidParameters", "message": f"external_unique_id {NUL_TEXT}"}
    ingest = clients.invoca.post(f"/api/{INVOCA_VERSION}/calls.json?oauth_token=%00", json={})
    assert ingest.status_code == 403
    assert ingest.json() == {
        "errors": {"class": "RecordInvalid", "invalid_data": f"Validation failed: oauth_token {NUL_TEXT}"}
    }
    signals = clients.invoca.post("/api/2018-02-01/transactions.json?x=%00", json={})
    assert signals.status_code == 403
    assert signals.json()["errors"]["class"] == "InvalidInput"


def test_nul_in_zipteams_parameters_is_a_422(clients: Clients) -> None:
    response = clients.zipteams.post("/partner/ingest/batch-call?source=%00", json={"calls": []})
    assert response.status_code == 422
    assert response.json() == {
        "success": False,
        "message": "Validation failed",
        "errors": [{"field": "source", "message": NUL_TEXT}],
    }


# ---- JSON bodies: NUL, lone surrogates, 1e400, deep nesting ------------------------------------------------------

NUL_STRING = '"Acme\\u0000 Inc"'
SURROGATE_STRING = '"Acme \\ud800"'


@pytest.mark.parametrize("value", [NUL_STRING, SURROGATE_STRING, "1e400"])
def test_odd_json_in_admin_bodies_is_a_422(clients: Clients, value: str) -> None:
    raw = '{"kind": "network", "external_id": "odd", "rate_limit_per_minute": 5, "name": ' + value + "}"
    response = clients.admin.post("/v1/admin/accounts", content=raw, headers=JSON)
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["type"] == "json_invalid"


@pytest.mark.parametrize("value", [NUL_STRING, SURROGATE_STRING, "1e400"])
def test_odd_json_in_native_bodies_is_a_422(clients: Clients, value: str) -> None:
    raw = '{"url": "http://127.0.0.1:9/hook", "events": ["call.processed"], "description": ' + value + "}"
    response = clients.native.post("/v1/webhook-endpoints", content=raw, headers=JSON)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize("value", [NUL_STRING, SURROGATE_STRING, "1e400"])
def test_odd_json_in_infobip_bodies_is_a_400(clients: Clients, value: str) -> None:
    raw = '{"name": ' + value + "}"
    response = clients.infobip.post("/calls/1/configurations", content=raw, headers=JSON)
    assert response.status_code == 400
    assert response.json()["requestError"]["serviceException"]["messageId"] == "BAD_REQUEST"


def test_nul_in_an_invoca_body_is_a_403(clients: Clients) -> None:
    raw = '{"call": {"external_call_unique_id": "a\\u0000b"}}'
    response = clients.invoca.post(f"/api/{INVOCA_VERSION}/calls.json", content=raw, headers=JSON)
    assert response.status_code == 403
    assert response.json()["errors"]["class"] == "RecordInvalid"
    assert "NUL" in response.json()["errors"]["invalid_data"]


def test_nul_in_a_zipteams_body_is_a_422(clients: Clients) -> None:
    raw = '{"calls": [{"external_id": "a\\u0000b"}]}'
    response = clients.zipteams.post("/partner/ingest/batch-call", content=raw, headers=JSON)
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "body", "message": "body must be valid JSON"}]


@pytest.mark.parametrize(
    "raw",
    ['{"call_type": "a\\u0000"}', '{"call_type": "\\ud800"}', "[" * 5000 + "]" * 5000, '{"ticket_id": 1e400}'],
)
def test_odd_json_in_ccai_bodies_is_a_400(clients: Clients, raw: str) -> None:
    response = clients.ccai.post("/apps/api/v1/calls", content=raw, headers=JSON)
    assert response.status_code == 400
    assert set(response.json()) == {"message"}


def test_deep_nesting_is_refused_on_every_json_route(clients: Clients) -> None:
    deep = '{"name": ' + "[" * 5000 + "]" * 5000 + "}"
    assert clients.infobip.post("/calls/1/configurations", content=deep, headers=JSON).status_code == 400
    assert clients.admin.post("/v1/admin/accounts", content=deep, headers=JSON).status_code == 422
    invoca = clients.invoca.post(f"/api/{INVOCA_VERSION}/calls.json", content=deep, headers=JSON)
    assert invoca.status_code == 403


# ---- numbers and ids ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call_id",
    ["12345678901234567890", "%C2%B2", "%D9%A3", "9223372036854775808", "00000000000000000000001", "9" * 5000],
)
def test_ccai_ids_that_are_not_64_bit_ascii_numbers_are_not_found(clients: Clients, call_id: str) -> None:
    for response in (
        clients.ccai.get(f"/apps/api/v1/calls/{call_id}"),
        clients.ccai.get(f"/apps/api/v1/calls/{call_id}/customer_flag"),
        clients.ccai.patch(f"/apps/api/v1/calls/scheduled/{call_id}/cancel"),
    ):
        assert response.status_code == 404
        assert response.json() == {"message": "Resource not found"}


@pytest.mark.parametrize(
    "query", ["menu_id=%C2%B2", "agent_id=12345678901234567890", "page=99999999999999999999", "per=%D9%A3"]
)
def test_ccai_numbers_in_queries_that_are_not_64_bit_are_a_400(clients: Clients, query: str) -> None:
    response = clients.ccai.get(f"/apps/api/v1/calls?{query}")
    assert response.status_code == 400
    assert set(response.json()) == {"message"}


def test_ccai_last_64_bit_page_is_empty(clients: Clients) -> None:
    response = clients.ccai.get("/apps/api/v1/calls?page=9223372036854775807")
    assert response.status_code == 200
    assert response.json() == []


def test_ccai_body_ids_beyond_64_bits_are_a_400(clients: Clients) -> None:
    response = clients.ccai.patch("/apps/api/v1/calls/scheduled/cancel", json={"call_ids": [2**64]})
    assert response.status_code == 400
    assert response.json() == {"message": "call_ids is not well formed"}


@pytest.mark.parametrize("page", ["9223372036854775808", "2147483648", "-1"])
def test_infobip_pages_beyond_the_limit_are_a_400(clients: Clients, page: str) -> None:
    response = clients.infobip.get(f"/calls/1/calls?page={page}")
    assert response.status_code == 400
    exception = response.json()["requestError"]["serviceException"]
    assert exception["messageId"] == "BAD_REQUEST"
    assert "page" in exception["validationErrors"]


def test_infobip_last_page_is_empty(clients: Clients) -> None:
    response = clients.infobip.get("/calls/1/calls?page=2147483647&size=100")
    assert response.status_code == 200
    assert response.json()["results"] == []


def test_admin_integers_beyond_their_columns_are_a_422(clients: Clients) -> None:
    base = f"/v1/admin/accounts/{clients.network.account_id}"
    too_long = clients.admin.patch(f"{base}/contact-center/outbound-numbers/{2**64}", json={"trunk_id": "t"})
    assert too_long.status_code == 422
    assert too_long.json()["detail"][0]["loc"] == ["path", "number_id"]
    position = clients.admin.post(f"{base}/contact-center/menus", json={"name": "Sales", "position": 2**31})
    assert position.status_code == 422
    assert position.json()["detail"][0]["loc"] == ["body", "position"]
    limit = clients.admin.patch(base, json={"rate_limit_per_minute": 2**31})
    assert limit.status_code == 422


def test_admin_patch_with_null_keeps_required_fields(clients: Clients) -> None:
    base = f"/v1/admin/accounts/{clients.network.account_id}"
    before = clients.admin.get(base).json()
    response = clients.admin.patch(base, json={"name": None, "language_codes": None, "time_zone": None})
    assert response.status_code == 200
    after = response.json()
    assert (after["name"], after["language_codes"], after["time_zone"]) == (
        before["name"],
        before["language_codes"],
        before["time_zone"],
    )


def test_ccai_bulk_cancel_with_null_ids_is_a_400(clients: Clients) -> None:
    response = clients.ccai.patch("/apps/api/v1/calls/scheduled/cancel", json={"call_ids": [None, False]})
    assert response.status_code == 400
    assert response.json() == {"message": "call_ids is not well formed"}


def test_nul_in_an_uploaded_file_name_is_dropped(clients: Clients, tmp_path: Path) -> None:
    samples = np.arange(4000)
    write_wav(tmp_path / "tone.wav", (8000 * np.sin(2 * np.pi * 440 * samples / 8000)).astype(np.int16))
    boundary = "odd-input-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="we\x00lcome.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + (tmp_path / "tone.wav").read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = clients.infobip.post(
        "/calls/1/files", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert response.status_code == 200
    assert response.json()["name"] == "welcome.wav"
