"""`/calls/1/sip-trunks` driven by the official client (and plain HTTP for callplane's own fields)."""

from __future__ import annotations

import json

import httpx
import pytest
from infobip_api_client.api.calls_api import CallsApi
from infobip_api_client.exceptions import ApiException
from infobip_api_client.models.calls_billing_package import CallsBillingPackage
from infobip_api_client.models.calls_registered_sip_trunk_request import CallsRegisteredSipTrunkRequest
from infobip_api_client.models.calls_sip_trunk_status_request import CallsSipTrunkStatusRequest
from infobip_api_client.models.calls_sip_trunk_type import CallsSipTrunkType
from infobip_api_client.models.calls_static_sip_trunk_request import CallsStaticSipTrunkRequest
from infobip_api_client.models.calls_static_sip_trunk_update_request import CallsStaticSipTrunkUpdateRequest

from callplane.testing.factories import Admin
from callplane.testing.infobip import calls_api
from callplane.testing.server import RunningServer


def _static(name: str = "carrier", **overrides: object) -> CallsStaticSipTrunkRequest:
    values: dict[str, object] = {
        "name": name,
        "channel_limit": 5,
        "billing_package": CallsBillingPackage(package_type="METERED"),
        "destination_hosts": ["127.0.0.1:5070"],
        "number_format": "INTERNATIONAL",
        "codecs": ["PCMU", "PCMA"],
        "type": CallsSipTrunkType.STATIC,  # the model's default is a bare str, which pydantic warns about
    }
    return CallsStaticSipTrunkRequest(**(values | overrides))  # type: ignore[arg-type]


def _service_exception(error: ApiException) -> dict[str, object]:
    assert error.body is not None
    body: dict[str, dict[str, dict[str, object]]] = json.loads(error.body)
    return body["requestError"]["serviceException"]


def test_static_trunk_lifecycle_with_the_official_client(calls: CallsApi) -> None:
    created = calls.create_sip_trunk_with_http_info(_static())
    assert created.status_code == 202
    trunk = created.data
    assert trunk.id and trunk.type == "STATIC" and trunk.channel_limit == 5
    assert trunk.destination_hosts == ["127.0.0.1:5070"] and trunk.number_format == "INTERNATIONAL"
    assert trunk.sbc_hosts is not None and trunk.sbc_hosts.primary

    fetched = calls.get_sip_trunk(trunk.id)
    assert fetched.id == trunk.id and fetched.name == "carrier" and fetched.codecs == ["PCMU", "PCMA"]

    calls.create_sip_trunk(_static("second"))
    page = calls.get_sip_trunks(page=0, size=1)
    assert page.paging is not None
    assert (page.paging.total_results, page.paging.total_pages, page.paging.size) == (2, 2, 1)
    assert [item.name for item in page.results or []] == ["carrier"]
    assert [item.name for item in calls.get_sip_trunks(name="second").results or []] == ["second"]

    updated = calls.update_sip_trunk_with_http_info(
        trunk.id,
        CallsStaticSipTrunkUpdateRequest(
            name="carrier-b",
            channel_limit=9,
            destination_hosts=["127.0.0.1:5080"],
            number_format="E164",
            type=CallsSipTrunkType.STATIC,
        ),
    )
    assert updated.status_code == 202
    assert updated.data.name == "carrier-b" and updated.data.channel_limit == 9
    assert calls.get_sip_trunk(trunk.id).destination_hosts == ["127.0.0.1:5080"]

    status = calls.get_sip_trunk_status(trunk.id)
    assert (status.admin_status, status.active_calls, status.registration_status) == ("ENABLED", 0, None)
    disabled = calls.set_sip_trunk_status(trunk.id, CallsSipTrunkStatusRequest(admin_status="DISABLED"))
    assert disabled.admin_status == "DISABLED"
    assert calls.get_sip_trunk_status(trunk.id).admin_status == "DISABLED"

    with pytest.raises(ApiException) as reset:
        calls.reset_sip_trunk_password(trunk.id)
    assert reset.value.status == 400 and "REGISTERED" in str(_service_exception(reset.value)["text"])

    deleted = calls.delete_sip_trunk_with_http_info(trunk.id)
    assert deleted.status_code == 202 and deleted.data.id == trunk.id
    with pytest.raises(ApiException) as missing:
        calls.get_sip_trunk(trunk.id)
    assert missing.value.status == 404
    assert _service_exception(missing.value)["messageId"] == "NOT_FOUND"


def test_unsupported_trunks_are_a_clear_400(calls: CallsApi, voice_http: httpx.Client) -> None:
    with pytest.raises(ApiException) as tls:
        calls.create_sip_trunk(_static(tls=True))
    assert tls.value.status == 400
    assert "tls" in _service_exception(tls.value)["validationErrors"]  # type: ignore[operator]

    with pytest.raises(ApiException) as g729:
        calls.create_sip_trunk(_static(codecs=["G729"]))
    assert g729.value.status == 400 and "G729" in str(_service_exception(g729.value)["text"])

    # The client's REGISTERED model has no peer address: callplane needs destinationHosts and credentials.
    registered = CallsRegisteredSipTrunkRequest(
        name="pbx",
        channel_limit=2,
        billing_package=CallsBillingPackage(package_type="METERED"),
        type=CallsSipTrunkType.REGISTERED,
    )
    with pytest.raises(ApiException) as no_peer:
        calls.create_sip_trunk(registered)
    assert no_peer.value.status == 400

    tcp = voice_http.post(
        "/calls/1/sip-trunks",
        json={"type": "STATIC", "name": "t", "channelLimit": 1, "destinationHosts": ["10.0.0.1:5060;transport=tcp"]},
    )
    assert tcp.status_code == 400
    [message] = tcp.json()["requestError"]["serviceException"]["validationErrors"]["transport"]
    assert "TCP" in message and "only UDP" in message

    missing_limit = voice_http.post("/calls/1/sip-trunks", json={"type": "STATIC", "name": "t"})
    assert missing_limit.status_code == 400
    exception = missing_limit.json()["requestError"]["serviceException"]
    assert exception["messageId"] == "BAD_REQUEST" and "channelLimit" in exception["validationErrors"]


def test_registered_trunk_keeps_its_password_secret(voice_http: httpx.Client) -> None:
    response = voice_http.post(
        "/calls/1/sip-trunks",
        json={
            "type": "REGISTERED",
            "name": "carrier-account",
            "channelLimit": 3,
            "destinationHosts": ["127.0.0.1:5090"],
            "username": "1001",
            "password": "s3cret-pass",
        },
    )
    assert response.status_code == 202, response.text
    trunk = response.json()
    assert trunk["username"] == "1001" and "password" not in trunk
    assert "s3cret-pass" not in voice_http.get(f"/calls/1/sip-trunks/{trunk['id']}").text
    status = voice_http.get(f"/calls/1/sip-trunks/{trunk['id']}/status").json()
    assert status["registrationStatus"] == "UNREGISTERED"
    reset = voice_http.post(f"/calls/1/sip-trunks/{trunk['id']}/reset-password")
    assert reset.status_code == 400 and "PUT" in reset.json()["requestError"]["serviceException"]["text"]


def test_auth_tenancy_and_other_surfaces_keep_their_errors(
    server: RunningServer, admin: Admin, calls: CallsApi, client: httpx.Client
) -> None:
    trunk = calls.create_sip_trunk(_static())

    for header in ({}, {"Authorization": "App wrong-key"}, {"Authorization": "Basic dXNlcjpwYXNz"}):
        denied = client.get("/calls/1/sip-trunks", headers=header)
        assert denied.status_code == 401
        assert denied.json()["requestError"]["serviceException"]["messageId"] == "UNAUTHORIZED"

    stranger = calls_api(server.base_url, admin.network().token)
    with pytest.raises(ApiException) as hidden:
        stranger.get_sip_trunk(trunk.id)
    assert hidden.value.status == 404
    assert stranger.get_sip_trunks().paging.total_results == 0  # type: ignore[union-attr]

    bearer = client.get("/calls/1/sip-trunks", headers={"Authorization": f"Bearer {calls_key(calls)}"})
    assert bearer.status_code == 200 and bearer.json()["paging"]["totalResults"] == 1

    unknown = client.get("/calls/1/no-such-thing", headers={"Authorization": f"App {calls_key(calls)}"})
    assert unknown.status_code == 404 and "requestError" in unknown.json()
    # FastAPI's own validation body elsewhere is unchanged.
    native = client.get("/v1/calls", params={"limit": "x"}, headers={"Authorization": f"Bearer {calls_key(calls)}"})
    assert native.status_code == 422 and "detail" in native.json()


def calls_key(calls: CallsApi) -> str:
    key: str = calls.api_client.configuration.api_key["APIKeyHeader"]
    return key


def test_service_addresses_are_a_clear_400(calls: CallsApi) -> None:
    for operation in (
        calls.get_sip_trunk_service_addresses,
        calls.get_countries,
        lambda: calls.get_regions(country_code="USA"),
        lambda: calls.delete_sip_trunk_service_address("addr-1"),
    ):
        with pytest.raises(ApiException) as refused:
            operation()
        assert refused.value.status == 400
        assert "service addresses" in str(_service_exception(refused.value)["text"])
