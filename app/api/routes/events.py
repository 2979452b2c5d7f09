"""GET /api/v1/runs/{run_id}/events: the run as Server-Sent Events (docs/api.md, SSE)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request, Response, status
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from app.api.models import ErrorBody
from app.api.routes.runs import PREFIX
from app.api.services.errors import RunNotFound, TooManyStreams
from app.api.services.run_store import RunEvent
from app.api.services.run_stream import Stream
from app.config import AppConfig

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
    request: Request,
    last_event_id_header: Annotated[int | None, Header(alias="Last-Event-ID", ge=0)] = None,
    last_event_id: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    """Follow a run live: replay after Last-Event-ID (header or query), then live events."""
    # The services straight off the request rather than as dependencies: every open stream
    # keeps its request's solved dependencies for as long as it is open.
    state = request.state
    stream: Stream = state.stream
    settings: AppConfig = state.settings
    await stream.store.aget(run_id)  # 404 before any stream starts
    after = last_event_id_header if last_event_id_header is not None else last_event_id or 0
    if await stream.finished_before(run_id, after):
        # 204 tells a browser's EventSource to stop reconnecting (HTML spec, 9.2.3).
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    # Each open stream holds a queue and a connection: cap them per process.
    slots: StreamSlots = state.stream_slots
    if not slots.take():
        raise TooManyStreams(settings.max_sse_streams, retry_after_s=STREAMS_RETRY_AFTER_S)
    return stream_response(stream, settings, state.shutdown, slots, run_id, after)


async def open_stream(
    stream: Stream,
    settings: AppConfig,
    shutdown: anyio.Event,
    slots: StreamSlots,
    run_id: str,
    after: int,
) -> EventSourceResponse | None:
    """The route's answer when it is a stream (app/api/events_fast_path.py): the run
    exists, the client has not seen all of it, a stream may open. None otherwise, for the
    route to answer (404, 204, 503)."""
    try:
        await stream.store.aget(run_id)
    except RunNotFound:
        return None
    if await stream.finished_before(run_id, after):
        return None
    if not slots.take():
        return None
    return stream_response(stream, settings, shutdown, slots, run_id, after)


class StreamSlots:
    """The places under APP_MAX_SSE_STREAMS in this process.

    A place is taken in the same step as the check, with no await between them, and given
    back when the stream's response ends, however it ends (the run's end, the client gone,
    the server stopping, a cancellation). Counting the streams' subscriptions instead let
    every request that arrived together pass the check before any of them had subscribed
    (its generator starts only once the response has started): 70 streams opened under a
    limit of 10.
    """

    __slots__ = ("limit", "taken")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.taken = 0

    def take(self) -> bool:
        if self.taken >= self.limit:
            return False
        self.taken += 1
        return True

    def give_back(self) -> None:
        self.taken -= 1


class _EventStream(EventSourceResponse):
    """An EventSourceResponse that holds a place of StreamSlots until it has ended."""

    def __init__(self, content: AsyncGenerator[bytes, None], slots: StreamSlots, **options: Any):
        super().__init__(content, **options)
        self.slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slots.give_back()


def stream_response(
    stream: Stream,
    settings: AppConfig,
    shutdown: anyio.Event,
    slots: StreamSlots,
    run_id: str,
    after: int,
) -> EventSourceResponse:
    """The stream's response, which gives back the place the caller took in ``slots``
    once it has been sent: call it (the route's caller and the fast path always do)."""
    return _EventStream(
        _events(stream, run_id, after),
        slots,
        ping=settings.sse_ping_s,
        shutdown_event=shutdown,
        shutdown_grace_period=SHUTDOWN_GRACE_S,
        # sse-starlette already sends Cache-Control: no-store and X-Accel-Buffering: no
        # (so that nginx does not buffer the stream).
    )


async def _events(stream: Stream, run_id: str, after: int) -> AsyncGenerator[bytes, None]:
    """The run's events as SSE frames; the first one carries the reconnect delay."""
    # aclosing: when the client goes away mid-stream, the subscription is removed at
    # once, not whenever the abandoned generator happens to be collected.
    async with aclosing(stream.follow(run_id, after)) as followed:
        first = True
        async for event in followed:
            yield encode(event, retry=RETRY_MS) if first else encode_shared(event)
            first = False
            # A replayed event is this stream's own copy (read from the log): not kept
            # while the stream waits, perhaps for hours, for the next one.
            del event


def encode(event: RunEvent, *, retry: int | None = None) -> bytes:
    """One SSE frame: ``id``, ``event``, ``data`` (the JSON of the event's data), ``retry``."""
    return ServerSentEvent(
        data=json.dumps(event.data, ensure_ascii=False),
        event=event.event,
        id=str(event.id),
        retry=retry,
    ).encode()


# The frame of the event delivered last. A live event goes to every stream of its run in
# turn (EventBus hands each the same RunEvent object), so it is encoded once, not once per
# subscriber: with a thousand streams that was most of the fan-out's CPU.
_last_frame: tuple[RunEvent, bytes] | None = None


def encode_shared(event: RunEvent) -> bytes:
    """``encode(event)``, reused while the same event object goes to one stream after
    another. Only the event loop calls it (the streams run there), so no lock."""
    global _last_frame  # noqa: PLW0603 - a one-entry cache, read and set on the loop only
    last = _last_frame
    if last is not None and last[0] is event:
        return last[1]
    frame = encode(event)
    _last_frame = (event, frame)
    return frame
