"""Native admin API: the media nodes (`callplane media`, or `serve` with the engine) and whether they are alive."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from callplane.live.nodes import list_nodes, request_drain
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
                "drain_requested_at": node.drain_requested_at,
            }
            for node, alive in found
        ]
    }


@router.post("/voice/nodes/{node_id}/drain")
async def drain_media_node(node_id: str, session: SessionDep) -> dict[str, Any]:
    """Drain a node: new outbound calls go elsewhere now; from its next heartbeat it answers 503 to OPTIONS and new
    INVITEs (the SIP front door takes it out of rotation), its live calls finish, then it exits. Asking again is
    harmless. A node started again (same id) takes calls again."""
    node = await request_drain(session, node_id=node_id)
    if node is None:
        raise HTTPException(404, f"no media node {node_id}")
    await session.commit()
    return {"id": node.id, "drain_requested_at": node.drain_requested_at, "stopped_at": node.stopped_at}
