"""In-process pub/sub of run events: one bounded queue per subscriber.

Publishing may happen on any thread (worker threads run the pipeline): the event is handed
to the event loop with ``call_soon_threadsafe`` and the publisher never waits. On the loop,
each subscriber of the run gets the event with ``put_nowait``; a subscriber whose queue is
full has fallen behind and is dropped (its stream ends, and the client resumes with
Last-Event-ID from the event log), so one slow client never holds up the others.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from app.api.services.run_store import RunEvent

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Subscription:
    run_id: str
    queue: asyncio.Queue[RunEvent | None]
    dropped: bool = False  # fell behind: the stream must end so the client resumes
    closed: bool = field(default=False)


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
            if subscription.dropped:
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
        subscription = Subscription(run_id, asyncio.Queue(maxsize=self.queue_size))
        with self._lock:
            if run_id not in self._subscriptions:
                self._changed()
            self._subscriptions[run_id].add(subscription)
        try:
            yield subscription
        finally:
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
    # Make room for the end marker: a dropped subscriber's backlog is replayed from disk.
    while subscription.queue.full():
        subscription.queue.get_nowait()
    subscription.queue.put_nowait(None)
