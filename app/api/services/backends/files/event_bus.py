"""In-process pub/sub of run events: one bounded queue per subscriber.

Publishing may happen on any thread (worker threads run the pipeline): the event is handed
to the event loop with ``call_soon_threadsafe`` and the publisher never waits. On the loop,
each subscriber of the run gets the event with ``put_nowait``; a subscriber whose queue is
full has fallen behind and is dropped (its stream ends, and the client resumes with
Last-Event-ID from the event log), so one slow client never holds up the others.

Every open stream holds one subscription for as long as it is open, idle or not, so both
are kept small (``Inbox`` rather than ``asyncio.Queue``, slotted dataclasses): thousands of
idle streams are what one process is sized by.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from app.api.services.run_store import RunEvent

log = logging.getLogger(__name__)


class Inbox:
    """A bounded FIFO with one consumer, on the event loop: what ``asyncio.Queue`` did
    here, in a twentieth of its memory.

    An idle ``asyncio.Queue`` holds three deques and an ``asyncio.Event`` (a fourth): about
    3.3 KB per open stream (tracemalloc, Python 3.11), where a whole subscription with
    this is about 160 bytes. It holds a list while it has items and, only while its
    consumer waits, one future. Its methods are those of ``asyncio.Queue`` the bus and the
    streams use, with the same exceptions (``asyncio.QueueFull``, ``asyncio.QueueEmpty``).
    """

    __slots__ = ("_items", "_waiter", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: list[RunEvent | None] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return self.qsize() >= self.maxsize

    def put_nowait(self, item: RunEvent | None) -> None:
        items = self._items
        if items is None:
            items = self._items = []
        if len(items) >= self.maxsize:
            raise asyncio.QueueFull
        items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> RunEvent | None:
        items = self._items
        if not items:
            raise asyncio.QueueEmpty
        # pop(0) moves at most maxsize pointers, and a stream that keeps up holds one or two.
        item = items.pop(0)
        if not items:
            self._items = None  # an idle stream holds no list, however long its last burst
        return item

    def put_end(self) -> None:
        """Put the end marker (None) last, making room by dropping the newest items, never
        the oldest: the consumer sends what is left in order, then ends, and its client's
        Last-Event-ID resumes right after the last event it got. Dropping the oldest would
        send events after a hole, and the client, already past it, would never get it."""
        items = self._items
        if items:
            del items[self.maxsize - 1 :]
        self.put_nowait(None)

    async def get(self) -> RunEvent | None:
        """The next item, waiting for it; one consumer at a time."""
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("Inbox.get: another consumer is already waiting")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.get_nowait()


@dataclass(eq=False, slots=True)
class Subscription:
    run_id: str
    queue: Inbox
    dropped: bool = False  # fell behind: the stream must end so the client resumes
    closed: bool = False


class EventBus:
    """Fan-out of run events to the streams of this process."""

    def __init__(self, *, queue_size: int = 512) -> None:
        self.queue_size = queue_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscriptions: dict[str, set[Subscription]] = defaultdict(set)
        self._lock = threading.Lock()  # guards _subscriptions against off-loop readers
        # Bumped, and the event set, whenever the set of followed runs changes (a first
        # subscriber, a last one gone): what the output/ watcher watches follows it.
        self.version = 0
        self.followed_changed = threading.Event()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver on ``loop`` (the server's event loop), whichever thread publishes."""
        self._loop = loop

    def publish(self, run_id: str, event: RunEvent) -> None:
        """Queue ``event`` for every subscriber of ``run_id``; never blocks."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._deliver(run_id, event)
        elif self.has_subscribers(run_id):
            # Nobody follows most runs (every POST publishes its queued event): skip waking
            # the loop for them. A stream that subscribes just after this check still gets
            # the event: EventLog appends it to events.jsonl before publishing, and a stream
            # reads the log only after it has subscribed (FileRunStream).
            loop.call_soon_threadsafe(self._deliver, run_id, event)

    def _deliver(self, run_id: str, event: RunEvent | None) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions.get(run_id, ()))
        for subscription in subscriptions:
            if subscription.closed:
                # Ended (dropped, run deleted, server stopping): the stream stops at the end
                # marker, so anything queued after it would only fill the inbox until it
                # overflowed into a false "fell behind" warning.
                continue
            try:
                subscription.queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("run %s: a subscriber fell behind and was dropped", run_id)
                subscription.dropped = True
                self._remove(subscription)
                _close(subscription)

    def _changed(self) -> None:
        """Under the lock."""
        self.version += 1
        self.followed_changed.set()

    def followed(self) -> tuple[int, list[str]]:
        """The runs someone follows here, with the version of that set."""
        with self._lock:
            return self.version, list(self._subscriptions)

    def has_subscribers(self, run_id: str) -> bool:
        with self._lock:
            return bool(self._subscriptions.get(run_id))

    def count(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subscriptions.values())

    @asynccontextmanager
    async def subscribe(self, run_id: str) -> AsyncIterator[Subscription]:
        """A subscription for the ``async with`` block; always removed on the way out."""
        subscription = self.add(run_id)
        try:
            yield subscription
        finally:
            self._remove(subscription)

    def add(self, run_id: str) -> Subscription:
        """A subscription the caller removes with ``remove`` (in a ``finally``). For a
        stream, which holds it for as long as it is open: ``subscribe``'s context manager
        would keep a generator frame and its own object per open stream besides."""
        subscription = Subscription(run_id, Inbox(self.queue_size))
        with self._lock:
            if run_id not in self._subscriptions:
                self._changed()
            self._subscriptions[run_id].add(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        """Undo ``add``; removing one twice is harmless."""
        self._remove(subscription)

    def _remove(self, subscription: Subscription) -> None:
        with self._lock:
            subs = self._subscriptions.get(subscription.run_id)
            if subs is not None:
                subs.discard(subscription)
                if not subs:
                    del self._subscriptions[subscription.run_id]
                    self._changed()

    def end(self, run_id: str) -> None:
        """End the streams of one run (it was deleted); safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._end, run_id)

    def _end(self, run_id: str) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions.get(run_id, ()))
        for subscription in subscriptions:
            _close(subscription)

    def close(self) -> None:
        """End every stream (server shutdown): each subscriber gets the end marker."""
        with self._lock:
            subscriptions = [s for subs in self._subscriptions.values() for s in subs]
        for subscription in subscriptions:
            _close(subscription)


def _close(subscription: Subscription) -> None:
    if subscription.closed:
        return
    subscription.closed = True
    # A dropped subscriber's backlog beyond the room for the end marker is replayed from
    # disk when its client resumes.
    subscription.queue.put_end()
