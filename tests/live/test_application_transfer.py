"""Application transfer (Infobip's guide, "Transfer calls between applications") on the in-memory engine, driven
through the official client: an IVR configuration offers its call to a call-center configuration of the same
account, which accepts (the call and its later events are then the call center's), rejects, or lets it time out."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from infobip_api_client.exceptions import ApiException
from infobip_api_client.models.calls_application_transfer_request import CallsApplicationTransferRequest

from callplane.testing.factories import Network
from callplane.testing.infobip import calls_api
from tests.live.support import CallsApp, LiveServer, Receiver, calls_app

pytestmark = pytest.mark.xdist_group("live-fake-engine")


@pytest.fixture
def center_app(live: LiveServer, receiver: Receiver, account: Network) -> Iterator[CallsApp]:
    """A second configuration of the same account (the receiving application), subscribed to the same receiver."""
    with calls_app(live, receiver, account) as application:
        yield application


def _answered_inbound(live: LiveServer, app: CallsApp, receiver: Receiver) -> tuple[str, str]:
    """A caller routed to `app`'s configuration, answered: (our call id, the engine's)."""
    called = f"ivr-{secrets.token_hex(3)}"
    app.route(called)
    engine_id = live.fake.incoming(called)
    received = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)
    call_id: str = received["callId"]
    assert app.http.post(f"/calls/1/calls/{call_id}/answer", json={}).status_code == 200
    receiver.wait_type(call_id, "CALL_ESTABLISHED")
    return call_id, engine_id


def _event(receiver: Receiver, call_id: str, kind: str) -> dict[str, Any]:
    return receiver.wait_for(lambda e: e.get("callId") == call_id and e["type"] == kind, timeout_s=15)


def test_the_receiving_application_accepts_and_owns_the_call_from_then_on(
    live: LiveServer, app: CallsApp, center_app: CallsApp, receiver: Receiver
) -> None:
    call_id, engine_id = _answered_inbound(live, app, receiver)
    api = calls_api(live.base_url, app.token)
    request = CallsApplicationTransferRequest(
        destination_calls_configuration_id=center_app.configuration_id, timeout=20, custom_data={"queue": "billing"}
    )
    assert api.application_transfer(call_id, request).status == "PENDING"

    requested = _event(receiver, call_id, "APPLICATION_TRANSFER_REQUESTED")
    assert requested["callsConfigurationId"] == center_app.configuration_id  # the receiving application's event
    properties = requested["properties"]
    assert properties["sourceCallsConfigurationId"] == app.configuration_id
    assert properties["call"]["id"] == call_id and properties["call"]["state"] == "ESTABLISHED"
    assert set(properties) == {"sourceCallsConfigurationId", "sourceApplicationId", "transferId", "call", "locationId"}
    with pytest.raises(ApiException) as pending:  # one transfer at a time
        api.application_transfer(call_id, request)
    assert pending.value.status == 400

    center = calls_api(live.base_url, center_app.token)
    assert center.application_transfer_accept(call_id, properties["transferId"]).status == "PENDING"
    finished = _event(receiver, call_id, "APPLICATION_TRANSFER_FINISHED")
    assert finished["callsConfigurationId"] == app.configuration_id  # the requesting application is told
    assert finished["properties"]["destinationCallsConfigurationId"] == center_app.configuration_id
    assert finished["properties"]["transferId"] == properties["transferId"]
    call = center_app.http.get(f"/calls/1/calls/{call_id}").json()
    assert call["callsConfigurationId"] == center_app.configuration_id
    assert call["customData"]["queue"] == "billing"

    live.fake.far_end(engine_id).hang_up()
    ended = _event(receiver, call_id, "CALL_FINISHED")
    assert ended["callsConfigurationId"] == center_app.configuration_id  # its events are the new owner's now
    with pytest.raises(ApiException) as gone:  # the transfer is over
        center.application_transfer_accept(call_id, properties["transferId"])
    assert gone.value.status in (400, 404)


def test_a_rejected_or_unanswered_transfer_fails_and_the_call_stays(
    live: LiveServer, app: CallsApp, center_app: CallsApp, receiver: Receiver
) -> None:
    call_id, engine_id = _answered_inbound(live, app, receiver)
    api = calls_api(live.base_url, app.token)
    api.application_transfer(
        call_id, CallsApplicationTransferRequest(destination_calls_configuration_id=center_app.configuration_id)
    )
    transfer_id = _event(receiver, call_id, "APPLICATION_TRANSFER_REQUESTED")["properties"]["transferId"]
    with pytest.raises(ApiException) as unknown:
        api.application_transfer_reject(call_id, "no-such-transfer")
    assert unknown.value.status == 404
    assert api.application_transfer_reject(call_id, transfer_id).status == "PENDING"
    failed = _event(receiver, call_id, "APPLICATION_TRANSFER_FAILED")
    assert failed["callsConfigurationId"] == app.configuration_id
    assert failed["properties"] == {
        "sourceCallsConfigurationId": app.configuration_id,
        "sourceApplicationId": app.configuration_id,
        "destinationCallsConfigurationId": center_app.configuration_id,
        "destinationApplicationId": center_app.configuration_id,
        "transferId": transfer_id,
    }

    # nobody answers within the timeout (1 s): it fails too
    api.application_transfer(
        call_id,
        CallsApplicationTransferRequest(destination_calls_configuration_id=center_app.configuration_id, timeout=1),
    )
    receiver.wait_for(
        lambda e: (
            e.get("callId") == call_id
            and e["type"] == "APPLICATION_TRANSFER_FAILED"
            and e["properties"]["transferId"] != transfer_id
        ),
        timeout_s=15,
    )
    assert app.http.get(f"/calls/1/calls/{call_id}").json()["callsConfigurationId"] == app.configuration_id

    # refusals: an unknown configuration, the call's own, a missing field
    for body, status in (
        ({"destinationCallsConfigurationId": "nope"}, 404),
        ({"destinationCallsConfigurationId": app.configuration_id}, 400),
        ({}, 400),
    ):
        refused = app.http.post(f"/calls/1/calls/{call_id}/application-transfer", json=body)
        assert refused.status_code == status, refused.text
        assert "serviceException" in json.loads(refused.text)["requestError"]
    # a transfer still pending when the call ends fails (before the call's terminal event)
    seen = {e["properties"]["transferId"] for e in receiver.events(call_id) if e["type"].startswith("APPLICATION_")}
    api.application_transfer(
        call_id, CallsApplicationTransferRequest(destination_calls_configuration_id=center_app.configuration_id)
    )
    pending = receiver.wait_for(
        lambda e: (
            e.get("callId") == call_id
            and e["type"] == "APPLICATION_TRANSFER_REQUESTED"
            and e["properties"]["transferId"] not in seen
        )
    )
    live.fake.far_end(engine_id).hang_up()
    receiver.single_terminal(call_id)
    receiver.wait_for(
        lambda e: (
            e.get("callId") == call_id
            and e["type"] == "APPLICATION_TRANSFER_FAILED"
            and e["properties"]["transferId"] == pending["properties"]["transferId"]
        ),
        timeout_s=15,
    )
