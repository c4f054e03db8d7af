"""The Infobip Calls API router mounted by the app; each resource group lives in its own module.

Add a group with `router.include_router(...)` here, or mount it in app.py next to this one: every
route under /calls/1 gets Infobip's error body from `common.install_error_handlers`.
"""

from __future__ import annotations

from fastapi import APIRouter

from callplane.surfaces.http import JsonRoute
from callplane.surfaces.infobip.files import router as files_router
from callplane.surfaces.infobip.sip_trunks import router as sip_trunks_router

router = APIRouter(route_class=JsonRoute, tags=["Infobip Calls"])
router.include_router(sip_trunks_router)
router.include_router(files_router)
