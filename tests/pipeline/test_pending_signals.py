"""A Signal API submission sent with call_in_progress before its call exists is applied when the call is taken up."""

from __future__ import annotations

import httpx

from tests.pipeline.conftest import FileServer, Pipeline, wait_for_outcome


def test_pending_signal_applies_when_the_call_arrives(pipeline: Pipeline, files: FileServer) -> None:
    network = pipeline.admin.network()
    with httpx.Client(base_url=pipeline.server.base_url, timeout=30) as client:
        early = client.post(
            "/api/2018-02-01/transactions.json",
            headers={"Authorization": network.token},
            json={
                "search": {"call_start_time": "2016/04/11T20:00:20Z", "calling_phone_number": "+1 877 925 7384"},
                "signals": [{"name": "Sale", "partner_unique_id": "order-1", "revenue": "19.99"}],
                "custom_data": [{"name": "account_type", "value": "Gold"}],
                "call_in_progress": True,
            },
        )
        assert early.status_code == 201 and early.content == b""
        response = client.post(
            "/api/2022-03-01/calls.json",
            headers={"Authorization": network.token},
            json={
                "call": {
                    "external_call_unique_id": "arrives-after-its-signal",
                    "start_time": 1460404800,  # 2016-04-11 20:00:00 UTC
                    "destination_phone_number": 9093900003,
                    "calling_phone_number": 8779257384,
                    "advertiser_campaign_id_from_network": 86,
                    "call_direction": "inbound",
                    # Mono is refused at the recording stage: the signal applies before any stage runs.
                    "recording_url": files.url("mono.wav"),
                }
            },
        )
        assert response.status_code == 201
        call = wait_for_outcome(client, network.token, response.json()["cuid"])
    assert [(s["name"], s["partner_unique_id"], s["revenue"], s["source"]) for s in call["signals"]] == [
        ("Sale", "order-1", "19.99", "api")
    ]
    assert call["custom_data"] == [{"name": "account_type", "value": "Gold", "source": "api"}]
