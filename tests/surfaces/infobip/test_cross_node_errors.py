"""A command that would join calls carried by two media nodes is refused as a client error on every surface, not a
500 (docs/decisions.md: a call family stays on one node)."""

from __future__ import annotations

from callplane.errors import Conflict
from callplane.live.calls import CallOnAnotherNode
from callplane.surfaces.infobip.errors import from_core_error


def test_a_call_on_another_node_is_an_infobip_400_conflict() -> None:
    error = CallOnAnotherNode("conference c-1 is mixed by media node node-b")
    assert isinstance(error, Conflict)
    rendered = from_core_error(error)
    assert rendered.status_code == 400
    assert rendered.message_id == "CONFLICT"
    assert "node-b" in str(rendered)
