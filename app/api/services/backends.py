"""The small interfaces the routes and shared services use, met by both backends.

``files`` (the default): RunStore + RunExecutor (threads) + RunStream (in-process bus and
events.jsonl). ``redis``: RedisRunStore + CeleryExecutor + RedisRunStream (README, "Beyond
one machine"). Routes depend on these protocols only, so a backend is chosen at start-up
(app/api/main.py) and nothing above the services knows which one it got.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from app.api.services.event_bus import RunEvent
from app.api.services.run_store import RunOptions, RunState
from app.config import AppConfig


class Claim(Protocol):
    """One request's hold on an Idempotency-Key, from the claim until its run is recorded."""

    def record(self, run_id: str) -> None:
        """Write the run's id into this claim (not into a claim someone else made since)."""
        ...

    def abandon(self) -> None:
        """Nothing was started: remove this claim, and only this one."""
        ...


class Claims(Protocol):
    """Idempotency-Key claims shared by every process (files: output/.idempotency/)."""

    def try_claim(self, key: str) -> Claim | None:
        """Claim ``key`` for a run about to be created; None when it is claimed already."""
        ...

    def claimed_run(self, key: str) -> str | None:
        """The run id recorded with the claim; None while its run is being created."""
        ...

    def age_s(self, key: str) -> float:
        """How long the claim has existed (0 where stale claims expire by themselves)."""
        ...

    def release_if(self, key: str, run_id: str | None) -> None:
        """Remove a claim that names ``run_id`` (None: one still pending), unless it has
        changed meanwhile: a claim whose run is gone, or a stale pending one."""
        ...


class Store(Protocol):
    @property
    def root(self) -> Path: ...

    @property
    def config(self) -> AppConfig: ...

    @property
    def claims(self) -> Claims: ...

    def get(self, run_id: str) -> RunState: ...

    async def aget(self, run_id: str) -> RunState:
        """``get`` for the event loop: never blocks it on the network."""
        ...

    async def astatus(self, run_id: str) -> dict[str, Any]:
        """Exactly the v1 status payload of a run (RunNotFound if none)."""
        ...

    def list_runs(
        self, *, limit: int, cursor: str | None = None, status: str | None = None
    ) -> tuple[list[RunState], str | None]: ...

    def delete(self, run_id: str) -> None: ...

    def remove_expired(self, *, older_than: datetime) -> list[str]: ...

    def run_for_key(self, key: str) -> str | None: ...

    def count(self) -> int: ...

    def count_by_status(self) -> dict[str, int]: ...

    def is_writable(self) -> bool: ...


class Executor(Protocol):
    def submit(self, run_id: str, options: RunOptions) -> RunState: ...

    async def asubmit(self, run_id: str, options: RunOptions) -> RunState: ...

    def cancel(self, run_id: str) -> tuple[RunState, bool]: ...

    @property
    def queued(self) -> int: ...

    @property
    def running(self) -> int: ...

    @property
    def accepting(self) -> bool: ...

    def shutdown(self) -> None: ...


class Stream(Protocol):
    @property
    def store(self) -> Store: ...

    def open_streams(self) -> int: ...

    async def finished_before(self, run_id: str, last_event_id: int) -> bool: ...

    def follow(self, run_id: str, last_event_id: int) -> AsyncGenerator[RunEvent, None]: ...
