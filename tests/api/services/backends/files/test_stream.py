"""What an open event stream keeps while it waits, and how its frames are encoded.

One process is sized by its idle streams (docs/api.md: thousands of browsers following
runs), so what each one holds while it waits is pinned here: no replayed event, no queue
heavier than the bus needs. The frames on the wire stay sse-starlette's encoding.
"""

from __future__ import annotations

import asyncio
import tracemalloc
import weakref
from collections.abc import AsyncGenerator
from types import AsyncGeneratorType
from typing import Any, cast

import anyio
import pytest
from sse_starlette import ServerSentEvent

from app.api.routes.events import RETRY_MS, _events, encode, encode_shared
from app.api.services.backends.files.event_bus import EventBus, Inbox
from app.api.services.backends.files.stream import FileRunStream
from app.api.services.run_store import RunEvent

pytestmark = pytest.mark.anyio


class _Data(dict[str, Any]):
    """Event data a weak reference can watch (a plain dict cannot be weakly referenced)."""


class _State:
    terminal = False


class _Store:
    """The one call FileRunStream makes on the store for a run that is still going."""

    def get(self, run_id: str) -> _State:
        return _State()


class _Log:
    """events.jsonl as FileRunStream reads it: every read makes its own copy of the events,
    as reading the file does; each copy's data is watched."""

    def __init__(self) -> None:
        self.copies: list[weakref.ref[_Data]] = []

    def read(self, run_id: str, *, after: int = 0) -> list[RunEvent]:
        data = _Data(message="x" * 10_000)
        self.copies.append(weakref.ref(data))
        return [RunEvent(1, "progress", data)] if after < 1 else []


async def _one_loop_pass() -> None:
    """Let every task that is ready take its next step: callbacks run in the order they
    were scheduled, so this one runs after theirs (an ordering, not a wait for time)."""
    loop = asyncio.get_running_loop()
    passed = loop.create_future()
    loop.call_soon(passed.set_result, None)
    await passed


async def _next(frames: AsyncGenerator[bytes, None]) -> bytes:
    return await anext(frames)


async def test_a_waiting_stream_keeps_none_of_its_replayed_events() -> None:
    bus = EventBus()
    bus.bind(asyncio.get_running_loop())
    log = _Log()
    stream = FileRunStream(cast(Any, _Store()), cast(Any, log), bus)
    streams = [_events(cast(Any, stream), "r", 0) for _ in range(3)]
    with anyio.fail_after(5):
        for frames in streams:
            assert (await anext(frames)).startswith(b"id: 1\r\n")  # the replay
        waiting = [asyncio.create_task(_next(frames)) for frames in streams]
        await _one_loop_pass()
        # Every stream is now inside its wait for the next live event...
        assert all(isinstance(f, AsyncGeneratorType) and f.ag_running for f in streams)
        assert not any(task.done() for task in waiting)
        # ...and none of them keeps its copy of what it replayed (10 KB each, here).
        assert len(log.copies) == 3
        assert [copy() for copy in log.copies] == [None, None, None]

        live = RunEvent(2, "status", {"status": "completed"})
        bus.publish("r", live)
        frames_sent = await asyncio.gather(*waiting)
    assert frames_sent == [encode(live)] * 3
    for frames in streams:
        with pytest.raises(StopAsyncIteration):  # the terminal status ends each stream
            await anext(frames)
    assert bus.count() == 0


def test_an_idle_subscription_is_small() -> None:
    bus = EventBus(queue_size=512)
    count = 1000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        subscriptions = [bus.add("r") for _ in range(count)]
        per_subscription = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
    assert bus.count() == count
    # An asyncio.Queue alone is about 2,500 bytes (three deques and an Event).
    assert per_subscription < 800, per_subscription
    for subscription in subscriptions:
        bus.remove(subscription)
        bus.remove(subscription)  # twice is harmless
    assert bus.count() == 0


async def test_the_inbox_is_a_bounded_fifo_with_one_consumer() -> None:
    inbox = Inbox(2)
    assert inbox.empty()
    assert inbox.qsize() == 0
    assert not inbox.full()
    with pytest.raises(asyncio.QueueEmpty):
        inbox.get_nowait()
    first, second = RunEvent(1, "progress", {}), RunEvent(2, "progress", {})
    inbox.put_nowait(first)
    inbox.put_nowait(second)
    assert inbox.full()
    with pytest.raises(asyncio.QueueFull):
        inbox.put_nowait(None)
    assert [inbox.get_nowait(), await inbox.get()] == [first, second]
    assert inbox.empty()

    with anyio.fail_after(5):
        getter = asyncio.create_task(inbox.get())
        await _one_loop_pass()
        assert not getter.done()  # waiting for an item
        with pytest.raises(RuntimeError, match="another consumer"):
            await inbox.get()
        inbox.put_nowait(None)
        assert await getter is None


def test_a_frame_is_sse_starlettes_encoding_and_shared_only_by_the_same_event() -> None:
    event = RunEvent(7, "answer_delta", {"text": "Zürich\nline two"})
    expected = ServerSentEvent(
        data='{"text": "Zürich\\nline two"}', event="answer_delta", id="7"
    ).encode()
    assert encode(event) == expected
    assert encode(event, retry=RETRY_MS) == expected[:-2] + b"retry: 2000\r\n\r\n"
    assert encode_shared(event) == expected
    assert encode_shared(event) is encode_shared(event)  # encoded once for every stream
    # Another event object is encoded afresh, even with the same id and name.
    other = RunEvent(7, "answer_delta", {"text": "other"})
    assert encode_shared(other) == encode(other) != expected
