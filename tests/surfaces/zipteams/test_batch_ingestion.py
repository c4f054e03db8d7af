"""Zipteams Batch Call Ingestion API: the document's example, every rule and every error response."""

from __future__ import annotations

import copy
import secrets
from typing import Any

import httpx
import pytest

from callplane.testing.factories import Admin, Partner

PATHS = ["/partner/ingest/batch-call", "/api/v1/partner/ingest/batch-call"]
URL = PATHS[0]


def doc_item(call_id: str | None = None) -> dict[str, Any]:
    """The item of the document's example request."""
    return {
        "call": {
            "id": call_id or f"call-{secrets.token_hex(5)}",
            "recording_url": "https://example.com/recordings/call123.mp3",
            "start_time": "2023-01-01T10:00:00Z",
            "end_time": "2023-01-01T10:30:00Z",
            "contact_number": "+1234567890",
        },
        "agent": {"id": "agent123", "email": "agent@example.com", "name": "John Doe"},
        "customer": {
            "id": "customer123",
            "name": "Jane Smith",
            "email": "customer@example.com",
            "disposition_status": "interested",
        },
        "industry": "Technology",
        "function": "Sales",
        "callback_url": "https://partner.example.com/callback",
        "metadata": {"campaign": "Q1 Outreach", "source": "Website"},
    }


@pytest.fixture
def partner(admin: Admin) -> Partner:
    return admin.partner()


def calls_of(client: httpx.Client, partner: Partner, **params: Any) -> list[dict[str, Any]]:
    response = client.get(
        "/v1/calls", params={"limit": 500, **params}, headers={"Authorization": f"Bearer {partner.token}"}
    )
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["calls"]
    return result


@pytest.mark.parametrize("path", PATHS)
def test_document_example(client: httpx.Client, partner: Partner, path: str) -> None:
    item = doc_item("call123")
    response = client.post(path, headers={"Content-Type": "application/json", **partner.headers}, json={"data": [item]})
    assert response.status_code == 200
    assert response.json() == {"success": True}
    [call] = calls_of(client, partner, external_id="call123")
    assert call["origin"] == "batch_ingest" and call["status"] == "queued"
    assert call["contact_number"] == "+1234567890"
    assert call["started_at"] == "2023-01-01T10:00:00Z" and call["ended_at"] == "2023-01-01T10:30:00Z"
    assert call["duration_ms"] == 30 * 60 * 1000
    assert call["callback_url"] == "https://partner.example.com/callback"
    assert call["metadata"] == {"campaign": "Q1 Outreach", "source": "Website"}
    assert call["agent"]["email"] == "agent@example.com"
    assert call["customer"]["disposition_status"] == "interested"
    assert call["extras"] == {"industry": "Technology", "function": "Sales"}
    detail = client.get(f"/v1/calls/{call['id']}", headers={"Authorization": f"Bearer {partner.token}"}).json()
    assert [j["status"] for j in detail["jobs"]] == ["queued"]


def test_fifty_calls_in_one_batch(client: httpx.Client, partner: Partner) -> None:
    items = [doc_item() for _ in range(50)]
    for index, item in enumerate(items):
        item["custom_fields"] = [{"internal_name": "lead_score", "value": str(index)}]
    response = client.post(URL, headers=partner.headers, json={"data": items})
    assert response.status_code == 200
    assert len(calls_of(client, partner)) == 50


def test_resubmitted_calls_are_not_processed_twice(client: httpx.Client, partner: Partner) -> None:
    items = [doc_item("same-1"), doc_item("same-2")]
    assert client.post(URL, headers=partner.headers, json={"data": items}).status_code == 200
    again = [doc_item("same-1"), doc_item("same-3"), doc_item("same-3")]
    assert client.post(URL, headers=partner.headers, json={"data": again}).status_code == 200
    calls = calls_of(client, partner)
    assert sorted(c["external_id"] for c in calls) == ["same-1", "same-2", "same-3"]
    for call in calls:
        detail = client.get(f"/v1/calls/{call['id']}", headers={"Authorization": f"Bearer {partner.token}"})
        assert len(detail.json()["jobs"]) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer cp_wrong"},
    ],
)
def test_bad_or_missing_token_is_forbidden(client: httpx.Client, partner: Partner, headers: dict[str, str]) -> None:
    sent = {k: v for k, v in partner.headers.items() if k != "Authorization"} | headers
    response = client.post(URL, headers=sent, json={"data": [doc_item()]})
    assert response.status_code == 403
    assert response.json() == {"success": False, "message": "Forbidden"}


def test_token_of_another_partner_is_forbidden(client: httpx.Client, admin: Admin, partner: Partner) -> None:
    other = admin.partner()
    headers = partner.headers | {"Authorization": f"Bearer {other.token}"}
    response = client.post(URL, headers=headers, json={"data": [doc_item()]})
    assert response.status_code == 403
    assert response.json() == {"success": False, "message": "Forbidden"}


def test_network_token_cannot_use_batch_api(client: httpx.Client, admin: Admin, partner: Partner) -> None:
    network = admin.network()
    response = client.post(
        URL, headers=partner.headers | {"Authorization": f"Bearer {network.token}"}, json={"data": [doc_item()]}
    )
    assert response.status_code == 403


def test_x_api_key_header_is_accepted(client: httpx.Client, partner: Partner) -> None:
    headers = {k: v for k, v in partner.headers.items() if k != "Authorization"} | {"x-api-key": partner.token}
    assert client.post(URL, headers=headers, json={"data": [doc_item()]}).status_code == 200


def test_missing_tenant_id(client: httpx.Client, partner: Partner) -> None:
    headers = {k: v for k, v in partner.headers.items() if k != "x-tenant-id"}
    response = client.post(URL, headers=headers, json={"data": [doc_item()]})
    assert response.status_code == 400
    assert response.json() == {"success": False, "message": "Tenant ID is required"}


def test_missing_sub_tenant_id(client: httpx.Client, partner: Partner) -> None:
    headers = {k: v for k, v in partner.headers.items() if k != "x-sub-tenant-id"}
    response = client.post(URL, headers=headers, json={"data": [doc_item()]})
    assert response.status_code == 400
    assert response.json() == {"success": False, "message": "Sub-Tenant ID is required"}


def test_unknown_tenant_is_forbidden(client: httpx.Client, partner: Partner) -> None:
    response = client.post(URL, headers=partner.headers | {"x-sub-tenant-id": "nope"}, json={"data": [doc_item()]})
    assert response.status_code == 403


def _mutate(path: list[Any], value: Any) -> dict[str, Any]:
    item = doc_item()
    target: Any = item
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return item


VALIDATION_CASES = [
    (["call", "id"], KeyError, "data[0].call.id", "id should not be empty"),
    (["call", "id"], "", "data[0].call.id", "id should not be empty"),
    (["call", "id"], 12, "data[0].call.id", "id must be a string"),
    (["call", "recording_url"], KeyError, "data[0].call.recording_url", "recording_url should not be empty"),
    (["call", "recording_url"], "not a url", "data[0].call.recording_url", "recording_url must be a URL address"),
    (
        ["call", "recording_url"],
        "https://example.com/a.mp3\r\nX-Injected: 1",
        "data[0].call.recording_url",
        "recording_url must be a URL address",
    ),
    (
        ["call", "recording_url"],
        "https://example.com/a b.mp3",
        "data[0].call.recording_url",
        "recording_url must be a URL address",
    ),
    (
        ["callback_url"],
        "https://partner.example.com/c\nb",
        "data[0].callback_url",
        "callback_url must be a URL address",
    ),
    (["call", "start_time"], KeyError, "data[0].call.start_time", "start_time should not be empty"),
    (
        ["call", "start_time"],
        "2023-01-01 10:00",
        "data[0].call.start_time",
        "start_time must be a valid ISO 8601 date string in UTC (YYYY-MM-DDThh:mm:ssZ)",
    ),
    (
        ["call", "start_time"],
        "2023-01-01T10:00:00+05:00",
        "data[0].call.start_time",
        "start_time must be a valid ISO 8601 date string in UTC (YYYY-MM-DDThh:mm:ssZ)",
    ),
    (["call", "end_time"], KeyError, "data[0].call.end_time", "end_time should not be empty"),
    (["call", "end_time"], "2023-01-01T09:00:00Z", "data[0].call.end_time", "end_time must be after start_time"),
    (["call", "end_time"], "2023-01-01T10:00:00Z", "data[0].call.end_time", "end_time must be after start_time"),
    (["call", "contact_number"], KeyError, "data[0].call.contact_number", "contact_number should not be empty"),
    (
        ["call", "contact_number"],
        "0044 20 7183 8750",
        "data[0].call.contact_number",
        "contact_number must be a valid phone number in E.164 format",
    ),
    (["call"], KeyError, "data[0].call", "call should not be empty"),
    (["agent", "id"], KeyError, "data[0].agent.id", "id should not be empty"),
    (["agent", "email"], "not-an-email", "data[0].agent.email", "email must be an email"),
    (["agent", "name"], "x" * 256, "data[0].agent.name", "name must be shorter than or equal to 255 characters"),
    (["customer", "id"], KeyError, "data[0].customer.id", "id should not be empty"),
    (["customer", "email"], "a@", "data[0].customer.email", "email must be an email"),
    (["customer", "name"], "y" * 256, "data[0].customer.name", "name must be shorter than or equal to 255 characters"),
    (
        ["callback_url"],
        "http://partner.example.com/cb",
        "data[0].callback_url",
        "callback_url must start with https://",
    ),
    (["callback_url"], "nonsense", "data[0].callback_url", "callback_url must be a URL address"),
    (["metadata"], {f"k{i}": "v" for i in range(6)}, "data[0].metadata", "metadata must not have more than 5 keys"),
    (["metadata"], {"nested": {"a": 1}}, "data[0].metadata.nested", "nested must be a string or a number"),
    (
        ["custom_fields"],
        [{"internal_name": f"f{i}", "value": "v"} for i in range(11)],
        "data[0].custom_fields",
        "custom_fields must contain no more than 10 elements",
    ),
    (
        ["custom_fields"],
        [{"value": "v"}],
        "data[0].custom_fields[0].internal_name",
        "internal_name should not be empty",
    ),
]


@pytest.mark.parametrize(("path", "value", "field", "message"), VALIDATION_CASES)
def test_validation_rules(
    client: httpx.Client, partner: Partner, path: list[Any], value: Any, field: str, message: str
) -> None:
    response = client.post(URL, headers=partner.headers, json={"data": [_mutate(path, value)]})
    assert response.status_code == 422
    body = response.json()
    assert body["success"] is False and body["message"] == "Validation failed"
    assert {"field": field, "message": message} in body["errors"]
    assert calls_of(client, partner) == []  # nothing of a rejected batch is kept


def test_error_paths_point_at_the_right_item(client: httpx.Client, partner: Partner) -> None:
    items = [doc_item() for _ in range(5)]
    items[3]["call"]["contact_number"] = "12345"
    items[1]["agent"]["email"] = "bad"
    response = client.post(URL, headers=partner.headers, json={"data": items})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "data[1].agent.email", "message": "email must be an email"},
        {
            "field": "data[3].call.contact_number",
            "message": "contact_number must be a valid phone number in E.164 format",
        },
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"data": []}, "data must contain at least 1 elements"),
        ({}, "data should not be empty"),
        ({"data": "x"}, "data must be an array"),
    ],
)
def test_batch_shape(client: httpx.Client, partner: Partner, body: dict[str, Any], message: str) -> None:
    response = client.post(URL, headers=partner.headers, json=body)
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "data", "message": message}]


def test_more_than_fifty_calls(client: httpx.Client, partner: Partner) -> None:
    response = client.post(URL, headers=partner.headers, json={"data": [doc_item() for _ in range(51)]})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "data", "message": "data must contain no more than 50 elements"}]


def test_payload_over_five_megabytes_is_413(client: httpx.Client, partner: Partner) -> None:
    item = doc_item()
    item["customer"]["disposition_status"] = "x" * (5 * 1024 * 1024)
    response = client.post(URL, headers=partner.headers, json={"data": [item]})
    assert response.status_code == 413
    assert response.json()["success"] is False


def test_chunked_payload_over_five_megabytes_is_413(client: httpx.Client, partner: Partner) -> None:
    def chunks() -> Any:
        yield b'{"data": [{"call": {"id": "'
        for _ in range(6):
            yield b"x" * (1024 * 1024)
        yield b'"}}]}'

    response = client.post(URL, headers=partner.headers | {"Content-Type": "application/json"}, content=chunks())
    assert response.status_code == 413


def test_rate_limit_is_429_with_retry_after(client: httpx.Client, admin: Admin) -> None:
    partner = admin.partner(rate_limit_per_minute=2)
    codes = [client.post(URL, headers=partner.headers, json={"data": [doc_item()]}).status_code for _ in range(2)]
    assert codes == [200, 200]
    limited = client.post(URL, headers=partner.headers, json={"data": [doc_item()]})
    assert limited.status_code == 429
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert limited.json() == {"success": False, "message": f"Rate limit exceeded. Try again in {retry_after} seconds."}
    assert len(calls_of(client, partner)) == 2


def test_invalid_json_is_422(client: httpx.Client, partner: Partner) -> None:
    response = client.post(URL, headers=partner.headers | {"Content-Type": "application/json"}, content=b"{nope")
    assert response.status_code == 422


def test_call_ids_are_per_partner(client: httpx.Client, admin: Admin, partner: Partner) -> None:
    other = admin.partner()
    item = doc_item("shared-id")
    assert client.post(URL, headers=partner.headers, json={"data": [item]}).status_code == 200
    assert client.post(URL, headers=other.headers, json={"data": [copy.deepcopy(item)]}).status_code == 200
    assert len(calls_of(client, partner)) == 1 and len(calls_of(client, other)) == 1
