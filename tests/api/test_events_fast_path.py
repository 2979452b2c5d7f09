"""EventsFastPath: a stream that opens is served without FastAPI's routing; anything else
goes on to the route, which answers as it always has (test_api_events.py: the contract)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from starlette.types import Message, Scope

from app.api.events_fast_path import EventsFastPath, _last_event_id
from app.api.routes.events import StreamSlots, encode
from app.api.services.errors import RunNotFound
from app.api.services.run_store import RunEvent

PATH = "/api/v1/runs/r1/events"
ROUTE: Any = SimpleNamespace(path="/api/v1/runs/{run_id}/events")


class _Stream:
    """The Stream calls open_stream and the route make, with the answers a test wants."""

    def __init__(self, *, known: bool = True, finished: bool = False, open_now: int = 0):
        self.store = self
        self.known, self.finished, self.open_now = known, finished, open_now
        self.slots = StreamSlots(10)
        self.slots.taken = open_now  # streams already open, of APP_MAX_SSE_STREAMS = 10
        self.followed: list[tuple[str, int]] = []

    async def aget(self, run_id: str) -> None:
        if not self.known:
            raise RunNotFound(run_id)

    async def finished_before(self, run_id: str, last_event_id: int) -> bool:
        return self.finished

    def open_streams(self) -> int:
        return self.slots.taken

    async def follow(self, run_id: str, last_event_id: int) -> AsyncIterator[RunEvent]:
        self.followed.append((run_id, last_event_id))
        yield RunEvent(last_event_id + 1, "status", {"status": "completed"})


def _scope(
    stream: _Stream,
    *,
    path: str = PATH,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    query: bytes = b"",
) -> Scope:
    settings = SimpleNamespace(max_sse_streams=10, sse_ping_s=15.0)
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": query,
        "headers": headers or [],
        "state": {
            "stream": stream,
            "settings": settings,
            "shutdown": anyio.Event(),
            "stream_slots": stream.slots,
        },
    }


async def _serve(scope: Scope) -> tuple[list[Message], list[Scope]]:
    """Run the middleware on ``scope``; what it sent, and the scopes the route was given."""
    routed: list[Scope] = []
    sent: list[Message] = []

    async def route(scope: Scope, receive: Any, send: Any) -> None:
        routed.append(scope)

    async def receive() -> Message:
        await anyio.Event().wait()  # the client never leaves; the stream ends by itself
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    middleware = EventsFastPath(route, route=ROUTE)
    with anyio.fail_after(5):
        await middleware(scope, receive, send)
    return sent, routed


@pytest.mark.anyio
async def test_a_stream_that_opens_is_served_here_with_the_routes_frames() -> None:
    stream = _Stream()
    scope = _scope(stream, headers=[(b"last-event-id", b"4")])
    sent, routed = await _serve(scope)
    assert routed == []
    assert stream.followed == [("r1", 4)]
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 200
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"].startswith(b"text/event-stream")
    assert headers[b"cache-control"] == b"no-store"
    body = b"".join(m.get("body", b"") for m in sent[1:])
    final = RunEvent(5, "status", {"status": "completed"})
    assert body == encode(final, retry=2000)  # the first frame carries the retry hint
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert scope["route"] is ROUTE  # metrics label it with the route's template
    assert stream.slots.taken == 0  # the stream's place is free again once it has ended


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("stream", "scope_changes"),
    [
        (_Stream(known=False), {}),  # 404
        (_Stream(finished=True), {}),  # 204
        (_Stream(open_now=10), {}),  # 503: APP_MAX_SSE_STREAMS
        (_Stream(), {"headers": [(b"last-event-id", b"x")]}),  # 422
        (_Stream(), {"query": b"last_event_id=-1"}),  # 422
        (_Stream(), {"method": "HEAD"}),
        (_Stream(), {"path": "/api/v1/runs/r1/status"}),
        (_Stream(), {"path": "/api/v1/runs/r1/events/more"}),
    ],
)
async def test_anything_else_goes_on_to_the_route(
    stream: _Stream, scope_changes: dict[str, Any]
) -> None:
    sent, routed = await _serve(_scope(stream, **scope_changes))
    assert len(routed) == 1
    assert sent == []
    assert stream.followed == []
    assert stream.slots.taken == stream.open_now  # no place kept for a stream not opened


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ([], b"", 0),
        ([(b"last-event-id", b"12")], b"", 12),
        ([], b"last_event_id=7", 7),
        ([], b"last_event_id=7&last_event_id=9", 9),  # the last one, as the route takes
        ([(b"last-event-id", b"3")], b"last_event_id=8", 3),  # the header first
        ([(b"last-event-id", b"3")], b"last_event_id=x", None),  # the route says 422
        ([(b"last-event-id", b" 3")], b"", None),
        ([(b"last-event-id", b"-3")], b"", None),
        ([], b"last_event_id=", None),
        ([], b"other=1", 0),
    ],
)
def test_last_event_id_is_read_as_the_route_reads_it_or_left_to_it(
    headers: list[tuple[bytes, bytes]], query: bytes, expected: int | None
) -> None:
    assert _last_event_id({"headers": headers, "query_string": query}) == expected
