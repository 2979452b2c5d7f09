"""The run vocabulary and the Store interface: what a run is, how it may change, and what
every backend's store offers (backends/files/store.py, backends/redis/store.py).

A run's state (``RunState``) is made from its request (``RunOptions``), moves only by
``apply_transition`` (queued -> running -> a terminal status; terminal states never change),
and is kept by a store; its events (``RunEvent``) are numbered 1, 2, 3, ... per run and kept
in order. Statuses and finish reasons themselves are in run_status.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from app.api.services.errors import IllegalTransition
from app.api.services.run_status import ACTIVE, FINISH_REASONS, TERMINAL
from app.config import AppConfig
from app.modules.run_logger import utc_now

STATE_FILE = "api_state.json"  # output/<run_id>/: the run's state (files backend)
EVENTS_FILE = "events.jsonl"  # output/<run_id>/: the run's events, one JSON line each

Listener = Callable[[str, str, dict[str, Any]], None]
RemovalListener = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One event of a run: its sequence number (the SSE id), its name and its data."""

    id: int
    event: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "event": self.event, "data": self.data}


def is_terminal(event: RunEvent) -> bool:
    return event.event == "status" and event.data.get("status") in TERMINAL


_ALLOWED = {
    "queued": frozenset({"running", "stopped", "failed"}),
    "running": TERMINAL,
}
_FINISH_REASONS = FINISH_REASONS


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What a client asked for: the question and the engine's options."""

    question: str
    enable_sql: bool = False
    markdown_path: str = "documents"
    log_llm_payload: bool = False
    # Idempotency-Key of the POST, and a hash of the normalised request it came with.
    idempotency_key: str | None = None
    request_hash: str | None = None


@dataclass(slots=True)
class RunState:
    """One run as the API knows it (what api_state.json holds)."""

    run_id: str
    status: str
    question: str
    enable_sql: bool = False
    markdown_path: str = "documents"
    log_llm_payload: bool = False
    created_at: str = field(default_factory=utc_now)
    # created_at has one-second resolution; this orders runs created within the same second
    # (0 for runs recorded before it existed, or rebuilt from run.json).
    created_ns: int = 0
    started_at: str | None = None
    completed_at: str | None = None
    finish_reason: str | None = None
    error: dict[str, str] | None = None
    stage: str | None = None
    message: str | None = None
    step: int | None = None
    total_steps: int | None = None
    final_output_path: str | None = None
    context_bundle_path: str | None = None
    owner: dict[str, Any] | None = None
    traceback: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None

    @classmethod
    def queued(
        cls, run_id: str, options: RunOptions, *, owner: dict[str, Any] | None = None
    ) -> RunState:
        """A new run as every store records it: queued, with the request's options."""
        return cls(
            run_id=run_id,
            status="queued",
            question=options.question,
            enable_sql=options.enable_sql,
            markdown_path=options.markdown_path,
            log_llm_payload=options.log_llm_payload,
            created_ns=time.time_ns(),
            owner=owner,
            idempotency_key=options.idempotency_key,
            request_hash=options.request_hash,
        )

    def options(self) -> RunOptions:
        """What the engine needs of the request, read back when the run starts."""
        return RunOptions(
            question=self.question,
            enable_sql=self.enable_sql,
            markdown_path=self.markdown_path,
            log_llm_payload=self.log_llm_payload,
        )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def status_payload(self) -> dict[str, Any]:
        """Exactly the v1 status payload."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "finish_reason": self.finish_reason,
            "error": self.error,
        }

    def to_json(self) -> dict[str, Any]:
        # Not dataclasses.asdict(): its generic deep copy cost ten times this on every state
        # write. The two dict fields are copied; nothing mutates them in place (a change
        # assigns a new dict), so a shallow copy keeps the snapshot apart from the live state.
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        for name in ("error", "owner"):
            if data[name] is not None:
                data[name] = dict(data[name])
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunState:
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in data.items() if k in known})
        if state.status not in TERMINAL | ACTIVE or not isinstance(state.run_id, str):
            raise ValueError(f"unknown status {state.status!r}")
        # A value of the wrong type would otherwise surface later as a 500 on /status or
        # break the sorting of the whole list; a damaged file must only fail its own run.
        for name, kind in _FIELD_TYPES.items():
            value = getattr(state, name)
            if not (isinstance(value, kind) or (value is None and name in _OPTIONAL)):
                raise ValueError(f"{name} is not a {kind.__name__}")
        reasons = _FINISH_REASONS.get(state.status)  # None: an active run has no reason yet
        if (state.finish_reason not in reasons) if reasons else state.finish_reason is not None:
            raise ValueError(f"finish_reason {state.finish_reason!r} for {state.status}")
        error = state.error
        if error is not None and not all(
            isinstance(error.get(k), str) for k in ("code", "message")
        ):
            raise ValueError("error lacks a code or a message")
        return state


def encode_status(payload: dict[str, Any]) -> bytes:
    """The bytes GET .../status sends for ``payload``: what FastAPI makes of it through the
    RunStatus model (an error keeps its code and message only), compact, UTF-8."""
    error = payload["error"]
    if error is not None:
        payload = {**payload, "error": {"code": error["code"], "message": error["message"]}}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


_FIELD_NAMES = tuple(f.name for f in fields(RunState))
_FIELD_TYPES: dict[str, type] = {
    "question": str,
    "enable_sql": bool,
    "markdown_path": str,
    "log_llm_payload": bool,
    "created_at": str,
    "created_ns": int,
    "started_at": str,
    "completed_at": str,
    "error": dict,
    "stage": str,
    "message": str,
    "step": int,
    "total_steps": int,
    "final_output_path": str,
    "context_bundle_path": str,
    "owner": dict,
    "traceback": str,
    "idempotency_key": str,
    "request_hash": str,
}
_OPTIONAL = frozenset(_FIELD_TYPES) - {
    "question",
    "enable_sql",
    "markdown_path",
    "log_llm_payload",
    "created_at",
    "created_ns",
}


def apply_transition(
    state: RunState, status: str, *, expect: frozenset[str] | None, changes: dict[str, Any]
) -> None:
    """Move ``state`` to ``status`` in place, or raise IllegalTransition (the one rule book,
    shared by the file store and the Redis store)."""
    run_id = state.run_id
    if expect is not None and state.status not in expect:
        raise IllegalTransition(f"run {run_id}: {state.status} is not {sorted(expect)}")
    if status not in _ALLOWED.get(state.status, frozenset()):
        raise IllegalTransition(f"run {run_id}: {state.status} -> {status}")
    reason = changes.get("finish_reason")
    if status in TERMINAL and reason not in _FINISH_REASONS[status]:
        raise IllegalTransition(f"run {run_id}: {status} cannot end with {reason!r}")
    state.status = status
    now = utc_now()
    if status == "running":
        state.started_at = now
    if status in TERMINAL:
        state.completed_at = now
    for key, value in changes.items():
        setattr(state, key, value)


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

    def status_json(self, run_id: str) -> bytes | None:
        """The status payload as the JSON the polling endpoint sends (``encode_status``),
        when this process answers it from memory; None: ask :meth:`astatus`."""
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
