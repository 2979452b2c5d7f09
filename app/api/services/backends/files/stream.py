"""What one SSE subscriber receives: the replay after Last-Event-ID, then live events.

Subscribe first, then read the log: an event appended after the read is already on its way
through the subscription, and one in both places is dropped by its id. The stream ends
after the run's terminal status event; a run that ended without one in its log (a crash
between its state and its event, a run from before events were kept, a CLI run) has it
appended to its log from its state first, so no stream invents an event.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import anyio.to_thread

from app.api.services.backends.files.event_bus import EventBus
from app.api.services.backends.files.event_log import EventLog
from app.api.services.backends.files.store import FileRunStore
from app.api.services.errors import RunNotFound
from app.api.services.run_store import RunEvent, is_terminal


class FileRunStream:
    def __init__(self, store: FileRunStore, events: EventLog, bus: EventBus) -> None:
        self.store = store
        self.events = events
        self.bus = bus

    def open_streams(self) -> int:
        """Streams open in this process (live subscriptions)."""
        return self.bus.count()

    async def finished_before(self, run_id: str, last_event_id: int) -> bool:
        """True when a client that has seen ``last_event_id`` has seen the whole run."""
        state = self.store.get(run_id)
        if not state.terminal:
            return False
        last = await anyio.to_thread.run_sync(self.events.last_id, run_id)
        return last_event_id >= max(last, 1)

    async def follow(self, run_id: str, last_event_id: int) -> AsyncGenerator[RunEvent, None]:
        """Every event after ``last_event_id``, in order, without gaps or repeats.

        A run deleted while it is followed just ends the stream.
        """
        # aclosing: the subscription inside is removed as soon as this generator is closed.
        async with aclosing(self._follow(run_id, last_event_id)) as events:
            try:
                async for event in events:
                    yield event
            except RunNotFound:
                return

    async def _follow(self, run_id: str, last_event_id: int) -> AsyncGenerator[RunEvent, None]:
        sent = last_event_id
        async with self.bus.subscribe(run_id) as subscription:
            replay = await anyio.to_thread.run_sync(
                lambda: self.events.read(run_id, after=last_event_id)
            )
            for event in replay:
                yield event
                sent = event.id
                if is_terminal(event):
                    return
            if self.store.get(run_id).terminal:
                # It ended after the replay was read. Its last events are in the log by now,
                # though not necessarily in the queue yet (delivery is scheduled on the loop,
                # or waits for the watcher): read them there, so that no event is skipped
                # or renumbered. Only the terminal status event may still be on its way (the
                # state file is written first): then close with one made from the state.
                rest = await anyio.to_thread.run_sync(lambda: self.events.read(run_id, after=sent))
                for event in rest:
                    yield event
                    sent = event.id
                    if is_terminal(event):
                        return
                # No terminal event in the log (a crash between the state and the event):
                # it is appended now, so that every subscriber sees the same end.
                state = self.store.get(run_id)
                final = await anyio.to_thread.run_sync(
                    self.events.ensure_terminal, run_id, state.status_payload()
                )
                if final.id > sent:
                    yield final
                return
            while True:
                queued = await subscription.queue.get()
                if queued is None:  # dropped for falling behind, or the server is stopping
                    return
                if queued.id <= sent:
                    if is_terminal(queued):
                        # The client said it had seen past the run's last event (a stale
                        # id, or one from a run deleted and made again): the run's end
                        # still ends its stream, with the final status.
                        yield queued
                        return
                    continue
                yield queued
                sent = queued.id
                if is_terminal(queued):
                    return
