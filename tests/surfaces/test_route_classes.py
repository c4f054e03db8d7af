"""Every vendor route renders its errors through its surface's route class (surfaces/http.py `SurfaceRoute`).

A route mounted with another class would answer its errors in FastAPI's `{"detail"}` body, which no vendor client
reads; this catches a new router that forgot its `route_class`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from callplane.app import create_app
from callplane.settings import Settings
from callplane.surfaces.ccai.errors import CcaiRoute
from callplane.surfaces.http import SurfaceRoute
from callplane.surfaces.infobip.errors import InfobipRoute
from callplane.surfaces.invoca.errors import CallsInProgressRoute, InvocaRoute
from callplane.surfaces.registry import surface_of


def _api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)  # FastAPI keeps an included router whole
        if included is not None:
            yield from _api_routes(included.routes)


def _routes(tmp_path: Path) -> list[APIRoute]:
    app = create_app(Settings(environment="test", data_dir=tmp_path, admin_token="t", log_level="WARNING"))
    return list(_api_routes(app.router.routes))


def test_infobip_and_ccai_routes_use_their_surfaces_route_class(tmp_path: Path) -> None:
    routes = _routes(tmp_path)
    by_surface = {"infobip": InfobipRoute, "ccai": CcaiRoute}
    checked = [route for route in routes if surface_of(route.path) in by_surface]
    assert len(checked) > 60
    wrong = [route.path for route in checked if not isinstance(route, by_surface[surface_of(route.path)])]
    assert wrong == []


def test_invoca_write_routes_render_core_errors_in_their_apis_body(tmp_path: Path) -> None:
    routes = [route for route in _routes(tmp_path) if surface_of(route.path) == "invoca"]
    calls_in_progress = [route for route in routes if "/calls_in_progress" in route.path]
    writes = [route for route in routes if route.path.endswith(("/calls.json", "/calls", "/transactions.json"))]
    assert calls_in_progress and writes
    assert all(isinstance(route, CallsInProgressRoute) for route in calls_in_progress)
    assert all(isinstance(route, InvocaRoute) for route in writes)


def test_native_and_admin_routes_keep_fastapis_bodies(tmp_path: Path) -> None:
    routes = [route for route in _routes(tmp_path) if surface_of(route.path) in ("native", "admin")]
    assert routes
    assert not any(isinstance(route, SurfaceRoute) for route in routes)
