"""Events written by other processes sharing ``output/``, published on this process's bus.

It watches only the folders of runs that someone here follows and that another process
owns, with ``watchfiles`` in a thread of its own, and starts a new watch when that set
changes (a stream opens or ends). Not all of ``output/``: a recursive watch puts one inotify
watch on every run folder (the kernel's per-user limit is 8,192 on many systems) and sets
them up holding the GIL, which stopped the whole server for seconds with 100,000 runs.

On every wake-up (a change, or each ``CATCH_UP_MS`` without one) it reads the new complete
lines of every followed run's events.jsonl (a byte offset per run) and publishes them;
subscribers drop ids they already have, so nothing arrives twice, and a line written
while a watch was being set up is read at the next wake-up. Debounce and step are small so
that an event reaches a stream in well under 300 ms; APP_WATCH_FORCE_POLLING is for
network filesystems, where inotify sees nothing.
"""

from __future__ import annotations

import logging
import threading

import anyio
import anyio.to_thread
import watchfiles

from app.api.services.backends.files.event_bus import EventBus
from app.api.services.backends.files.event_log import EventLog
from app.api.services.backends.files.store import FileRunStore
from app.api.services.run_store import EVENTS_FILE

log = logging.getLogger(__name__)

CATCH_UP_MS = 250  # a watch wakes at least this often to read what it may have missed
IDLE_WAIT_S = 1.0  # nothing to watch: how long to sleep between looks (a change wakes it)


def _events_files(_: watchfiles.Change, path: str) -> bool:
    return path.endswith(EVENTS_FILE)


class _Until:
    """What a watch checks between steps: stop when the server stops or the set of watched
    runs changes (then a new watch starts with the new set). Streams of this process's own
    runs opening and closing change the bus's version, not what is watched."""

    def __init__(
        self, halt: threading.Event, watcher: OutputWatcher, version: int, runs: list[str]
    ) -> None:
        self.halt, self.watcher, self.version, self.runs = halt, watcher, version, set(runs)

    def is_set(self) -> bool:
        if self.halt.is_set():
            return True
        if self.watcher.bus.version == self.version:
            return False
        self.version, runs = self.watcher.watched()
        return set(runs) != self.runs


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
            self.bus.followed_changed.set()  # wakes a thread waiting for something to watch

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
                self.bus.followed_changed.set()
                tasks.cancel_scope.cancel()

    def watched(self) -> tuple[int, list[str]]:
        """The bus's version and the followed runs another process owns."""
        version, followed = self.bus.followed()
        return version, [r for r in followed if not self.store.is_owned(r)]

    def _watch(self, halt: threading.Event) -> None:
        while not halt.is_set():
            self.bus.followed_changed.clear()
            version, runs = self.watched()
            folders = [self.store.root / r for r in runs if (self.store.root / r).is_dir()]
            if not folders:
                self.bus.followed_changed.wait(IDLE_WAIT_S)
                continue
            # What was written while no watch covered a run (streams opening and closing
            # restart the watch): read now, not at the watch's first wake-up.
            for run_id in runs:
                self.forward(run_id)
            try:
                for _ in watchfiles.watch(
                    *folders,
                    watch_filter=_events_files,
                    debounce=50,
                    step=20,
                    rust_timeout=CATCH_UP_MS,
                    yield_on_timeout=True,
                    stop_event=_Until(halt, self, version, runs),
                    force_polling=self.force_polling,
                    poll_delay_ms=100,
                    recursive=False,
                ):
                    for run_id in runs:
                        self.forward(run_id)
            except OSError as exc:  # a folder deleted meanwhile: watch the new set
                log.debug("watch of %d run folders ended: %s", len(folders), exc)
                halt.wait(0.05)

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
