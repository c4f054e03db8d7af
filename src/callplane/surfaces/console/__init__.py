"""The operators' web console under `/console`: sign-in, calls, search, live calls, dashboards and configuration."""

from callplane.surfaces.console.router import router

__all__ = ["router"]
