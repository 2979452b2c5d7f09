"""The Stream interface: what an SSE subscriber of a run gets, whatever the backend
(backends/files/stream.py: the in-process bus and events.jsonl; backends/redis/stream.py:
Redis streams). The stream ends after the run's terminal status event."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from app.api.services.run_store import RunEvent, Store


class Stream(Protocol):
    @property
    def store(self) -> Store: ...

    def open_streams(self) -> int: ...

    async def finished_before(self, run_id: str, last_event_id: int) -> bool: ...

    def follow(self, run_id: str, last_event_id: int) -> AsyncGenerator[RunEvent, None]: ...
