"""GET /api/v1/runs/{run_id}/status from the store's ready bytes, before FastAPI's routing.

The polling endpoint is the hottest one (a frontend asks every second or two per run). For a
run the store holds in memory, its status payload is kept as the JSON bytes the route would
send (``Store.status_json``, dropped on every change of the run), and this pure ASGI
middleware sends them without routing, dependency solving or response validation: the
route's work measured about a third of a status request. Anything else (an unknown run,
another process's active run, the Redis backend, a HEAD) goes on to the route, which stays
the one definition of the endpoint (its OpenAPI entry, its 404). Installed only when no API
keys are configured: a keyed server checks every request's key in the route.
"""

from __future__ import annotations

import re

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.services.run_store import Store

_STATUS_PATH = re.compile(r"/api/v1/runs/([^/]+)/status")
_HEADERS = [(b"content-type", b"application/json")]


class StatusFastPath:
    def __init__(self, app: ASGIApp, *, route: BaseRoute) -> None:
        self.app = app
        # Set on the scope as the router would, so that RequestMetrics labels the request
        # with the route's template.
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = _STATUS_PATH.fullmatch(scope["path"])
            state = scope.get("state")
            store: Store | None = state.get("store") if match and state else None
            body = store.status_json(match.group(1)) if store is not None and match else None
            if body is not None:
                scope["route"] = self.route
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
