"""What one SSE subscriber receives: the replay after Last-Event-ID, then live events.

Subscribe first, then read the log: an event appended after the read is already on its way
through the subscription, and one in both places is dropped by its id. The stream ends
after the run's terminal status event; a run that ended without one in its log (a crash
between its state and its event, a run from before events were kept, a CLI run) has it
appended to its log from its state first, so no stream invents an event.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import anyio.to_thread

from app.api.services.backends.files.event_bus import EventBus
from app.api.services.backends.files.event_log import EventLog
from app.api.services.backends.files.store import FileRunStore
from app.api.services.errors import RunNotFound
from app.api.services.run_store import RunEvent, is_terminal
from app.api.services.threads import thread_limiter

REPLAY_THREADS = 4  # reads of events.jsonl for the streams, at once


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
        last = await anyio.to_thread.run_sync(
            self.events.last_id, run_id, limiter=thread_limiter("sse-replay", REPLAY_THREADS)
        )
        return last_event_id >= max(last, 1)

    async def follow(self, run_id: str, last_event_id: int) -> AsyncGenerator[RunEvent, None]:
        """Every event after ``last_event_id``, in order, without gaps or repeats.

        A run deleted while it is followed just ends the stream.

        One generator, and no list kept once it has been sent: an open stream holds this
        frame for as long as it is open, so what it keeps is paid once per idle stream.
        """
        subscription = self.bus.add(run_id)
        try:
            sent = last_event_id
            event: RunEvent | None = None
            # The replay list lives only as long as the loop over it.
            for event in await self._read(run_id, last_event_id):
                yield event
                sent = event.id
                if is_terminal(event):
                    return
            if self.store.get(run_id).terminal:
                # It ended after the replay was read. Its last events are in the log by
                # now, though not necessarily in the queue yet (delivery is scheduled on
                # the loop, or waits for the watcher): read them there, so that no event
                # is skipped or renumbered. Only the terminal status event may still be
                # on its way (the state file is written first): then close with one
                # made from the state.
                for event in await self._read(run_id, sent):
                    yield event
                    sent = event.id
                    if is_terminal(event):
                        return
                # No terminal event in the log (a crash between the state and the
                # event): it is appended now, so that every subscriber sees the same end.
                state = self.store.get(run_id)
                final = await anyio.to_thread.run_sync(
                    self.events.ensure_terminal, run_id, state.status_payload()
                )
                if final.id > sent:
                    yield final
                return
            # The last replayed event is this stream's own copy (read from the log): not
            # kept while the stream waits. Live events are one object shared by all streams.
            event = None
            queue = subscription.queue
            while True:
                queued = await queue.get()
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
        except RunNotFound:
            return
        finally:
            self.bus.remove(subscription)

    async def _read(self, run_id: str, after: int) -> list[RunEvent]:
        # A few threads for every stream's replay: a thousand streams opening at once
        # otherwise grow anyio's pool to forty threads, each with its stack and its share of
        # the GIL, for reads of a small file that take microseconds.
        return await anyio.to_thread.run_sync(
            lambda: self.events.read(run_id, after=after),
            limiter=thread_limiter("sse-replay", REPLAY_THREADS),
        )
