"""The reference for bench_events.py: a bare sse-starlette endpoint and broadcaster.

``BARE_SSE_DIR=<folder> uvicorn benchmarks.bare_sse_app:app`` (the same uvicorn settings as
the answer service). It is sse-starlette's documented usage and nothing more: one FastAPI
route returning ``EventSourceResponse(generator)``, one ``asyncio.Queue`` per subscriber in
a set, and a broadcaster that puts each event into every queue. It shows what holding an
idle SSE stream, and fanning one event out to every stream, cost on this machine with no
application code: no run store, no replay, no per-run subscription, no middleware.

What a subscriber of ``GET /events`` receives is shaped like the service's events, so that
bench_events.py reads both with the same client: a ``progress`` event whose message is
``ready`` as soon as it is subscribed, then each broadcast ``progress`` event, then a
``status`` event ``completed`` that ends the stream; ids 1, 2, 3, ... per stream.

The broadcaster is triggered the way bench_events.py triggers the service's pipeline, so
that the two fan-outs are measured from the same kind of moment: a thread polls
``$BARE_SSE_DIR/go-1``, ``go-2``, ... every ``POLL_S`` (as ``event_pipeline.py`` does),
and for each one takes ``time.time()`` and hands the event to the event loop; its message
is ``tick <n>.1 <unix time>``. A file named ``done`` sends the final status event and stops
the thread; ``MAX_WAIT_S`` bounds it regardless.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from sse_starlette import EventSourceResponse, ServerSentEvent

POLL_S = 0.005
MAX_WAIT_S = 900.0  # a bound of its own, should nobody ever write ``done``

# (event name, JSON data, last event of the stream); one object shared by every queue.
Event = tuple[str, str, bool]

subscribers: set[asyncio.Queue[Event]] = set()


def broadcast(event: Event) -> None:
    """On the event loop: the event into every subscriber's queue."""
    for queue in subscribers:
        queue.put_nowait(event)


def _trigger_loop(folder: Path, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
    began = time.monotonic()
    n = 1
    while not stop.is_set() and time.monotonic() - began < MAX_WAIT_S:
        if (folder / "done").exists():
            final = json.dumps({"status": "completed"})
            loop.call_soon_threadsafe(broadcast, ("status", final, True))
            return
        if not (folder / f"go-{n}").exists():
            stop.wait(POLL_S)
            continue
        data = json.dumps({"message": f"tick {n}.1 {time.time():.6f}"})
        loop.call_soon_threadsafe(broadcast, ("progress", data, False))
        n += 1


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    stop = threading.Event()
    folder = os.environ.get("BARE_SSE_DIR")
    thread = None
    if folder:
        loop = asyncio.get_running_loop()
        thread = threading.Thread(
            target=_trigger_loop, args=(Path(folder), loop, stop), daemon=True
        )
        thread.start()
    yield
    stop.set()
    if thread is not None:
        thread.join(timeout=5.0)


app = FastAPI(lifespan=lifespan)


@app.get("/events")
async def events() -> EventSourceResponse:
    async def stream() -> AsyncIterator[ServerSentEvent]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        subscribers.add(queue)
        try:
            yield ServerSentEvent(data=json.dumps({"message": "ready"}), event="progress", id="1")
            n = 1
            while True:
                name, data, last = await queue.get()
                n += 1
                yield ServerSentEvent(data=data, event=name, id=str(n))
                if last:
                    return
        finally:
            subscribers.discard(queue)

    return EventSourceResponse(stream())
