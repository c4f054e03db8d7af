"""Invoca Signal API (POST /api/2018-02-01/transactions.json): the document's examples and errors, over HTTP."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from callplane.testing.factories import Admin, Network

URL = "/api/2018-02-01/transactions.json"
INGEST = "/api/2022-03-01/calls.json"


@pytest.fixture
def network(admin: Admin) -> Network:
    return admin.network()


def ingest(client: httpx.Client, network: Network, **overrides: Any) -> str:
    call = {
        "external_call_unique_id": secrets.token_hex(6),
        "start_time": "2022-03-25 09:31:29",
        "destination_phone_number": 9093900003,
        "calling_phone_number": 8779257384,
        "advertiser_campaign_id_from_network": 86,
        "call_direction": "inbound",
        "recording_url": "https://recordings.example.com/10002.wav",
        **overrides,
    }
    body = {"call": call, "custom_data": [{"name": "account_type", "value": "Premium"}]}
    response = client.post(INGEST, json=body, headers={"Authorization": network.token})
    assert response.status_code == 201, response.text
    return str(response.json()["cuid"])


def post(client: httpx.Client, network: Network, body: dict[str, Any]) -> httpx.Response:
    return client.post(URL, json=body, headers={"Authorization": network.token})


def stored(client: httpx.Client, network: Network, call_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/calls/{call_id}", headers={"Authorization": f"Bearer {network.token}"})
    assert response.status_code == 200
    return dict(response.json())


def error(response: httpx.Response, status: int) -> tuple[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errors"} and set(body["errors"]) == {"class", "invalid_data"}
    return body["errors"]["class"], body["errors"]["invalid_data"]


def test_document_example_by_transaction_id(client: httpx.Client, network: Network) -> None:
    call_id = ingest(client, network)
    body = {
        "search": {"transaction_id": call_id},
        "signals": [
            {
                "name": "sale",
                "partner_unique_id": "1",
                "occurred_at_time": "1440607313",
                "revenue": "100.00",
                "value": "true",
            }
        ],
        "custom_data": [{"name": "ACCOUNT_TYPE", "value": "Paid Search"}],
        "oauth_token": network.token,
    }
    response = client.post(URL, json=body)
    assert response.status_code == 200, response.text
    (signal,) = response.json()["signals"]
    assert signal == {
        "transaction_id": signal["transaction_id"],
        "corrects_transaction_id": None,
        "name": "Sale",  # the definition's casing
        "partner_unique_id": "1",
        "occurred_at_time_t": "1440607313",
        "occurred_at_time": "2015-08-26T16:41:53Z",
        "revenue": "100.0",
        "value": "true",
    }
    # The ingestion example's start 2022-03-25 09:31:29 in the network's zone (PDT) is 16:31:29 UTC.
    assert response.json()["call"] == {
        "transaction_id": call_id,
        "corrects_transaction_id": None,
        "start_time_t": "1648225889",
        "call_start_time": "2022-03-25T16:31:29Z",
    }
    call = stored(client, network, call_id)
    (row,) = call["signals"]
    assert (row["name"], row["value"], row["source"], row["partner_unique_id"]) == ("Sale", True, "api", "1")
    assert row["revenue"] == "100.00" and row["occurred_at"] == "2015-08-26T16:41:53Z"
    assert call["custom_data"] == [{"name": "account_type", "value": "Paid Search", "source": "api"}]


def test_partner_unique_id_adds_updates_and_repeats(client: httpx.Client, network: Network) -> None:
    call_id = ingest(client, network)
    first = post(
        client,
        network,
        {
            "search": {"call_record_id": call_id},
            "signals": [{"name": "Sale", "partner_unique_id": "1"}, {"name": "Sale", "partner_unique_id": "2"}],
        },
    ).json()["signals"]
    assert [s["partner_unique_id"] for s in first] == ["1", "2"]
    again = post(
        client,
        network,
        {"search": {"transaction_id": call_id}, "signals": [{"name": "sale", "partner_unique_id": "1"}]},
    )
    assert again.json()["signals"][0]["transaction_id"] == first[0]["transaction_id"]  # same params: nothing new
    assert again.json()["signals"][0]["corrects_transaction_id"] is None
    update = post(
        client,
        network,
        {"search": {"transaction_id": call_id}, "signals": [{"name": "Sale", "partner_unique_id": "1", "value": "No"}]},
    ).json()["signals"][0]
    assert update["corrects_transaction_id"] == first[0]["transaction_id"] and update["value"] == "false"
    assert update["transaction_id"] != first[0]["transaction_id"]
    rows = {s["partner_unique_id"]: s for s in stored(client, network, call_id)["signals"]}
    assert set(rows) == {"1", "2"} and rows["1"]["value"] is False and rows["2"]["value"] is True


def test_updates_a_signal_submitted_with_the_call(client: httpx.Client, network: Network) -> None:
    response = client.post(
        INGEST,
        json={
            "call": {
                "external_call_unique_id": secrets.token_hex(6),
                "start_time": "2022-03-25 09:31:29",
                "destination_phone_number": 9093900003,
                "calling_phone_number": 8779257384,
                "advertiser_campaign_id_from_network": 86,
                "call_direction": "inbound",
            },
            "signals": [{"name": "Free Trial", "value": "yes"}],
        },
        headers={"Authorization": network.token},
    )
    call_id = response.json()["cuid"]
    post(client, network, {"search": {"transaction_id": call_id}, "signals": [{"name": "free trial", "value": 0}]})
    (row,) = stored(client, network, call_id)["signals"]
    assert (row["name"], row["value"], row["source"]) == ("Free Trial", False, "api")


def test_search_by_start_time_finds_the_closest_call_of_that_caller(client: httpx.Client, network: Network) -> None:
    near = ingest(client, network, start_time="2024-05-01 10:00:00", calling_phone_number="+14155550100")
    ingest(client, network, start_time="2024-05-01 10:06:00", calling_phone_number="+14155550100")
    other_caller = ingest(client, network, start_time="2024-05-01 10:01:00", calling_phone_number="+14155550199")
    body = {
        "search": {
            "call_start_time": "2024/05/01 10:02:00 AM",  # Excel format, in the network's zone
            "calling_phone_number": "4155550100",
            "advertiser_campaign_id_from_network": "86",
        },
        "signals": [{"name": "Sale"}],
    }
    response = post(client, network, body)
    assert response.status_code == 200, response.text
    assert response.json()["call"]["transaction_id"] == near
    assert stored(client, network, other_caller)["signals"] == []
    body["search"] = {"call_start_time": "2024-05-01T20:00:00Z", "calling_phone_number": "4155550100"}
    assert error(post(client, network, body), 404) == (
        "RecordNotFound",
        "No call found. Please refer to the documentation.",
    )


def test_another_networks_call_is_never_found(client: httpx.Client, admin: Admin, network: Network) -> None:
    call_id = ingest(client, network, start_time="2023-01-02 03:04:05", calling_phone_number="+14155550123")
    stranger = admin.network()
    assert (
        error(post(client, stranger, {"search": {"transaction_id": call_id}, "signals": [{"name": "Sale"}]}), 404)[0]
        == "RecordNotFound"
    )
    by_time = {"search": {"call_start_time": "2023/01/02 03:04:05 AM", "calling_phone_number": "4155550123"}}
    assert error(post(client, stranger, by_time | {"signals": [{"name": "Sale"}]}), 404)[0] == "RecordNotFound"
    assert stored(client, network, call_id)["signals"] == []


def test_document_bad_request_example(client: httpx.Client, network: Network) -> None:
    body = {
        "search": {"transaction_id": "0000000-0000000A"},
        "signals": [
            {"name": "sale", "custom_parameter_1": "12345"},
            {"revenue": "1,000", "value": "true"},
            {"name": "sale", "description": "duplicate"},
        ],
        "custom_data": [{"value": "no_name"}, {"name": "no_value"}],
    }
    assert error(post(client, network, body), 403) == (
        "InvalidInput",
        "The following params in 'signals' are not supported in this version: custom_parameter_1, description; "
        "signals[1] 'name' is required; 'name' for signals[0] and signals[2] must be unique; "
        "'name' for custom_data[0] is required; 'value' for custom_data[1] is required",
    )
    assert error(post(client, network, {"signals": [{"name": "Sale"}]}), 403) == (
        "InvalidInput",
        "transaction_id, call_record_id, or call_start_time must not be empty",
    )
    too_many = {
        "search": {"transaction_id": "x"},
        "signals": [{"name": "Sale", "partner_unique_id": str(i)} for i in range(11)],
    }
    assert "more than 10 signals" in error(post(client, network, too_many), 403)[1]


def test_unknown_names_and_the_signal_limit_are_record_invalid(client: httpx.Client, network: Network) -> None:
    call_id = ingest(client, network)
    unknown = {
        "search": {"transaction_id": call_id},
        "signals": [{"name": "Upsell"}],
        "custom_data": [{"name": "tier", "value": "1"}],
    }
    assert error(post(client, network, unknown), 403) == (
        "RecordInvalid",
        "Validation failed: signal 'Upsell' does not exist in your Signal AI configuration, "
        "custom data field 'tier' does not exist in your Custom Data configuration",
    )
    for batch in range(10):
        signals = [{"name": "Sale", "partner_unique_id": f"{batch}-{i}"} for i in range(10)]
        assert post(client, network, {"search": {"transaction_id": call_id}, "signals": signals}).status_code == 200
    over = {"search": {"transaction_id": call_id}, "signals": [{"name": "Free Trial"}]}
    assert error(post(client, network, over), 403) == ("RecordInvalid", "Validation failed: Signals are limited to 100")
    assert len(stored(client, network, call_id)["signals"]) == 100


def test_versions_tokens_and_permissions(client: httpx.Client, admin: Admin, network: Network) -> None:
    call_id = ingest(client, network)
    body = {"search": {"transaction_id": call_id}, "signals": [{"name": "Sale"}]}
    bad_version = client.post("/api/2017-02-01/transactions.json", json=body, headers={"Authorization": network.token})
    assert error(bad_version, 400)[0] == "InvalidApiVersion"
    assert error(client.post(URL, json=body), 401) == ("Unauthorized", "Invalid or missing oauth token")
    assert client.post(URL, json=body, params={"oauth_token": network.token}).status_code == 200
    partner = admin.partner()
    assert error(client.post(URL, json=body, headers=partner.headers), 403) == (
        "UnauthorizedOperation",
        "You do not have permissions to perform the requested operation.",
    )
    for search in (
        {"advertiser_id_from_network": "someone-else"},
        {"advertiser_campaign_id_from_network": "999"},
        {"network_id": "another-network"},
    ):
        by_time = {"search": {"call_start_time": "2022-03-25 09:31:29", **search}, "signals": [{"name": "Sale"}]}
        assert error(post(client, network, by_time), 403) == (
            "UnauthorizedAdvertiser",
            "You do not have access to this advertiser",
        )


def test_call_in_progress_answers_201_and_keeps_the_submission(client: httpx.Client, network: Network) -> None:
    call_id = ingest(client, network)
    body = {"search": {"transaction_id": call_id}, "signals": [{"name": "Sale"}], "call_in_progress": True}
    response = post(client, network, body)
    assert response.status_code == 201 and response.content == b""
    # The call is already finished here, so the submission was applied at once (docs/transcription.md).
    assert [s["name"] for s in stored(client, network, call_id)["signals"]] == ["Sale"]
    later = post(client, network, body | {"search": {"transaction_id": "not-yet-known"}})
    assert later.status_code == 201 and later.content == b""
    assert (
        error(post(client, network, {"signals": [{"name": "Sale"}], "call_in_progress": "true"}), 403)[0]
        == "InvalidInput"
    )


def test_concurrent_identical_requests_store_one_signal(client: httpx.Client, network: Network) -> None:
    call_id = ingest(client, network)
    body = {"search": {"transaction_id": call_id}, "signals": [{"name": "Sale", "partner_unique_id": "race"}]}

    def send(_: int) -> int:
        with httpx.Client(base_url=str(client.base_url), timeout=60) as own:
            return post(own, network, body).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(send, range(8))) == {200}
    assert len(stored(client, network, call_id)["signals"]) == 1
