"""SIP REFER from the far end on the wire (RFC 3515 blind transfer), SQLite and PostgreSQL: a sipp caller bridged in a
dialog with a sipp callee REFERs the callee to a third sipp phone: 202, NOTIFY 100 then 200 (message/sipfrag), our
BYE to the caller, and the callee and the target end up in a new dialog. A caller that is not bridged gets 603."""

from __future__ import annotations

import secrets
from pathlib import Path

from callplane.testing.sipp import render_scenario
from tests.contact_center.sipp import Peer, agent_phone
from tests.voice.support import App, Receiver, VoiceServer, run_sipp, sipp_result

ACCEPTED = """
  <recv request="NOTIFY">
    <action>
      <ereg regexp="SIP/2.0 100 Trying" search_in="body" check_it="true" assign_to="trying"/>
      <ereg regexp="refer" search_in="hdr" header="Event:" check_it="true" assign_to="event_trying"/>
      <ereg regexp="message/sipfrag" search_in="hdr" header="Content-Type:" check_it="true" assign_to="frag"/>
    </action>
  </recv>
  <Reference variables="trying,event_trying,frag"/>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

  ]]></send>
  <recv request="NOTIFY" timeout="20000">
    <action>
      <ereg regexp="SIP/2.0 200 OK" search_in="body" check_it="true" assign_to="done"/>
      <ereg regexp="terminated" search_in="hdr" header="Subscription-State:" check_it="true" assign_to="over"/>
    </action>
  </recv>
  <Reference variables="done,over"/>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

  ]]></send>
  <recv request="BYE" timeout="10000"/>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

  ]]></send>
"""

REFUSED = """
  <send retrans="500"><![CDATA[

      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 3 BYE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <recv response="200"/>
"""


def _route(app: App, prefix: str) -> str:
    called = f"{prefix}-{secrets.token_hex(3)}"
    routed = app.native.post(f"/v1/voice/configurations/{app.configuration_id}/routes", json={"called_user": called})
    assert routed.status_code == 201, routed.text
    return called


def test_a_bridged_caller_refers_the_callee_to_a_third_phone(
    voice_server: VoiceServer, app: App, receiver: Receiver, tmp_path: Path
) -> None:
    called = _route(app, "refer")
    callee, target = agent_phone(tmp_path / "callee", 200), agent_phone(tmp_path / "target", 200)
    target_port = target.port
    scenario = render_scenario(
        "uac_refer.xml",
        tmp_path,
        REFER_AFTER_MS="3000",
        TARGET="carol",
        TARGET_PORT=str(target_port),
        REFER_STATUS="202",
        AFTER_REFER=ACCEPTED,
    )
    try:
        _transfer(voice_server, app, receiver, scenario, called, callee.port, target.port, callee, target)
    finally:
        callee.stop()
        target.stop()


def _transfer(
    voice_server: VoiceServer,
    app: App,
    receiver: Receiver,
    scenario: Path,
    called: str,
    callee_port: int,
    target_port: int,
    *phones: Peer,
) -> None:
    caller = run_sipp(scenario, remote=f"127.0.0.1:{voice_server.sip_port}", extra=["-s", called])
    parent = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)
    created = app.http.post(
        "/calls/1/dialogs",
        json={
            "parentCallId": parent["callId"],
            "childCallRequest": {"endpoint": {"type": "SIP", "username": "bob", "host": f"127.0.0.1:{callee_port}"}},
        },
    )
    assert created.status_code == 201, created.text
    dialog_id = created.json()["id"]
    child_id = created.json()["childCall"]["id"]
    receiver.wait_for(lambda e: e.get("dialogId") == dialog_id and e["type"] == "DIALOG_ESTABLISHED")

    code, output = sipp_result(caller, timeout_s=40)
    assert code == 0, output  # 202, NOTIFY 100 and 200 (sipfrag), then our BYE
    requested = receiver.wait_for(lambda e: e.get("dialogId") == dialog_id and e["type"] == "DIALOG_TRANSFER_REQUESTED")
    assert requested["properties"]["referTo"] == f"sip:carol@127.0.0.1:{target_port}"
    assert requested["properties"]["transferorCall"]["id"] == parent["callId"]
    receiver.wait_for(lambda e: e.get("dialogId") == dialog_id and e["type"] == "DIALOG_TRANSFER_FINISHED")
    # the callee and the target are bridged in a new dialog; hanging it up sends both their BYEs
    new = receiver.wait_for(
        lambda e: (
            e["type"] == "DIALOG_ESTABLISHED"
            and e.get("dialogId") != dialog_id
            and e["properties"]["dialog"]["parentCall"]["id"] == child_id
        )
    )
    assert new["properties"]["dialog"]["childCall"]["to"] == "carol"
    assert app.http.post(f"/calls/1/dialogs/{new['dialogId']}/hangup").status_code == 200
    for phone in phones:
        code, output = phone.result(timeout_s=30)
        assert code == 0, output


def test_a_caller_who_is_not_bridged_gets_603(
    voice_server: VoiceServer, app: App, receiver: Receiver, tmp_path: Path
) -> None:
    called = _route(app, "alone")
    scenario = render_scenario(
        "uac_refer.xml",
        tmp_path,
        REFER_AFTER_MS="1500",
        TARGET="carol",
        TARGET_PORT="5999",
        REFER_STATUS="603",
        AFTER_REFER=REFUSED,
    )
    caller = run_sipp(scenario, remote=f"127.0.0.1:{voice_server.sip_port}", extra=["-s", called])
    parent = receiver.wait_for(lambda e: e["type"] == "CALL_RECEIVED" and e["properties"]["call"]["to"] == called)
    assert app.http.post(f"/calls/1/calls/{parent['callId']}/answer", json={}).status_code == 200
    code, output = sipp_result(caller, timeout_s=30)
    assert code == 0, output  # 603 Decline to the REFER, then the caller hangs up
    receiver.wait_type(parent["callId"], "CALL_FINISHED")
