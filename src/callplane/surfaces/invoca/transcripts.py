"""Invoca's transcript endpoint: GET /call/transcript/{call_id}?transcript_format=… (plain text).

Authenticated like the other Invoca routes (``oauth_token`` query parameter or a bearer token) and scoped to
the token's account; ``call_id`` is the ``cuid`` the ingestion API answered with.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from callplane.core.calls import service as calls
from callplane.core.calls.errors import CallNotFound
from callplane.core.transcripts import service as transcripts
from callplane.surfaces.context import app_context
from callplane.surfaces.http import JsonRoute, bearer_token
from callplane.surfaces.invoca import errors

router = APIRouter(route_class=JsonRoute, tags=["Invoca Transcripts"])

DEFAULT_FORMAT = "caller_agent_conversation"


@router.get("/call/transcript/{call_id}", response_model=None)
async def get_transcript(call_id: str, request: Request, transcript_format: str = DEFAULT_FORMAT) -> Response:
    """The call's transcript as text: caller, agent, caller_agent_block or caller_agent_conversation."""
    context = app_context(request)
    token = request.query_params.get("oauth_token") or bearer_token(request)
    async with context.sessions() as session:
        principal = await context.lookups.principal_for_token(session, token) if token else None
        if principal is None:
            return errors.unauthorized()
        try:
            call = await calls.get_call(session=session, principal=principal, call_id=call_id)
            row = transcripts.require_transcript(call, await transcripts.transcript_row(session, call.id))
            if transcript_format == "text":
                raise transcripts.UnknownTranscriptFormat()
            return PlainTextResponse(transcripts.transcript_text(row, transcript_format))
        except CallNotFound:
            return errors.invoca_error(404, "RecordNotFound", f"Call {call_id} not found")
        except transcripts.TranscriptNotAvailable as error:
            return errors.invoca_error(404, "TranscriptNotAvailable", error.message)
        except transcripts.UnknownTranscriptFormat:
            return errors.invoca_error(
                400,
                "InvalidTranscriptFormat",
                f"transcript_format {transcript_format!r} must be caller, agent, caller_agent_block "
                "or caller_agent_conversation",
            )
