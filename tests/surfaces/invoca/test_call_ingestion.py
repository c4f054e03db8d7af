"""Invoca Call Ingestion API: every example and error case of the document, over real HTTP."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from callplane.testing.factories import Admin, Network

URL = "/api/2022-03-01/calls.json"


def doc_call(external_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The call of the document's cURL example."""
    call = {
        "external_call_unique_id": external_id or secrets.token_hex(6),
        "start_time": "2022-03-25 09:31:29",
        "destination_phone_number": 9093900003,
        "calling_phone_number": 8779257384,
        "advertiser_campaign_id_from_network": 86,
        "call_direction": "inbound",
        "recording_url": "https://recordings.example.com/10002.wav",
    }
    call.update(overrides)
    return {k: v for k, v in call.items() if v is not None}


@pytest.fixture
def network(admin: Admin) -> Network:
    return admin.network()


def post(client: httpx.Client, network: Network, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return client.post(URL, json=body, headers={"Authorization": network.token}, **kwargs)


def errors_of(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"errors"}
    return dict(body["errors"])


def test_document_example_with_token_in_header(client: httpx.Client, network: Network) -> None:
    response = client.post(
        URL,
        headers={"Content-Type": "application/json", "Authorization": network.token},
        json={"call": doc_call("10002")},
    )
    assert response.status_code == 201
    assert set(response.json()) == {"cuid"}
    stored = client.get(
        f"/v1/calls/{response.json()['cuid']}", headers={"Authorization": f"Bearer {network.token}"}
    ).json()
    assert stored["external_id"] == "10002"
    assert stored["from"] == "+18779257384" and stored["to"] == "+19093900003"
    assert stored["direction"] == "inbound" and stored["contact_number"] == "+18779257384"
    # 2022-03-25 09:31:29 in the network's zone (America/Los_Angeles, PDT) is 16:31:29 UTC.
    assert stored["started_at"] == "2022-03-25T16:31:29Z"
    assert stored["status"] == "queued"
    assert stored["language_code"] == "en-US"
    assert stored["campaign"]["external_id"] == "86"
    assert [(job["kind"], job["status"]) for job in stored["jobs"]] == [("process_call", "queued")]


def test_token_in_body(client: httpx.Client, network: Network) -> None:
    response = client.post(URL, json={"call": doc_call("10001"), "oauth_token": network.token})
    assert response.status_code == 201


def test_token_in_query_string(client: httpx.Client, network: Network) -> None:
    response = client.post(URL, params={"oauth_token": network.token}, json={"call": doc_call()})
    assert response.status_code == 201


@pytest.mark.parametrize("scheme", ["Bearer ", "Token ", "Token token="])
def test_token_with_authorization_schemes(client: httpx.Client, network: Network, scheme: str) -> None:
    response = client.post(URL, headers={"Authorization": scheme + network.token}, json={"call": doc_call()})
    assert response.status_code == 201


@pytest.mark.parametrize("path", ["/api/2022-03-01/calls.json", "/api/2022-03-01/calls"])
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_put_and_post_on_both_paths(client: httpx.Client, network: Network, path: str, method: str) -> None:
    response = client.request(method, path, headers={"Authorization": network.token}, json={"call": doc_call()})
    assert response.status_code == 201


def test_same_call_resubmitted_is_202_with_same_cuid(client: httpx.Client, network: Network) -> None:
    body = {"call": doc_call("dup-1"), "signals": [{"name": "Sale"}]}
    first = post(client, network, body)
    second = post(client, network, body)
    assert (first.status_code, second.status_code) == (201, 202)
    assert first.json() == second.json()


def test_resubmission_with_equivalent_formats_is_still_202(client: httpx.Client, network: Network) -> None:
    first = post(client, network, {"call": doc_call("dup-2")})
    same = doc_call("dup-2", destination_phone_number="+1 909-390-0003", calling_phone_number="18779257384")
    assert (first.status_code, post(client, network, {"call": same}).status_code) == (201, 202)


def test_external_id_reused_with_different_content_is_409(client: httpx.Client, network: Network) -> None:
    assert post(client, network, {"call": doc_call("dup-3")}).status_code == 201
    response = post(client, network, {"call": doc_call("dup-3", call_direction="outbound")})
    assert response.status_code == 409
    assert errors_of(response)["invalid_data"] == (
        "external_call_unique_id has already been used with different call details"
    )


def test_unknown_api_version_is_400(client: httpx.Client, network: Network) -> None:
    response = client.post(
        "/api/2019-01-01/calls.json", headers={"Authorization": network.token}, json={"call": doc_call()}
    )
    assert response.status_code == 400
    assert "2019-01-01" in errors_of(response)["invalid_data"]


@pytest.mark.parametrize("token", [None, "", "cp_not-a-real-token"])
def test_missing_or_invalid_token_is_401(client: httpx.Client, token: str | None) -> None:
    headers = {"Authorization": token} if token is not None else {}
    response = client.post(URL, headers=headers, json={"call": doc_call()})
    assert response.status_code == 401
    assert errors_of(response) == {"class": "Unauthorized", "invalid_data": "Invalid or missing oauth token"}


def test_missing_call_is_record_invalid(client: httpx.Client, network: Network) -> None:
    response = post(client, network, {})
    assert response.status_code == 403
    assert response.json() == {
        "errors": {"class": "RecordInvalid", "invalid_data": "Validation failed: 'call' is required"}
    }


def test_all_problems_are_gathered_into_one_message(client: httpx.Client, network: Network) -> None:
    body = {
        "call": {
            "advertiser_campaign_id_from_network": 86,
            "start_time": "yesterday",
            "call_direction": "sideways",
            "calling_phone_number": "12",
        },
        "signals": [{"name": "Nope"}, {"name": "Sale", "value": "maybe"}],
        "custom_data": [{"name": "unknown_field", "value": "x"}, {"name": "account_type"}],
    }
    response = post(client, network, body)
    assert response.status_code == 403
    errors = errors_of(response)
    assert errors["class"] == "RecordInvalid"
    message = errors["invalid_data"]
    assert message.startswith("Validation failed: ")
    for expected in [
        "'external_call_unique_id' is required",
        "'destination_phone_number' is required",
        "'start_time' is not a supported timestamp",
        "'calling_phone_number' is not a valid phone number",
        "'call_direction' must be inbound or outbound",
        "'signals[1].value' must be true, false, 1, 0, yes or no",
        "'custom_data[1].value' is required",
        "signal 'Nope' does not exist in your Signal AI configuration",
        "custom data field 'unknown_field' does not exist in your Custom Data configuration",
    ]:
        assert expected in message


@pytest.mark.parametrize(
    "field",
    [
        "external_call_unique_id",
        "start_time",
        "destination_phone_number",
        "calling_phone_number",
        "advertiser_campaign_id_from_network",
        "call_direction",
    ],
)
def test_each_required_field(client: httpx.Client, network: Network, field: str) -> None:
    call = doc_call()
    del call[field]
    response = post(client, network, {"call": call})
    assert response.status_code == 403
    assert errors_of(response) == {
        "class": "RecordInvalid",
        "invalid_data": f"Validation failed: '{field}' is required",
    }


def test_ingestion_not_enabled_is_unauthorized_operation(client: httpx.Client, admin: Admin) -> None:
    network = admin.network(ingestion_enabled=False)
    response = post(client, network, {"call": doc_call()})
    assert response.status_code == 403
    assert response.json() == {
        "errors": {
            "class": "UnauthorizedOperation",
            "invalid_data": "You do not have permissions to perform the requested operation.",
        }
    }


def test_enabling_ingestion_takes_effect(client: httpx.Client, admin: Admin) -> None:
    network = admin.network(ingestion_enabled=False)
    assert post(client, network, {"call": doc_call()}).status_code == 403
    admin.patch(f"/accounts/{network.account_id}", {"ingestion_enabled": True})
    assert post(client, network, {"call": doc_call()}).status_code == 201


def test_unknown_campaign_is_unauthorized_advertiser(client: httpx.Client, network: Network) -> None:
    response = post(client, network, {"call": doc_call(advertiser_campaign_id_from_network=999)})
    assert response.status_code == 403
    assert response.json() == {
        "errors": {
            "class": "UnauthorizedAdvertiser",
            "invalid_data": "You do not have access to this advertiser",
        }
    }


def test_advertiser_scoped_token_cannot_use_another_advertisers_campaign(
    client: httpx.Client, admin: Admin, network: Network
) -> None:
    other = admin.post(
        f"/accounts/{network.account_id}/organizations", {"kind": "advertiser", "external_id": "other-adv"}
    )
    admin.post(f"/accounts/{network.account_id}/campaigns", {"organization_id": other["id"], "external_id": "87"})
    scoped = admin.post(f"/accounts/{network.account_id}/tokens", {"organization_id": network.advertiser_id})
    headers = {"Authorization": scoped["token"]}
    assert client.post(URL, headers=headers, json={"call": doc_call()}).status_code == 201
    response = client.post(URL, headers=headers, json={"call": doc_call(advertiser_campaign_id_from_network=87)})
    assert response.status_code == 403
    assert errors_of(response)["class"] == "UnauthorizedAdvertiser"


def test_campaign_must_be_external_only(client: httpx.Client, admin: Admin) -> None:
    network = admin.network(campaign_kind="standard")
    response = post(client, network, {"call": doc_call()})
    assert response.status_code == 403
    assert response.json() == {
        "errors": {
            "class": "call.advertiser_campaign_id_from_network",
            "invalid_data": "campaign must be for external calls only",
        }
    }


def test_campaign_must_have_transcription(client: httpx.Client, admin: Admin) -> None:
    network = admin.network(transcription_enabled=False)
    response = post(client, network, {"call": doc_call()})
    assert response.status_code == 403
    assert response.json() == {
        "errors": {
            "class": "call.advertiser_campaign_id_from_network",
            "invalid_data": "campaign must have transcription enabled",
        }
    }


# 11 April 2016 at 1 PM Pacific Time, in every documented format (the network is in Los Angeles).
DOCUMENT_TIMESTAMPS = [
    1460404800,
    "1460404800",
    "1460404800000",
    "20160411200000000",
    "2016/04/11T23:00:00.000+03:00",
    "2016/04/11T13:00:00.000-07:00",
    "2016/04/11T20:00:00.000Z",
    "2016/04/11T13:00:00-07:00",
    "2016/04/11 13:00:00.000 PM",
    "2016/04/11 13:00:00 PM",
    "2016/04/11 01:00:00 PM",
    "2016-04-11 13:00:00",
    "2016-04-11T13:00:00-0700",
    "2016-04-11 13:00:00 -0700",
]


@pytest.mark.parametrize("start_time", DOCUMENT_TIMESTAMPS)
def test_every_documented_timestamp_format(client: httpx.Client, network: Network, start_time: Any) -> None:
    response = post(client, network, {"call": doc_call(start_time=start_time)})
    assert response.status_code == 201, response.text
    stored = client.get(
        f"/v1/calls/{response.json()['cuid']}", headers={"Authorization": f"Bearer {network.token}"}
    ).json()
    assert stored["started_at"] == "2016-04-11T20:00:00Z"


def test_compressed_timestamp_is_always_utc(client: httpx.Client, network: Network) -> None:
    response = post(client, network, {"call": doc_call(start_time="20160411130000000")})
    stored = client.get(
        f"/v1/calls/{response.json()['cuid']}", headers={"Authorization": f"Bearer {network.token}"}
    ).json()
    assert stored["started_at"] == "2016-04-11T13:00:00Z"


@pytest.mark.parametrize(
    ("number", "e164"),
    [
        (9093900003, "+19093900003"),
        ("909-390-0003", "+19093900003"),
        ("+1 (909) 390-0003", "+19093900003"),
        ("+442071838750", "+442071838750"),
        ("+34912345678", "+34912345678"),
    ],
)
def test_phone_numbers_normalized(client: httpx.Client, network: Network, number: Any, e164: str) -> None:
    response = post(client, network, {"call": doc_call(destination_phone_number=number)})
    assert response.status_code == 201, response.text
    stored = client.get(
        f"/v1/calls/{response.json()['cuid']}", headers={"Authorization": f"Bearer {network.token}"}
    ).json()
    assert stored["to"] == e164


@pytest.mark.parametrize("number", ["+4930123456", "555", "not a number"])
def test_unsupported_phone_numbers(client: httpx.Client, network: Network, number: str) -> None:
    response = post(client, network, {"call": doc_call(calling_phone_number=number)})
    assert response.status_code == 403
    assert "'calling_phone_number'" in errors_of(response)["invalid_data"]


def test_outbound_contact_is_the_destination(client: httpx.Client, network: Network) -> None:
    response = post(client, network, {"call": doc_call(call_direction="OUTBOUND")})
    stored = client.get(
        f"/v1/calls/{response.json()['cuid']}", headers={"Authorization": f"Bearer {network.token}"}
    ).json()
    assert stored["direction"] == "outbound" and stored["contact_number"] == "+19093900003"


def test_recording_filename_defaults_to_external_id(client: httpx.Client, network: Network) -> None:
    response = post(client, network, {"call": doc_call("rec-77", recording_url=None)})
    assert response.status_code == 201
    stored = client.get(
        f"/v1/calls/{response.json()['cuid']}", headers={"Authorization": f"Bearer {network.token}"}
    ).json()
    assert stored["recording_filename"] == "rec-77" and stored["recording_url"] is None


def test_recording_url_and_filename_together_is_invalid(client: httpx.Client, network: Network) -> None:
    response = post(client, network, {"call": doc_call(recording_filename="x.wav")})
    assert response.status_code == 403
    assert "not both" in errors_of(response)["invalid_data"]


def test_recording_url_must_be_http(client: httpx.Client, network: Network) -> None:
    response = post(client, network, {"call": doc_call(recording_url="ftp://example.com/a.wav")})
    assert errors_of(response)["invalid_data"] == "Validation failed: 'recording_url' must be an http or https URL"


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a.wav\r\nX-Injected: 1",
        "https://example.com/a b.wav",
        "https://example.com/a.wav\tx",
        "https://exa mple.com/a.wav",
        "https://example.com/a.wav\x7f",
    ],
)
def test_recording_url_with_whitespace_or_controls_is_invalid(client: httpx.Client, network: Network, url: str) -> None:
    response = post(client, network, {"call": doc_call(recording_url=url)})
    assert response.status_code == 403
    assert errors_of(response) == {
        "class": "RecordInvalid",
        "invalid_data": "Validation failed: 'recording_url' must be an http or https URL",
    }


def test_recording_url_surrounding_blanks_are_trimmed(client: httpx.Client, network: Network) -> None:
    response = post(client, network, {"call": doc_call(recording_url=" https://example.com/a.wav\r\n")})
    assert response.status_code == 201
    stored = client.get(
        f"/v1/calls/{response.json()['cuid']}", headers={"Authorization": f"Bearer {network.token}"}
    ).json()
    assert stored["recording_url"] == "https://example.com/a.wav"


def test_language_codes(client: httpx.Client, admin: Admin) -> None:
    network = admin.network(language_codes=["en-US", "es-ES"])
    assert post(client, network, {"call": doc_call(language_code="es-ES")}).status_code == 201
    not_enabled = post(client, network, {"call": doc_call(language_code="fr-FR")})
    assert errors_of(not_enabled)["invalid_data"] == (
        "Validation failed: 'language_code' 'fr-FR' is not enabled for this network"
    )
    unsupported = post(client, network, {"call": doc_call(language_code="de-DE")})
    assert "is not supported" in errors_of(unsupported)["invalid_data"]


def test_language_defaults_to_network_default(client: httpx.Client, admin: Admin) -> None:
    network = admin.network(default_language_code="en-GB")
    response = post(client, network, {"call": doc_call()})
    stored = client.get(
        f"/v1/calls/{response.json()['cuid']}", headers={"Authorization": f"Bearer {network.token}"}
    ).json()
    assert stored["language_code"] == "en-GB"


def test_recording_auth_config_must_exist(client: httpx.Client, admin: Admin, network: Network) -> None:
    config = admin.post(
        f"/accounts/{network.account_id}/recording-auth-configs",
        {"method": "header", "parameter_name": "X-Api-Key", "secret": "s3cret"},
    )
    assert "secret" not in config
    ok = post(client, network, {"call": doc_call(recording_auth_config_id=config["id"])})
    assert ok.status_code == 201
    missing = post(client, network, {"call": doc_call(recording_auth_config_id="does-not-exist")})
    assert errors_of(missing)["invalid_data"] == (
        "Validation failed: 'recording_auth_config_id' 'does-not-exist' does not exist"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, True),
        ("true", True),
        ("TRUE", True),
        ("false", False),
        ("False", False),
        (1, True),
        (0, False),
        ("1", True),
        ("0", False),
        ("Yes", True),
        ("no", False),
        (True, True),
        (False, False),
    ],
)
def test_signal_values(client: httpx.Client, network: Network, value: Any, expected: bool) -> None:
    signal: dict[str, Any] = {"name": "sALe"}
    if value is not None:
        signal["value"] = value
    response = post(client, network, {"call": doc_call(), "signals": [signal]})
    assert response.status_code == 201, response.text
    stored = client.get(
        f"/v1/calls/{response.json()['cuid']}", headers={"Authorization": f"Bearer {network.token}"}
    ).json()
    (row,) = stored["signals"]
    assert (row["name"], row["value"], row["source"], row["evidence"]) == ("Sale", expected, "submitted", {})
    assert row["partner_unique_id"] == "" and row["occurred_at"] is None and row["revenue"] is None


def test_signals_and_custom_data_example(client: httpx.Client, network: Network) -> None:
    body = {
        "call": doc_call(),
        "signals": [{"name": "Sale", "value": "true"}, {"name": "free trial", "value": "No"}],
        "custom_data": [{"name": "account_type", "value": "Premium"}],
    }
    response = post(client, network, body)
    assert response.status_code == 201
    stored = client.get(
        f"/v1/calls/{response.json()['cuid']}", headers={"Authorization": f"Bearer {network.token}"}
    ).json()
    assert {(s["name"], s["value"]) for s in stored["signals"]} == {("Sale", True), ("Free Trial", False)}
    assert stored["custom_data"] == [{"name": "account_type", "value": "Premium", "source": "submitted"}]


def test_fifty_concurrent_identical_submissions_make_one_call(client: httpx.Client, network: Network) -> None:
    body = {"call": doc_call("race-1"), "signals": [{"name": "Sale"}]}

    def submit(_: int) -> httpx.Response:
        with httpx.Client(base_url=str(client.base_url), timeout=60) as own:
            return own.post(URL, json=body, headers={"Authorization": network.token})

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(submit, range(50)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [202] * 49
    assert len({r.json()["cuid"] for r in responses}) == 1
    listed = client.get(
        "/v1/calls", params={"external_id": "race-1"}, headers={"Authorization": f"Bearer {network.token}"}
    ).json()["calls"]
    assert len(listed) == 1
    assert (
        len(
            client.get(f"/v1/calls/{listed[0]['id']}", headers={"Authorization": f"Bearer {network.token}"}).json()[
                "jobs"
            ]
        )
        == 1
    )
