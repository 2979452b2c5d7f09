"""Time every HTTP request, labelled by the matched route's template, not the raw path.

Raw paths would make one time series per run id; ``scope["route"]`` (set by the router once
it has matched) gives ``/api/v1/runs/{run_id}/status``. A pure ASGI middleware, so that it
neither buffers nor delays streaming responses.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.services.metrics import Metrics

UNMATCHED = "<unmatched>"


class RequestMetrics:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception before any response is a server error

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            key = (scope["method"], template, status)
            child = self._children.get(key)
            if child is None:  # labels() takes a lock and builds a key: once per series
                child = self.metrics.http_duration.labels(
                    method=key[0], route=template, status=str(status)
                )
                self._children[key] = child
            child.observe(time.perf_counter() - start)
