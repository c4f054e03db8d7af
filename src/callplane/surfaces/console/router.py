"""Routes of the web console (pages and their data API), all under `/console`."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/console", include_in_schema=False)
