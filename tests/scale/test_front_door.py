"""Scale-out behind the SIP front door: PostgreSQL, two API processes, two media nodes and Kamailio on loopback, every
one a real process (callplane.testing.front). sipp calls the front door's address only.

One test, in phases that build on each other (the cluster costs more to start than a phase to run):
1. 100 calls spread over both nodes (round robin), each answered by the application through the API processes in
   turn, each ending CALL_FINISHED exactly once;
2. a node killed with SIGKILL mid-call: Kamailio's probe takes it out, later calls all land on the other node, and
   its calls end CALL_FAILED (PLATFORM, ENGINE_RESTARTED) once, ended by the surviving node;
3. the killed node started again comes back into rotation; the other node is drained through the admin API: it
   answers OPTIONS with 503, takes no new call, its live calls finish normally, then it exits by itself.
No call is lost from the API's point of view: every call the database holds ends with one terminal event.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from callplane.testing.front import Cluster, cluster, sip_options


@pytest.fixture
def front(tmp_path: Path) -> Iterator[Cluster]:
    with cluster(tmp_path) as running:
        yield running


def _one_terminal_each(front: Cluster, ids: list[str], timeout_s: float = 60) -> dict[str, dict[str, object]]:
    """Each call's single terminal event (waits for all; fails on a missing or a duplicate one)."""
    app = front.app
    assert app is not None
    app.wait(lambda: all(app.terminal(call_id) for call_id in ids), timeout_s, "a terminal event for every call")
    events = {call_id: app.terminal(call_id) for call_id in ids}
    assert all(len(found) == 1 for found in events.values()), {k: len(v) for k, v in events.items() if len(v) != 1}
    return {call_id: found[0] for call_id, found in events.items()}


def _established(front: Cluster, count: int, timeout_s: float = 60) -> list[str]:
    """Wait until `count` more calls than before are answered; their ids."""
    app = front.app
    assert app is not None

    def answered() -> list[str]:
        return [row.id for row in front.calls() if row.state in ("ESTABLISHED", "FINISHED", "FAILED")]

    app.wait(lambda: len(answered()) >= count, timeout_s, f"{count} answered calls")
    return answered()


def test_calls_through_the_front_door_spread_drain_and_survive_a_killed_node(front: Cluster) -> None:
    app = front.app
    assert app is not None
    port_a, port_b = front.node_ports["media-a"], front.node_ports["media-b"]
    assert sip_options(port_a) == 200 and sip_options(port_b) == 200  # both accepting

    # ---- 1. 100 calls, spread over both nodes -------------------------------------------------------------
    code, output = front.finished(front.callers(100, rate=10, call_ms=2000, name="spread"))
    assert code == 0, output
    first = front.calls()
    assert len(first) == 100
    per_node = Counter(row.node_id for row in first)
    assert set(per_node) == {"media-a", "media-b"}, per_node
    assert min(per_node.values()) >= 40, per_node  # round robin, less any call a node's refusal sent on
    assert set(app.answers.values()) == {200}, Counter(app.answers.values())
    ended = _one_terminal_each(front, [row.id for row in first])
    assert {event["type"] for event in ended.values()} == {"CALL_FINISHED"}

    # ---- 2. a node killed mid-call ------------------------------------------------------------------------
    held = front.callers(10, rate=20, call_ms=60000, name="held")
    live = _established(front, 110)[100:]
    on_b = [row.id for row in front.calls()[100:] if row.node_id == "media-b"]
    on_a = [row.id for row in front.calls()[100:] if row.node_id == "media-a"]
    assert on_a and on_b and len(live) == 10
    mark = front.front_mark()
    front.kill("media-b")
    front.wait_front_says(f"media node down OPTIONS sip:127.0.0.1:{port_b}", after=mark)
    code, output = front.finished(front.callers(10, rate=10, call_ms=500, name="after-kill"))
    assert code == 0, output
    after_kill = front.calls()[110:]
    assert len(after_kill) == 10 and {row.node_id for row in after_kill} == {"media-a"}
    # media-b's calls are ended by media-a once media-b's heartbeat is stale: the platform ended them
    failed = _one_terminal_each(front, on_b)
    for event in failed.values():
        log = event["properties"]["callLog"]  # type: ignore[index]
        assert event["type"] == "CALL_FAILED" and log["hangupSource"] == "PLATFORM", log
        assert log["errorCode"]["name"] == "ENGINE_RESTARTED", log
    for call_id in on_a:  # media-a's own calls are untouched: the application hangs them up through the API
        assert app.clients[1].post(f"/calls/1/calls/{call_id}/hangup", json={}).status_code == 200
    assert {event["type"] for event in _one_terminal_each(front, on_a).values()} == {"CALL_FINISHED"}
    held.kill()
    held.communicate()

    # ---- 3. back into rotation; the other node drained ----------------------------------------------------
    mark = front.front_mark()
    front.start_node("media-b")
    front.wait_front_says(f"media node up OPTIONS sip:127.0.0.1:{port_b}", after=mark)
    before = len(front.calls())
    draining_calls = front.callers(10, rate=20, call_ms=8000, name="drained")
    _established(front, before + 10)
    carried = [row.id for row in front.calls()[before:] if row.node_id == "media-a"]
    assert carried, "media-a carries some of the calls it will let finish"
    mark = front.front_mark()
    answer = front.admin("POST", "/v1/admin/voice/nodes/media-a/drain", api=1)
    assert answer.status_code == 200, answer.text
    drained_at = datetime.fromisoformat(answer.json()["drain_requested_at"])
    assert front.admin("POST", "/v1/admin/voice/nodes/no-such-node/drain").status_code == 404
    app.wait(lambda: sip_options(port_a) == 503, 30, "media-a answers OPTIONS with 503")  # at its next heartbeat
    front.wait_front_says(f"media node down OPTIONS sip:127.0.0.1:{port_a}", after=mark)  # out of rotation
    after_drain = len(front.calls())
    code, output = front.finished(front.callers(10, rate=10, call_ms=500, name="while-draining"))
    assert code == 0, output
    new_calls = front.calls()[after_drain:]
    assert len(new_calls) == 10 and {row.node_id for row in new_calls} == {"media-b"}
    code, output = front.finished(draining_calls)
    assert code == 0, output  # the drained node's calls lasted their full length: the callers hung up
    finished = _one_terminal_each(front, carried)
    assert {event["type"] for event in finished.values()} == {"CALL_FINISHED"}
    assert {event["properties"]["callLog"]["hangupSource"] for event in finished.values()} == {"ENDPOINT"}  # type: ignore[index]
    ends = [row.ended_at for row in front.calls() if row.id in carried]
    assert all(end is not None and end > drained_at for end in ends)  # live when the drain began, finished after
    assert front.wait_exit("media-a", 60) == 0  # it stopped by itself once its calls had ended
    nodes = {node["id"]: node for node in front.admin("GET", "/v1/admin/voice/nodes").json()["nodes"]}
    assert nodes["media-a"]["stopped_at"] is not None and nodes["media-a"]["drain_requested_at"] is not None
    assert nodes["media-b"]["alive"] is True and nodes["media-b"]["drain_requested_at"] is None

    # ---- no call lost: every call the database holds ended, with exactly one terminal event -------------
    rows = front.calls()
    assert len(rows) == 140
    assert all(row.state in ("FINISHED", "FAILED") for row in rows), Counter(row.state for row in rows)
    _one_terminal_each(front, [row.id for row in rows])
