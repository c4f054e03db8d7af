"""Native admin API: the media nodes (`callplane media`, or `serve` with the engine) and whether they are alive."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from callplane.live.nodes import list_nodes
from callplane.surfaces.admin.router import require_admin
from callplane.surfaces.context import ContextDep, SessionDep
from callplane.surfaces.http import JsonRoute

router = APIRouter(
    route_class=JsonRoute, prefix="/v1/admin", tags=["Admin: media nodes"], dependencies=[Depends(require_admin)]
)


@router.get("/voice/nodes")
async def media_nodes(session: SessionDep, context: ContextDep) -> dict[str, Any]:
    """Each node's heartbeat, live calls at its last beat and SIP address; `alive` as new calls and commands see it."""
    found = await list_nodes(session, dead_after_s=context.settings.voice_node_dead_after_seconds)
    return {
        "nodes": [
            {
                "id": node.id,
                "alive": alive,
                "live_calls": node.live_calls,
                "sip_address": node.sip_address,
                "started_at": node.started_at,
                "heartbeat_at": node.heartbeat_at,
                "stopped_at": node.stopped_at,
            }
            for node, alive in found
        ]
    }
