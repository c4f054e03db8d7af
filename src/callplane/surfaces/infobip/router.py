"""The Infobip Calls API router mounted by the app; each resource group lives in its own module.

Add a group with `router.include_router(...)` here, or mount it in app.py next to this one; give its router
`route_class=InfobipRoute` (errors.py) so that its errors are written in Infobip's body.
"""

from __future__ import annotations

from fastapi import APIRouter

from callplane.surfaces.infobip.conferences import router as conferences_router
from callplane.surfaces.infobip.errors import InfobipRoute
from callplane.surfaces.infobip.files import router as files_router
from callplane.surfaces.infobip.media_streams import calls_router as media_stream_calls_router
from callplane.surfaces.infobip.media_streams import configs_router as media_stream_configs_router
from callplane.surfaces.infobip.sip_trunks import router as sip_trunks_router
from callplane.surfaces.infobip.speech import router as speech_router

router = APIRouter(route_class=InfobipRoute, tags=["Infobip Calls"])
router.include_router(sip_trunks_router)
router.include_router(files_router)
router.include_router(speech_router)
router.include_router(conferences_router)
router.include_router(media_stream_configs_router)
router.include_router(media_stream_calls_router)
