"""GET /api/v1/runs/{run_id}/events: the run as Server-Sent Events (docs/api.md, SSE)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.api.deps import RunStreamDep, SettingsDep, ShutdownDep
from app.api.models import ErrorBody
from app.api.routes.runs import PREFIX
from app.api.services.errors import TooManyStreams

router = APIRouter(
    prefix=PREFIX,
    tags=["events"],
    responses={401: {"model": ErrorBody, "description": "APP_API_KEYS is set: a key is needed."}},
)

# The browser's reconnect delay after a dropped connection (HTML spec, "retry" field).
RETRY_MS = 2000
# How soon a client turned away by APP_MAX_SSE_STREAMS should try again.
STREAMS_RETRY_AFTER_S = 5
# On shutdown, how long a stream may take to end by itself (the bus closes it at once)
# before sse-starlette cancels it, which would cut the response off mid-body.
SHUTDOWN_GRACE_S = 2.0


@router.get(
    "/{run_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "status, progress and "
            "answer_delta events, each with the run's own sequence number as its id.",
        },
        204: {"description": "The client has already seen the whole, finished run."},
        404: {"model": ErrorBody, "description": "No run with this id."},
        422: {"model": ErrorBody, "description": "Last-Event-ID is not a number."},
        503: {
            "model": ErrorBody,
            "description": "APP_MAX_SSE_STREAMS streams are open; retry after `Retry-After`.",
        },
    },
)
async def run_events(
    run_id: str,
    stream: RunStreamDep,
    settings: SettingsDep,
    shutdown: ShutdownDep,
    last_event_id_header: Annotated[int | None, Header(alias="Last-Event-ID", ge=0)] = None,
    last_event_id: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    """Follow a run live: replay after Last-Event-ID (header or query), then live events."""
    await stream.store.aget(run_id)  # 404 before any stream starts
    after = last_event_id_header if last_event_id_header is not None else last_event_id or 0
    if await stream.finished_before(run_id, after):
        # 204 tells a browser's EventSource to stop reconnecting (HTML spec, 9.2.3).
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    # Each open stream holds a queue and a connection: cap them per process. The count is
    # of live subscriptions, so a stream that has just ended frees its place at once.
    if stream.open_streams() >= settings.max_sse_streams:
        raise TooManyStreams(settings.max_sse_streams, retry_after_s=STREAMS_RETRY_AFTER_S)

    async def events() -> AsyncIterator[ServerSentEvent]:
        first = True
        # aclosing: when the client goes away mid-stream, the subscription is removed at
        # once, not whenever the abandoned generator happens to be collected.
        async with aclosing(stream.follow(run_id, after)) as followed:
            async for event in followed:
                yield ServerSentEvent(
                    data=json.dumps(event.data, ensure_ascii=False),
                    event=event.event,
                    id=str(event.id),
                    retry=RETRY_MS if first else None,
                )
                first = False

    return EventSourceResponse(
        events(),
        ping=settings.sse_ping_s,
        shutdown_event=shutdown,
        shutdown_grace_period=SHUTDOWN_GRACE_S,
        # sse-starlette already sends Cache-Control: no-store and X-Accel-Buffering: no
        # (so that nginx does not buffer the stream).
    )
