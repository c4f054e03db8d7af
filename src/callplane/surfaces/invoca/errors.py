"""Invoca's error bodies and the route classes that render core errors in them.

The ingestion and Signal APIs write `{"errors": {"class": ..., "invalid_data": ...}}`; the Calls In Progress API
writes `{"error": ..., "message"?: ...}`.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response

from callplane.core.call_tracking.errors import CallInProgressNotFound, OrganizationNotVisible
from callplane.core.ingestion.errors import (
    CampaignNotAccessible,
    CampaignNotExternal,
    CampaignWithoutTranscription,
    ExternalIdReused,
)
from callplane.core.signals.errors import AdvertiserNotAccessible, CallNotMatched
from callplane.core.tenancy.errors import IngestionDisabled, WrongAccountKind
from callplane.errors import CallplaneError, InvalidInput
from callplane.surfaces.http import SurfaceRoute, json_response


def invoca_error(status_code: int, error_class: str, invalid_data: str) -> Response:
    return json_response({"errors": {"class": error_class, "invalid_data": invalid_data}}, status_code)


def unauthorized() -> Response:
    return invoca_error(401, "Unauthorized", "Invalid or missing oauth token")


def invalid_version(version: str, supported: list[str]) -> Response:
    return invoca_error(
        400,
        "InvalidApiVersion",
        f"API version '{version}' is not valid for this route; supported: {', '.join(supported)}",
    )


def record_invalid(problems: list[str]) -> Response:
    return invoca_error(403, "RecordInvalid", "Validation failed: " + ", ".join(problems))


def invalid_input(problems: list[str]) -> Response:
    """Problems found in the request itself (the Signal API's class; processing problems are RecordInvalid)."""
    return invoca_error(403, "InvalidInput", "; ".join(problems))


def render(error: CallplaneError) -> Response:
    if isinstance(error, CallNotMatched):
        return invoca_error(404, "RecordNotFound", error.message)
    if isinstance(error, AdvertiserNotAccessible):
        return invoca_error(403, "UnauthorizedAdvertiser", error.message)
    if isinstance(error, InvalidInput):
        return record_invalid(error.problems)
    if isinstance(error, IngestionDisabled | WrongAccountKind):
        return invoca_error(
            403, "UnauthorizedOperation", "You do not have permissions to perform the requested operation."
        )
    if isinstance(error, CampaignNotAccessible):
        return invoca_error(403, "UnauthorizedAdvertiser", "You do not have access to this advertiser")
    if isinstance(error, CampaignNotExternal | CampaignWithoutTranscription):
        return invoca_error(403, "call.advertiser_campaign_id_from_network", error.message)
    if isinstance(error, ExternalIdReused):
        return invoca_error(409, "RecordNotUnique", error.message)
    raise error


def _render_any(error: Exception) -> Response:
    assert isinstance(error, CallplaneError)
    return render(error)


class InvocaRoute(SurfaceRoute):
    """The route class of the ingestion and Signal API routers."""

    renders = (CallplaneError,)
    render_error = staticmethod(_render_any)


# ---- Calls In Progress API ----------------------------------------------------------------------------------------


def calls_in_progress_error(status_code: int, error: str, message: str | None = None) -> Response:
    """The documented bodies are `{"error": "NotAuthorized"}` and `{"error": "RecordNotFound"}`; callplane adds
    a `message` where the document is silent (bad parameters)."""
    body: dict[str, Any] = {"error": error}
    if message:
        body["message"] = message
    return json_response(body, status_code)


def render_calls_in_progress(error: Exception) -> Response:
    if isinstance(error, OrganizationNotVisible):
        return calls_in_progress_error(401, "NotAuthorized")
    if isinstance(error, CallInProgressNotFound):
        return calls_in_progress_error(404, "RecordNotFound")
    if isinstance(error, InvalidInput):
        return calls_in_progress_error(400, "InvalidParameters", "; ".join(error.problems))
    raise error


class CallsInProgressRoute(SurfaceRoute):
    """The route class of the Calls In Progress router."""

    renders = (CallplaneError,)
    render_error = staticmethod(render_calls_in_progress)
