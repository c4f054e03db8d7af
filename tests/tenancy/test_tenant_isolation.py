"""No tenant can read or write another's data, by any id."""

from __future__ import annotations

import httpx

from callplane.testing.factories import Admin

URL = "/api/2022-03-01/calls.json"


def _call(external_id: str) -> dict[str, object]:
    return {
        "external_call_unique_id": external_id,
        "start_time": 1460404800,
        "destination_phone_number": 9093900003,
        "calling_phone_number": 8779257384,
        "advertiser_campaign_id_from_network": 86,
        "call_direction": "inbound",
        "recording_url": "https://example.com/a.wav",
    }


def test_tokens_never_cross_tenants(client: httpx.Client, admin: Admin) -> None:
    a, b = admin.network(), admin.network()
    partner = admin.partner()
    a_call = client.post(URL, headers={"Authorization": a.token}, json={"call": _call("shared")}).json()["cuid"]
    b_call = client.post(URL, headers={"Authorization": b.token}, json={"call": _call("shared")}).json()["cuid"]
    assert a_call != b_call  # the same external id is independent in each network

    for token, foreign in ((a.token, b_call), (b.token, a_call), (partner.token, a_call)):
        response = client.get(f"/v1/calls/{foreign}", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 404
    listed_a = client.get("/v1/calls", headers={"Authorization": f"Bearer {a.token}"}).json()["calls"]
    assert [c["id"] for c in listed_a] == [a_call]
    by_campaign = client.get(
        "/v1/calls", params={"campaign": b.campaign_id}, headers={"Authorization": f"Bearer {a.token}"}
    ).json()["calls"]
    assert by_campaign == []


def test_advertiser_scoped_token_sees_only_its_calls(client: httpx.Client, admin: Admin) -> None:
    network = admin.network()
    other_adv = admin.post(
        f"/accounts/{network.account_id}/organizations", {"kind": "advertiser", "external_id": "second"}
    )
    admin.post(f"/accounts/{network.account_id}/campaigns", {"organization_id": other_adv["id"], "external_id": "99"})
    mine = client.post(URL, headers={"Authorization": network.token}, json={"call": _call("x1")}).json()["cuid"]
    theirs = client.post(
        URL,
        headers={"Authorization": network.token},
        json={"call": _call("x2") | {"advertiser_campaign_id_from_network": 99}},
    ).json()["cuid"]
    scoped = admin.post(f"/accounts/{network.account_id}/tokens", {"organization_id": network.advertiser_id})["token"]
    headers = {"Authorization": f"Bearer {scoped}"}
    assert client.get(f"/v1/calls/{mine}", headers=headers).status_code == 200
    assert client.get(f"/v1/calls/{theirs}", headers=headers).status_code == 404
    assert [c["id"] for c in client.get("/v1/calls", headers=headers).json()["calls"]] == [mine]


def test_revoked_token_stops_working(client: httpx.Client, admin: Admin) -> None:
    network = admin.network()
    issued = admin.post(f"/accounts/{network.account_id}/tokens", {"name": "short-lived"})
    assert client.post(URL, headers={"Authorization": issued["token"]}, json={"call": _call("r1")}).status_code == 201
    admin.client.delete(f"/v1/admin/accounts/{network.account_id}/tokens/{issued['id']}").raise_for_status()
    assert client.post(URL, headers={"Authorization": issued["token"]}, json={"call": _call("r2")}).status_code == 401


def test_admin_api_needs_the_admin_token(client: httpx.Client, admin: Admin) -> None:
    network = admin.network()
    assert client.get("/v1/admin/accounts").status_code == 401
    assert client.get("/v1/admin/accounts", headers={"Authorization": f"Bearer {network.token}"}).status_code == 401
    assert client.get("/v1/calls").status_code == 401


def test_tokens_are_stored_hashed(client: httpx.Client, admin: Admin) -> None:
    network = admin.network()
    listed = admin.client.get(f"/v1/admin/accounts/{network.account_id}/tokens").json()["tokens"]
    assert listed and all("token" not in t for t in listed)
    assert all(network.token.startswith(t["token_prefix"]) for t in listed if t["name"] == "test")


def test_list_filters_and_paging(client: httpx.Client, admin: Admin) -> None:
    network = admin.network()
    headers = {"Authorization": f"Bearer {network.token}"}
    ids = [
        client.post(
            URL,
            headers={"Authorization": network.token},
            json={"call": _call(f"p{i}") | {"start_time": 1460404800 + i * 3600}},
        ).json()["cuid"]
        for i in range(5)
    ]
    page1 = client.get("/v1/calls", params={"limit": 2}, headers=headers).json()
    page2 = client.get("/v1/calls", params={"limit": 2, "cursor": page1["next_cursor"]}, headers=headers).json()
    page3 = client.get("/v1/calls", params={"limit": 2, "cursor": page2["next_cursor"]}, headers=headers).json()
    seen = [c["id"] for c in page1["calls"] + page2["calls"] + page3["calls"]]
    assert sorted(seen) == sorted(ids) and page3["next_cursor"] is None
    window = client.get(
        "/v1/calls",
        headers=headers,
        params={"started_after": "2016-04-11T21:00:00Z", "started_before": "2016-04-11T23:00:00Z"},
    ).json()["calls"]
    assert sorted(c["external_id"] for c in window) == ["p1", "p2"]
    by_number = client.get("/v1/calls", headers=headers, params={"phone_number": "(877) 925-7384"}).json()["calls"]
    assert len(by_number) == 5
    assert client.get("/v1/calls", headers=headers, params={"phone_number": "+442071838750"}).json()["calls"] == []
    assert len(client.get("/v1/calls", headers=headers, params={"campaign": "86"}).json()["calls"]) == 5
    assert len(client.get("/v1/calls", headers=headers, params={"status": "queued"}).json()["calls"]) == 5
    assert client.get("/v1/calls", headers=headers, params={"status": "failed"}).json()["calls"] == []
