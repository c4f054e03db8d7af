"""The OpenAPI document's own promises: unique operation ids, vendor bodies declared, each surface's error shape;
and every route decodes JSON through the strict decoder (surfaces/http.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from callplane.app import create_app
from callplane.settings import Settings
from callplane.surfaces.http import JsonRoute
from callplane.surfaces.openapi import SURFACE_ERRORS, VENDOR_OPERATIONS
from callplane.surfaces.registry import surface_of


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    data_dir: Path = tmp_path_factory.mktemp("openapi")
    return create_app(Settings(environment="test", data_dir=data_dir, admin_token="x"))


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in document["paths"].items() for method, op in item.items()]


def test_operation_ids_are_unique(app: FastAPI) -> None:
    counts = Counter(op["operationId"] for _, _, op in _operations(app.openapi()))
    assert [name for name, count in counts.items() if count > 1] == []


def test_vendor_routes_declare_their_bodies(app: FastAPI) -> None:
    document = app.openapi()
    for method, path in VENDOR_OPERATIONS:
        assert "requestBody" in document["paths"][path][method], f"{method.upper()} {path}"


def test_each_operation_declares_its_surface_errors(app: FastAPI) -> None:
    for method, path, operation in _operations(app.openapi()):
        schema_name, statuses = SURFACE_ERRORS[surface_of(path)]
        for status in statuses:
            content = operation["responses"][str(status)]["content"]["application/json"]["schema"]
            assert content == {"$ref": f"#/components/schemas/{schema_name}"}, f"{method.upper()} {path} {status}"
        if surface_of(path) in ("infobip", "ccai", "invoca"):
            assert "422" not in operation["responses"], f"{method.upper()} {path}: the surface never answers 422"


def test_every_route_decodes_json_strictly(app: FastAPI) -> None:
    routes = [route for route in app.routes if isinstance(route, APIRoute)]
    assert routes
    assert [route.path for route in routes if not isinstance(route, JsonRoute)] == [
        "/healthz",
        "/readyz",
        "/metrics",  # no body: Prometheus text out
    ]
