"""Routes of the web console (pages and their data API), all under `/console`.

Handlers stay thin: who is looking (session.py), one read or write (queries.py), one template or JSON body.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import json
import re
import secrets
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.ext.asyncio import AsyncSession

from callplane.core.calls.errors import CallNotFound
from callplane.core.calls.service import CallNotRetryable, recording_of
from callplane.core.recordings.targets import TargetPolicy
from callplane.core.search import QUERY_SYNTAX, Match
from callplane.core.transcripts import service as transcripts
from callplane.errors import CallplaneError, InvalidInput
from callplane.surfaces.console import queries
from callplane.surfaces.console import session as sessions
from callplane.surfaces.console.session import Viewer
from callplane.surfaces.context import AppContext, ContextDep, SessionDep
from callplane.surfaces.http import JsonRoute

HERE = Path(__file__).parent
STATIC = HERE / "static"

# Autoescaping on every template, whatever its name: transcript text, names and custom data are always text.
_environment = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates = Jinja2Templates(env=_environment)

SECURITY_HEADERS = {
    # No inline script anywhere: everything comes from /console/static. wavesurfer styles its shadow DOM inline.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# JsonRoute like every router (the console's bodies are forms: nothing for it to decode, nothing changes).
router = APIRouter(prefix="/console", include_in_schema=False, route_class=JsonRoute)


# --- who is looking -------------------------------------------------------------------------------------------


def secret_key(request: Request, context: AppContext) -> str:
    """The secret key the session cookies are derived from, read once per app (it may live in a file)."""
    key: str | None = getattr(request.app.state, "console_secret_key", None)
    if key is None:
        key = request.app.state.console_secret_key = context.settings.effective_secret_key()
    return key


async def optional_viewer(request: Request, context: ContextDep) -> Viewer | None:
    value = request.cookies.get(sessions.COOKIE)
    if not value:
        return None
    data = sessions.unseal(secret_key(request, context), value)
    if data is None:
        return None
    if data["sub"] == sessions.ADMIN:
        if not sessions.same_secret(data.get("adm"), sessions.admin_digest(context.admin_token)):
            return None
        return Viewer(csrf=data["csrf"], account_id=None, account_name="All accounts (admin)")
    # Its own session: the handler's stays unused until it begins its own transaction.
    async with context.sessions() as session:
        return await queries.tenant_viewer(session, token_id=data["sub"], csrf=data["csrf"])


async def page_viewer(request: Request, viewer: Annotated[Viewer | None, Depends(optional_viewer)]) -> Viewer:
    if viewer is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(303, "sign in first", headers={"Location": "/console/login?" + urlencode({"next": target})})
    return viewer


async def api_viewer(viewer: Annotated[Viewer | None, Depends(optional_viewer)]) -> Viewer:
    if viewer is None:
        raise HTTPException(401, "sign in to the console first")
    return viewer


PageViewer = Annotated[Viewer, Depends(page_viewer)]
ApiViewer = Annotated[Viewer, Depends(api_viewer)]


def _same_origin(request: Request) -> bool:
    """A browser names the page's origin on every POST; one from another site is refused whatever it carries."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


async def posted_form(request: Request, viewer: PageViewer) -> dict[str, str]:
    """The form's fields, once its CSRF token matches the session's and it came from this origin."""
    form = await request.form()
    if not _same_origin(request) or not sessions.same_secret(str(form.get("csrf", "")), viewer.csrf):
        raise HTTPException(403, "the form is stale or came from another site; reload the page and try again")
    return {key: value for key, value in form.items() if isinstance(value, str)}


FormDep = Annotated[dict[str, str], Depends(posted_form)]


def page(request: Request, name: str, viewer: Viewer | None, status_code: int = 200, **values: Any) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, name, {"viewer": viewer, **values}, status_code=status_code, headers=SECURITY_HEADERS
    )
    return response


def error_page(request: Request, viewer: Viewer, status_code: int, message: str) -> HTMLResponse:
    """What went wrong, as a page of the console (the data API answers JSON instead)."""
    return page(request, "error.html", viewer, status_code, message=message)


def redirect(location: str) -> Response:
    return Response(status_code=303, headers={"Location": location, **SECURITY_HEADERS})


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/console/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console/calls"


def _cookie_secure(request: Request) -> bool:
    return request.url.scheme == "https"


# --- sign in and out ------------------------------------------------------------------------------------------


@router.get("", response_model=None)
@router.get("/", response_model=None)
async def home() -> Response:
    return redirect("/console/calls")


@router.get("/login", response_model=None)
async def login_form(request: Request, next: str | None = None) -> Response:
    csrf = request.cookies.get(sessions.LOGIN_COOKIE) or secrets.token_urlsafe(32)
    response = page(request, "login.html", None, csrf=csrf, next=_safe_next(next), error=None)
    response.set_cookie(
        sessions.LOGIN_COOKIE,
        csrf,
        max_age=3600,
        path=sessions.COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_cookie_secure(request),
    )
    return response


@router.post("/login", response_model=None)
async def login(request: Request, context: ContextDep, session: SessionDep) -> Response:
    form = await request.form()
    token = str(form.get("token", "")).strip()
    next_page = _safe_next(str(form.get("next", "")))
    csrf = request.cookies.get(sessions.LOGIN_COOKIE, "")
    if not _same_origin(request) or not csrf or not sessions.same_secret(str(form.get("csrf", "")), csrf):
        return page(request, "login.html", None, 403, csrf=csrf, next=next_page, error="The form expired; try again.")
    subject: str | None = None
    if token and hmac.compare_digest(token.encode(), context.admin_token.encode()):
        subject = sessions.ADMIN
    elif token:
        principal = await context.lookups.principal_for_token(session, token)
        subject = principal.token_id if principal is not None else None
    if subject is None:
        return page(request, "login.html", None, 401, csrf=csrf, next=next_page, error="That token is not valid.")
    value, _csrf = sessions.seal(secret_key(request, context), subject=subject, admin_token=context.admin_token)
    response = redirect(next_page)
    response.set_cookie(
        sessions.COOKIE,
        value,
        max_age=sessions.SESSION_SECONDS,
        path=sessions.COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_cookie_secure(request),
    )
    response.delete_cookie(sessions.LOGIN_COOKIE, path=sessions.COOKIE_PATH)
    return response


@router.post("/logout", response_model=None)
async def logout(_form: FormDep) -> Response:
    response = redirect("/console/login")
    response.delete_cookie(sessions.COOKIE, path=sessions.COOKIE_PATH, httponly=True, samesite="strict")
    return response


# --- calls ----------------------------------------------------------------------------------------------------


def _date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as error:
        raise HTTPException(422, "dates are YYYY-MM-DD") from error


def call_filters(
    started_from: str | None = None,
    started_to: str | None = None,
    campaign: str = "",
    number: str = "",
    status: str = "",
    origin: str = "",
    signal: str = "",
    direction: str = "",
    q: str = "",  # core/search bounds it (MAX_QUERY_CHARS) and says why on the page
) -> queries.CallFilters:
    return queries.CallFilters(
        started_from=_date(started_from),
        started_to=_date(started_to),
        campaign=campaign.strip(),
        number=number.strip(),
        status=status.strip(),
        origin=origin.strip(),
        signal=signal.strip(),
        direction=direction.strip(),
        q=q.strip(),
    )


FiltersDep = Annotated[queries.CallFilters, Depends(call_filters)]


@router.get("/calls", response_model=None)
async def calls_page(
    request: Request,
    viewer: PageViewer,
    session: SessionDep,
    filters: FiltersDep,
    cursor: str | None = None,
    per_page: Annotated[int, Query(ge=10, le=200)] = queries.PAGE_SIZE,
) -> Response:
    error = None
    try:
        found = await queries.list_calls(session, viewer, filters, cursor=cursor, limit=per_page)
    except InvalidInput as invalid:  # a search the index cannot run, or a stale cursor: say so on the page
        found, error = queries.CallPage(rows=[], next_cursor=None), invalid.message
    options = await queries.filter_options(session, viewer)
    query = filters.query_items()
    if per_page != queries.PAGE_SIZE:
        query.append(("per_page", str(per_page)))
    return page(
        request,
        "calls.html",
        viewer,
        400 if error else 200,
        error=error,
        search_help=QUERY_SYNTAX,
        per_page=per_page,
        page=found,
        filters=filters,
        options=options,
        next_link="?" + urlencode([*query, ("cursor", found.next_cursor)]) if found.next_cursor else None,
        first_link="?" + urlencode(query) if cursor else None,
        export_link="/console/calls.csv?" + urlencode(query),
    )


CSV_COLUMNS = (
    "id",
    "external_id",
    "account",
    "origin",
    "direction",
    "status",
    "status_reason",
    "from",
    "to",
    "contact_number",
    "campaign",
    "started_at",
    "duration_ms",
    "signals",
    "received_at",
)


def _csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    # A cell starting with a formula character would run as a formula in a spreadsheet: keep it text (a signed
    # number such as an E.164 phone number stays as it is).
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _SIGNED_NUMBER.match(text):
        return "'" + text
    return text


_SIGNED_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")


@router.get("/calls.csv", response_model=None)
async def calls_csv(viewer: ApiViewer, session: SessionDep, filters: FiltersDep) -> Response:
    """The filtered list as CSV (up to 10,000 calls, newest first)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    cursor: str | None = None
    written = 0
    while written < 10_000:
        found = await queries.list_calls(session, viewer, filters, cursor=cursor, limit=500)
        for row in found.rows:
            call = row.call
            writer.writerow(
                _csv_cell(value)
                for value in (
                    call.id,
                    call.external_id,
                    row.account_name,
                    call.origin,
                    call.direction,
                    call.status,
                    call.status_reason,
                    call.from_e164,
                    call.to_e164,
                    call.contact_e164,
                    row.campaign_name,
                    call.started_at.isoformat() if call.started_at else None,
                    call.duration_ms,
                    ";".join(row.signals),
                    call.received_at.isoformat(),
                )
            )
        written += len(found.rows)
        cursor = found.next_cursor
        if cursor is None:
            break
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="calls.csv"', "Cache-Control": "no-store"},
    )


@router.get("/api/calls", response_model=None)
async def calls_data(viewer: ApiViewer, session: SessionDep, filters: FiltersDep, cursor: str | None = None) -> Any:
    """The console's data API for the list (what the page shows, as JSON)."""
    try:
        found = await queries.list_calls(session, viewer, filters, cursor=cursor)
    except InvalidInput as error:
        raise HTTPException(422, error.message) from error
    return {
        "calls": [
            {
                "id": row.call.id,
                "account": row.account_name,
                "origin": row.call.origin,
                "status": row.call.status,
                "direction": row.call.direction,
                "started_at": row.call.started_at.isoformat() if row.call.started_at else None,
                "signals": row.signals,
                "matches": [match.to_dict() for match in row.matches],
            }
            for row in found.rows
        ],
        "next_cursor": found.next_cursor,
    }


@router.get("/calls/{call_id}", response_model=None)
async def call_page(
    request: Request, call_id: str, viewer: PageViewer, session: SessionDep, t: float | None = None, q: str = ""
) -> Response:
    try:
        view = await queries.call_view(session, viewer, call_id)
    except CallNotFound:
        return page(request, "not_found.html", viewer, 404, what="call")
    matches = await queries.call_matches_of(session, view.call, q) if q else ()
    said = [match for match in matches if match.start_s is not None]
    start_at = t if t is not None else (said[0].start_s if said else None)
    return page(
        request,
        "call.html",
        viewer,
        view=view,
        call=view.call,
        details=view.details,
        segments=_segments_with_evidence(view, said),
        start_at=start_at,
        phrase=q,
        said=said,
        evidence=_evidence(view.details),
    )


def _evidence(details: dict[str, Any]) -> list[dict[str, Any]]:
    """Every detected signal's matched span: what the transcript and the timeline highlight."""
    spans = []
    for signal in details["signals"]:
        for match in (signal.get("evidence") or {}).get("matches", []) or []:
            if isinstance(match, dict) and "start_s" in match and "end_s" in match:
                spans.append(
                    {
                        "signal": signal["name"],
                        "speaker": match.get("speaker"),
                        "start_s": float(match["start_s"]),
                        "end_s": float(match["end_s"]),
                        "words": str(match.get("words", "")),
                        "rule": str(match.get("rule", "")),
                    }
                )
    return spans


def _segments_with_evidence(view: queries.CallView, said: list[Match]) -> list[dict[str, Any]]:
    """Transcript segments in time order, each word marked when it falls inside a signal's evidence or a search
    match."""
    if view.transcript is None:
        return []
    spans = _evidence(view.details)
    out = []
    for segment in view.transcript["segments"]:
        words = []
        for word in segment.get("words", []):
            start, end = float(word["start_s"]), float(word["end_s"])
            signals = sorted(
                {
                    span["signal"]
                    for span in spans
                    if span["start_s"] - 0.05 <= start
                    and end <= span["end_s"] + 0.05
                    and span["speaker"] in (None, segment["speaker"])
                }
            )
            found = any(
                match.start_s is not None
                and match.end_s is not None
                and match.start_s - 0.01 <= start
                and end <= match.end_s + 0.01
                and match.speaker in (None, segment["speaker"])
                for match in said
            )
            words.append({"text": word["text"], "start_s": start, "end_s": end, "signals": signals, "found": found})
        out.append(
            {"speaker": segment["speaker"], "start_s": segment["start_s"], "text": segment["text"], "words": words}
        )
    return out


@router.post("/calls/{call_id}/retry", response_model=None)
async def retry(request: Request, call_id: str, viewer: PageViewer, session: SessionDep, _form: FormDep) -> Response:
    try:
        async with session.begin():
            await queries.retry_call(session, viewer, call_id)
    except CallNotFound:
        return page(request, "not_found.html", viewer, 404, what="call")
    except CallNotRetryable as error:
        return error_page(request, viewer, 409, error.message)
    return redirect(f"/console/calls/{call_id}")


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@router.get("/calls/{call_id}/recording", response_model=None)
async def recording(
    call_id: str, request: Request, viewer: ApiViewer, session: SessionDep, context: ContextDep
) -> Response:
    """The normalized recording for the player and the download link (single byte ranges, for seeking)."""
    try:
        call = await queries.get_call(session, viewer, call_id)
    except CallNotFound as error:
        raise HTTPException(404, error.message) from error
    stored = await recording_of(session=session, call=call)
    if stored is None:
        raise HTTPException(404, "the call has no processed recording yet")
    size = stored.size_bytes
    headers = {"Accept-Ranges": "bytes", "Content-Type": stored.content_type, "Cache-Control": "private, no-store"}
    if request.query_params.get("download"):
        headers["Content-Disposition"] = f'attachment; filename="call-{call.id}.mp3"'
    start, end, status = 0, size, 200
    wanted = request.headers.get("range")
    if wanted:
        match = _RANGE.match(wanted.strip())
        if match is None or (not match[1] and not match[2]):
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        if match[1]:
            start = int(match[1])
            end = min(size, int(match[2]) + 1) if match[2] else size
        else:
            start = max(0, size - int(match[2]))
        if start >= size or end <= start:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    return StreamingResponse(
        context.storage.open_read(stored.storage_key, start=start, end=end), status_code=status, headers=headers
    )


@router.get("/calls/{call_id}/transcript.{fmt}", response_model=None)
async def transcript_download(call_id: str, fmt: str, viewer: ApiViewer, session: SessionDep) -> Response:
    if fmt not in ("json", "txt"):
        raise HTTPException(404, "transcripts download as .json or .txt")
    try:
        call, row = await queries.transcript_row(session, viewer, call_id)
    except (CallNotFound, transcripts.TranscriptNotAvailable) as error:
        raise HTTPException(404, error.message) from error
    disposition = {"Content-Disposition": f'attachment; filename="transcript-{call.id}.{fmt}"'}
    if fmt == "txt":
        return PlainTextResponse(transcripts.transcript_text(row, "text"), headers=disposition)
    body = json.dumps(transcripts.transcript_document(call, row), default=str)
    return Response(body, media_type="application/json", headers=disposition)


# --- live calls and the contact center ------------------------------------------------------------------------

LIVE_STREAM_SECONDS = 20.0  # each event stream ends after this and the browser reconnects (servers stop cleanly)
LIVE_EVERY_SECONDS = 1.0


@router.get("/live", response_model=None)
async def live_page(request: Request, viewer: PageViewer, session: SessionDep) -> Response:
    return page(request, "live.html", viewer, calls=await queries.live_calls(session, viewer))


@router.get("/live/events", response_model=None)
async def live_events(request: Request, viewer: ApiViewer, context: ContextDep) -> Response:
    """Server-sent events: the live calls whenever they change (and a comment every few seconds)."""

    async def stream() -> AsyncIterator[str]:
        yield "retry: 1000\n\n"
        previous = None
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + LIVE_STREAM_SECONDS
        quiet = 0
        while loop.time() < ends_at and not await request.is_disconnected():
            async with context.sessions() as session:
                current = await queries.live_calls(session, viewer)
            if current != previous:
                yield f"event: calls\ndata: {json.dumps(current)}\n\n"
                previous, quiet = current, 0
            else:
                quiet += 1
                if quiet % 5 == 0:
                    yield ": still here\n\n"
            await asyncio.sleep(LIVE_EVERY_SECONDS)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


@router.get("/contact-center", response_model=None)
async def contact_center_page(request: Request, viewer: PageViewer, session: SessionDep) -> Response:
    agents, queues = await queries.contact_center(session, viewer)
    return page(request, "contact_center.html", viewer, agents=agents, queues=queues)


# --- tokens and webhooks --------------------------------------------------------------------------------------


@router.get("/tokens", response_model=None)
async def tokens_page(request: Request, viewer: PageViewer, session: SessionDep) -> Response:
    return page(
        request,
        "tokens.html",
        viewer,
        tokens=await queries.list_tokens(session, viewer),
        accounts=await queries.accounts(session, viewer),
        created=None,
    )


@router.post("/tokens", response_model=None)
async def create_token(
    request: Request, viewer: PageViewer, session: SessionDep, context: ContextDep, form: FormDep
) -> Response:
    """The new token is shown in this response only (never stored in plain, never shown again)."""
    try:
        async with session.begin():
            plaintext = await queries.issue_token(
                session, viewer, name=form.get("name", ""), account_id=form.get("account_id")
            )
    except CallplaneError as error:
        return error_page(request, viewer, 422, error.message)
    context.lookups.invalidate()
    return page(
        request,
        "tokens.html",
        viewer,
        tokens=await queries.list_tokens(session, viewer),
        accounts=await queries.accounts(session, viewer),
        created=plaintext,
    )


@router.post("/tokens/{token_id}/revoke", response_model=None)
async def revoke_token(
    request: Request, token_id: str, viewer: PageViewer, session: SessionDep, context: ContextDep, _form: FormDep
) -> Response:
    try:
        async with session.begin():
            await queries.revoke_token(session, viewer, token_id)
    except CallplaneError as error:
        return error_page(request, viewer, 404, error.message)
    context.lookups.invalidate()  # the API stops accepting it in this process at once
    return redirect("/console/tokens")


@router.get("/webhooks", response_model=None)
async def webhooks_page(request: Request, viewer: PageViewer, session: SessionDep, status: str = "") -> Response:
    return await _webhooks(request, viewer, session, status=status, secret=None)


async def _webhooks(
    request: Request, viewer: Viewer, session: AsyncSession, *, status: str, secret: str | None
) -> HTMLResponse:
    return page(
        request,
        "webhooks.html",
        viewer,
        endpoints=await queries.webhook_endpoints(session, viewer),
        deliveries=await queries.deliveries(session, viewer, status=status),
        accounts=await queries.accounts(session, viewer),
        status=status,
        secret=secret,
    )


@router.post("/webhooks/endpoints", response_model=None)
async def add_webhook_endpoint(
    request: Request, viewer: PageViewer, session: SessionDep, context: ContextDep, form: FormDep
) -> Response:
    """The endpoint's signing secret is shown in this response only."""
    settings = context.settings
    try:
        async with session.begin():
            secret = await queries.add_webhook_endpoint(
                session,
                viewer,
                secret_box=context.secret_box,
                policy=TargetPolicy.from_config(settings.fetch_allowed_networks, settings.fetch_allowed_hosts),
                url=form.get("url", ""),
                event_types=[kind.strip() for kind in form.get("event_types", "").split(",") if kind.strip()],
                account_id=form.get("account_id"),
            )
    except CallplaneError as error:
        return error_page(request, viewer, 422, error.message)
    return await _webhooks(request, viewer, session, status="", secret=secret)


@router.post("/webhooks/endpoints/{endpoint_id}/delete", response_model=None)
async def delete_webhook_endpoint(
    request: Request, endpoint_id: str, viewer: PageViewer, session: SessionDep, _form: FormDep
) -> Response:
    try:
        async with session.begin():
            await queries.delete_webhook_endpoint(session, viewer, endpoint_id)
    except CallplaneError as error:
        return error_page(request, viewer, 404, error.message)
    return redirect("/console/webhooks")


@router.post("/webhooks/deliveries/{delivery_id}/redeliver", response_model=None)
async def redeliver(
    request: Request, delivery_id: str, viewer: PageViewer, session: SessionDep, _form: FormDep
) -> Response:
    try:
        async with session.begin():
            await queries.redeliver(session, viewer, delivery_id)
    except CallplaneError as error:
        return error_page(request, viewer, 404, error.message)
    return redirect("/console/webhooks")


# --- dashboards -----------------------------------------------------------------------------------------------


@router.get("/dashboard", response_model=None)
async def dashboard_page(
    request: Request, viewer: PageViewer, session: SessionDep, days: Annotated[int, Query(ge=1, le=366)] = 30
) -> Response:
    return page(request, "dashboard.html", viewer, data=await queries.dashboard(session, viewer, days=days))


# --- configuration --------------------------------------------------------------------------------------------


@router.get("/configuration", response_model=None)
async def configuration_page(request: Request, viewer: PageViewer, session: SessionDep) -> Response:
    return page(request, "configuration.html", viewer, config=await queries.configuration(session, viewer), trial=None)


@router.post("/configuration/signals/test", response_model=None)
async def test_signal(
    request: Request, viewer: PageViewer, session: SessionDep, context: ContextDep, form: FormDep
) -> Response:
    """Run one signal definition on one call's transcript and show what it would find; nothing is stored."""
    try:
        trial = await queries.try_signal(
            session,
            viewer,
            signal_id=form.get("signal_id", ""),
            call_id=form.get("call_id", "").strip(),
            embedder_kind=context.settings.signals_embedder,
        )
    except (CallNotFound, transcripts.TranscriptNotAvailable, CallplaneError) as error:
        return page(
            request,
            "configuration.html",
            viewer,
            422,
            config=await queries.configuration(session, viewer),
            trial=None,
            trial_error=error.message,
        )
    return page(request, "configuration.html", viewer, config=await queries.configuration(session, viewer), trial=trial)


# --- static assets (the console's own and the vendored libraries from console/package.json) -------------------


@router.get("/static/{path:path}", response_model=None)
async def static(path: str) -> Response:
    target = (STATIC / path).resolve()
    if not target.is_relative_to(STATIC.resolve()) or not target.is_file():
        raise HTTPException(404, "no such asset")
    return FileResponse(target, headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})
