"""Request bodies bounded per surface before anything parses or authenticates them, and cut off when they stall.

`surface_body_rules` says how large each surface's request bodies may be (which surface a path belongs to and how it
writes an error are surfaces/registry.py's); `BodyLimitMiddleware` applies it to every request as plain ASGI (no
BaseHTTPMiddleware: a task group per request costs ingestion throughput). A declared Content-Length over the limit
is refused without reading a byte; a chunked body is counted as it streams and cut off at the limit; a body that
stops arriving for `read_timeout_s` is answered with the surface's 408. See docs/decisions.md "Request bodies".
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callplane.core.voice.files import DEFAULT_MAX_BYTES as VOICE_FILE_MAX_BYTES
from callplane.settings import Settings
from callplane.surfaces.infobip.files import MULTIPART_OVERHEAD_BYTES
from callplane.surfaces.invoca.calls_in_progress import MAX_UPDATE_BYTES
from callplane.surfaces.registry import AREAS, CALLS_IN_PROGRESS, INFOBIP_FILES, ZIPTEAMS, Area, ErrorRenderer, area_of

log = logging.getLogger("callplane.http")

_CLOSE = {"Connection": "close"}  # the rest of a refused or stalled body is not worth reading


@dataclass(frozen=True, slots=True)
class BodyRule:
    """A surface's request-body limit and how it writes an error."""

    surface: str
    max_bytes: int
    render: ErrorRenderer
    too_large_text: str
    timed_out_text: str

    def too_large(self) -> Response:
        response = self.render(413, self.too_large_text)
        response.headers.update(_CLOSE)
        return response

    def timed_out(self) -> Response:
        response = self.render(408, self.timed_out_text)
        response.headers.update(_CLOSE)
        return response


class BodyLimits:
    """The rule of each part of the API; which part a path belongs to is the registry's (surfaces/registry.py)."""

    def __init__(self, rules: dict[Area, BodyRule]) -> None:
        self._rules = rules

    def rule_for(self, path: str) -> BodyRule:
        return self._rules[area_of(path)]


def _size(limit: int) -> str:
    mebibytes, rest = divmod(limit, 1024 * 1024)
    return f"{mebibytes}MB" if mebibytes and not rest else f"{limit} bytes"


def surface_body_rules(settings: Settings) -> BodyLimits:
    """Every surface's request-body rule: documented sizes where the vendor gives one, settings otherwise."""
    seconds = f"{settings.request_body_read_timeout_seconds:g}"
    stalled = f"The request body was not received within {seconds} seconds."
    batch_max = settings.batch_max_body_bytes
    # An upload is a multipart form around one audio file of up to the files service's limit.
    upload_max = VOICE_FILE_MAX_BYTES + MULTIPART_OVERHEAD_BYTES
    max_bytes = {
        CALLS_IN_PROGRESS: MAX_UPDATE_BYTES,  # an update is a few fields (its route's own limit)
        ZIPTEAMS: batch_max,
        INFOBIP_FILES: upload_max,
    }
    too_large = {ZIPTEAMS: f"Payload too large. The maximum request payload size is {_size(batch_max)}."}
    rules: dict[Area, BodyRule] = {}
    for area in AREAS:
        limit = max_bytes.get(area, settings.request_body_max_bytes)
        text = too_large.get(area, f"The request body is larger than {limit} bytes.")
        rules[area] = BodyRule(area.surface, limit, area.render, text, stalled)
    return BodyLimits(rules)


class BodyLimitMiddleware:
    """Applies the surfaces' body rules to every HTTP request (see the module docstring).

    Per request this costs a cached lookup for the rule, a look at the headers and, when there is a body, a counter
    and a timestamp per read. Stalls are found by one watchdog task per app that looks at the reads in progress a
    few times per timeout, rather than a timer armed around every read (which cost more than the rest together).
    """

    def __init__(self, app: ASGIApp, limits: BodyLimits, read_timeout_s: float) -> None:
        self.app = app
        self.limits = limits
        self.read_timeout_s = read_timeout_s
        self._in_flight: set[_GuardedBody] = set()
        self._watchdog: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self.limits.rule_for(scope["path"])
        declared: int | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = int(value) if value.isdigit() else None  # the server refuses a malformed one
            elif name == b"transfer-encoding":
                chunked = True
        if declared is not None and declared > rule.max_bytes:
            await rule.too_large()(scope, receive, send)
            return
        if not chunked and not declared:
            await self.app(scope, receive, send)  # no body to bound or wait for
            return
        if self._watchdog is None or self._watchdog.done():  # started with the first body, on the server's loop
            self._watchdog = asyncio.create_task(self._watch(), name="request body watchdog")
        body = _GuardedBody(rule, scope, receive, send)
        self._in_flight.add(body)
        try:
            await self.app(scope, body.receive, body.send)
        except Exception:
            if body.refusal is None:
                raise
            # The app failed on the body we cut off (a disconnect while reading it): our answer is already out.
        finally:
            self._in_flight.discard(body)

    async def _watch(self) -> None:
        """Answer 408 for every body whose current read has waited longer than the read timeout."""
        period = min(1.0, self.read_timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for body in list(self._in_flight):
                since = body.waiting_since
                if since is not None and now - since >= self.read_timeout_s and body.refusal is None:
                    try:
                        await body.refuse(body.rule.timed_out())
                    except Exception:  # a connection that broke meanwhile; the watchdog goes on
                        log.warning("could not answer a stalled request body", exc_info=True)


class _GuardedBody:
    """One request's body: counted against its rule as it is read; `waiting_since` while a read waits."""

    __slots__ = ("complete", "received", "refusal", "response_started", "rule", "scope", "upstream", "waiting_since")

    def __init__(self, rule: BodyRule, scope: Scope, receive: Receive, send: Send) -> None:
        self.rule = rule
        self.scope = scope
        self.upstream = (receive, send)
        self.received = 0
        self.complete = False
        self.refusal: int | None = None
        self.response_started = False
        self.waiting_since: float | None = None

    async def receive(self) -> Message:
        upstream_receive = self.upstream[0]
        if self.complete:
            return await upstream_receive()  # after the body only a disconnect is awaited: no timeout
        if self.refusal is not None:
            return {"type": "http.disconnect"}
        self.waiting_since = time.monotonic()
        try:
            message = await upstream_receive()
        finally:
            self.waiting_since = None
        if self.refusal is not None:  # timed out while waiting: the 408 went out, the connection is closing
            return {"type": "http.disconnect"}
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.rule.max_bytes:
                await self.refuse(self.rule.too_large())
                return {"type": "http.disconnect"}
            self.complete = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if self.refusal is not None:
            return  # the app's answer to a body we cut off: ours went out instead
        if message["type"] == "http.response.start":
            self.response_started = True
        await self.upstream[1](message)

    async def refuse(self, response: Response) -> None:
        """Answer now and close the connection; the app's pending or next read sees a disconnect."""
        self.refusal = response.status_code
        if not self.response_started:
            await response(self.scope, self.upstream[0], self.upstream[1])
