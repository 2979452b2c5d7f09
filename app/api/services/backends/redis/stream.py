"""What one SSE subscriber receives with APP_BACKEND=redis: the run's Redis stream.

The stream is the log: replay and live tail are one loop of XREAD BLOCK from the last id
sent, so there is no gap between them and no node has to relay anything; any node serves
any run's events the moment a worker or another node appends them. A read blocks at most
``block_ms``, after which the loop looks at whether the run was deleted or the server is
stopping, so no stream outlives either by more than that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator

import anyio

from app.api.services.backends.redis.store import RedisRunStore
from app.api.services.errors import RunNotFound, StoreUnavailable
from app.api.services.run_store import RunEvent, is_terminal

log = logging.getLogger(__name__)

BLOCK_MS = 1000
OUTAGE_HOLD_S = 60.0  # how long a stream waits for Redis to come back before it ends
OUTAGE_RETRY_S = 0.5
# Redis stream ids are 64-bit: a larger one is an error ("Invalid stream ID"), which would
# look like Redis being away. Any Last-Event-ID from here up is past a run's end alike.
MAX_EVENT_ID = 2**63 - 1


class RedisRunStream:
    def __init__(
        self,
        store: RedisRunStore,
        *,
        block_ms: int = BLOCK_MS,
        outage_hold_s: float = OUTAGE_HOLD_S,
    ) -> None:
        self.store = store
        self.block_ms = block_ms
        self.outage_hold_s = outage_hold_s
        self._open = 0
        self._closed = False

    def open_streams(self) -> int:
        return self._open

    def close(self) -> None:
        """The server is stopping: every stream ends within ``block_ms``."""
        self._closed = True

    async def finished_before(self, run_id: str, last_event_id: int) -> bool:
        """True when a client that has seen ``last_event_id`` has seen the whole run."""
        state = await self.store.aget(run_id)
        if not state.terminal:
            return False
        return last_event_id >= max(await self.store.alast_event_id(run_id), 1)

    async def follow(self, run_id: str, last_event_id: int) -> AsyncGenerator[RunEvent, None]:
        """Every event after ``last_event_id``, in order, without gaps or repeats."""
        self._open += 1
        try:
            sent = min(last_event_id, MAX_EVENT_ID)
            unreachable_since: float | None = None
            while not self._closed:
                try:
                    events = await self.store.aread_events(
                        run_id, after=sent, block_ms=self.block_ms
                    )
                except StoreUnavailable:
                    # Redis is away: hold the connection (sse-starlette keeps pinging it)
                    # and go on from the last event sent when Redis is back; after
                    # OUTAGE_HOLD_S end the stream cleanly, and the client resumes with
                    # Last-Event-ID. Never a torn body.
                    now = time.monotonic()
                    unreachable_since = unreachable_since or now
                    if now - unreachable_since > self.outage_hold_s:
                        log.warning("run %s: Redis unreachable; ending its event stream", run_id)
                        return
                    await anyio.sleep(OUTAGE_RETRY_S)  # the pace of looking for Redis again
                    continue
                unreachable_since = None
                for event in events:
                    yield event
                    sent = event.id
                    if is_terminal(event):
                        return
                if events:
                    continue
                try:
                    state = await self.store.aget(run_id)
                except RunNotFound:  # deleted while followed: the stream just ends
                    return
                except StoreUnavailable:
                    continue  # the next read finds Redis away and holds the stream
                if state.terminal:
                    # It ended after the read timed out: its last events (the terminal one
                    # is written in the same transaction as the state) are in the stream.
                    try:
                        last = await self.store.aevents_after(run_id, sent)
                    except StoreUnavailable:
                        continue
                    for event in last:
                        yield event
                        sent = event.id
                        if is_terminal(event):
                            return
                    # No terminal event at all (a damaged run): close with one made from
                    # the state, numbered after the last real one.
                    yield RunEvent(sent + 1, "status", state.status_payload())
                    return
        finally:
            self._open -= 1
