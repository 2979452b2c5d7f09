"""Events written by other processes sharing ``output/``, published on this process's bus.

One ``watchfiles.watch`` per process, in a thread of its own (each costs an inotify
instance; the kernel allows about 128 instances per user), shared by every stream. Not
``awatch``: it sets up its watches on the event loop, one per run folder, which held the
loop for 0.2 s with 10,000 runs (and would for seconds with 100,000) just as the server
began to answer. It only looks at runs
that someone here is following and that another process owns, reads only the new complete
lines of their events.jsonl (a byte offset per run), and publishes them; subscribers drop
ids they already have, so nothing arrives twice. Debounce and step are small so that an
event reaches a stream in well under 300 ms; APP_WATCH_FORCE_POLLING is for network
filesystems, where inotify sees nothing.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import anyio
import anyio.to_thread
import watchfiles

from app.api.services.backends.files.event_bus import EventBus
from app.api.services.backends.files.event_log import EventLog
from app.api.services.backends.files.store import FileRunStore
from app.api.services.run_store import EVENTS_FILE

log = logging.getLogger(__name__)


def _events_files(_: watchfiles.Change, path: str) -> bool:
    return path.endswith(EVENTS_FILE)


class OutputWatcher:
    def __init__(
        self, store: FileRunStore, events: EventLog, bus: EventBus, *, force_polling: bool
    ) -> None:
        self.store = store
        self.events = events
        self.bus = bus
        self.force_polling = force_polling
        self._offsets: dict[str, int] = {}
        self.ready = anyio.Event()

    async def run(self, stop: anyio.Event) -> None:
        """Watch until ``stop`` is set (or this task is cancelled)."""
        halt = threading.Event()

        async def relay() -> None:
            await stop.wait()
            halt.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(relay)
            self.ready.set()
            try:
                # A limiter of its own: the watch holds its thread for the server's life.
                await anyio.to_thread.run_sync(
                    self._watch, halt, abandon_on_cancel=True, limiter=anyio.CapacityLimiter(1)
                )
            finally:
                halt.set()  # the thread sees it within one step (20 ms) and ends
                tasks.cancel_scope.cancel()

    def _watch(self, halt: threading.Event) -> None:
        for changes in watchfiles.watch(
            self.store.root,
            watch_filter=_events_files,
            debounce=50,
            step=20,
            stop_event=halt,
            force_polling=self.force_polling,
            poll_delay_ms=100,
            recursive=True,
        ):
            runs = {Path(path).parent.name for _, path in changes}
            for run_id in runs:
                self.forward(run_id)

    def forget(self, run_id: str) -> None:
        """For FileRunStore.add_removal_listener: a deleted run's file starts over if reused."""
        self._offsets.pop(run_id, None)

    def forward(self, run_id: str) -> int:
        """Publish the new events of a run another process owns; how many were published."""
        if not self.bus.has_subscribers(run_id) or self.store.is_owned(run_id):
            return 0
        events, offset = self.events.read_from(run_id, self._offsets.get(run_id, 0))
        self._offsets[run_id] = offset
        for event in events:
            self.bus.publish(run_id, event)
        return len(events)
