"""GET /metrics: Prometheus text format (open, like the health checks)."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.deps import MetricsDep

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
async def metrics(metrics: MetricsDep) -> Response:
    """Runs by status, run durations, queue depth, open streams, HTTP latency by route."""
    # In a thread: with APP_BACKEND=redis the live gauges are read from Redis.
    body = await anyio.to_thread.run_sync(metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
