"""GET /api/v1/runs/{run_id}/events without FastAPI's routing, for a stream that opens.

An open event stream keeps, for as long as it is open (hours, for a browser tab left on a
run), every frame on the request's way to its response. Through FastAPI that is the
included router, the route, its exception handling and the endpoint's solved request:
about 4 KB of a stream's ~50 (tracemalloc, 1,000 idle streams; issue 17), which is what
one process's memory for thousands of idle streams is made of. This pure ASGI middleware
opens the stream itself (``events.open_stream``, the route's own code) in the usual case:
a run this process knows, a Last-Event-ID that is absent or a plain number, a run not
already seen to its end, a place under APP_MAX_SSE_STREAMS.

Anything else goes on to the route, which stays the one definition of the endpoint (its
OpenAPI entry, its 404, 422, 204 and 503, keyed requests): the route decides afresh. A
request that is not for an event stream goes on without a frame of this middleware's kept
alive. Installed only when no API keys are configured, as StatusFastPath: a keyed server
checks every request's key in the route.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from urllib.parse import parse_qsl

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.routes.events import open_stream

_EVENTS_PATH = re.compile(r"/api/v1/runs/([^/]+)/events")
_NUMBER = re.compile(r"[0-9]{1,18}")  # what the route's int >= 0 accepts, at its plainest


class EventsFastPath:
    def __init__(self, app: ASGIApp, *, route: BaseRoute) -> None:
        self.app = app
        # Set on the scope as the router would, so that RequestMetrics labels the request
        # with the route's template.
        self.route = route

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function: for any other request it hands on the next app's coroutine,
        # so no frame of this middleware stays on the way to its response.
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            match = _EVENTS_PATH.fullmatch(scope["path"])
            if match is not None:
                return self._stream(match.group(1), scope, receive, send)
        return self.app(scope, receive, send)

    async def _stream(self, run_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.get("state")
        after = _last_event_id(scope)
        response = None
        if state and "stream" in state and after is not None:
            try:
                response = await open_stream(
                    state["stream"],
                    state["settings"],
                    state["shutdown"],
                    state["stream_slots"],
                    run_id,
                    after,
                )
            except Exception:  # the route answers it, with the app's error handlers
                response = None
        if response is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        await response(scope, receive, send)


def _last_event_id(scope: Scope) -> int | None:
    """Last-Event-ID as the route reads it (the header, else the query's
    ``last_event_id``, else 0); None when either is there but not a plain number, for the
    route to answer (422)."""
    header = next((v for k, v in scope["headers"] if k == b"last-event-id"), None)
    query = None
    for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), True):
        if name == "last_event_id":
            query = value  # the last one, as the route's query parameter takes
    if header is not None and not _NUMBER.fullmatch(header.decode("latin-1")):
        return None
    if query is not None and not _NUMBER.fullmatch(query):
        return None
    if header is not None:
        return int(header)
    return int(query) if query is not None else 0
