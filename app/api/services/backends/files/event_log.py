"""Every run event, numbered and kept: ``output/<run_id>/events.jsonl``, then published.

The process that owns a run numbers its events 1, 2, 3, ... and appends each one to the
run's events.jsonl *before* publishing it, so a replay (and any other process reading the
file) sees the same ids. One lock per run keeps numbering, appending and publishing in one
order, whichever thread records (the worker, or the HTTP thread that cancels).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from app.api.services.backends.files.event_bus import EventBus
from app.api.services.keyed_locks import KeyedLocks
from app.api.services.run_status import TERMINAL
from app.api.services.run_store import RunEvent

log = logging.getLogger(__name__)

EVENTS_FILE = "events.jsonl"


def is_terminal(event: RunEvent) -> bool:
    return event.event == "status" and event.data.get("status") in TERMINAL


class EventLog:
    """Numbering, persistence and publication of run events."""

    def __init__(self, root: Path, bus: EventBus) -> None:
        self.root = root
        self.bus = bus
        self._lock = threading.Lock()
        self._run_locks = KeyedLocks()
        self._next: dict[str, int] = {}

    def record(self, run_id: str, event: str, data: dict[str, Any]) -> RunEvent:
        """Number the event, append it to the run's file, then publish it.

        A run ends once: a terminal status for a run whose log already ends with one is
        not appended again (two workers reconciling the same run after a crash, or a
        repair of a log a crash cut short, agree on the one end already written).
        """
        with self._run_locks.hold(run_id):
            path = self.root / run_id / EVENTS_FILE
            if event == "status" and data.get("status") in TERMINAL:
                last = last_event(path)
                if last is not None and is_terminal(last):
                    return last
            number = self._next.get(run_id)
            if number is None:  # the first event this process writes for the run
                # A new run (the usual case: its queued event) has no file yet: one failed
                # open says so, and numbering starts at 1 without reading anything.
                number = self.last_id(run_id) + 1 if _end_torn_line(path) else 1
            item = RunEvent(number, event, data)
            line = json.dumps(item.to_json(), ensure_ascii=False, separators=(",", ":"))
            _append(path, (line + "\n").encode("utf-8"))
            self._next[run_id] = number + 1
            self.bus.publish(run_id, item)
        return item

    def listener(self, run_id: str, kind: str, payload: dict[str, Any]) -> None:
        """For FileRunStore.add_listener: each status and progress change, and each piece of
        an answer, becomes an event."""
        if kind == "status" and payload.get("status") == "queued":
            # A run is only ever queued when it is created, in a folder just made with an
            # exclusive mkdir: its numbering starts at 1 (even if this process numbered an
            # earlier run with this id that another deleted), with no file to look at.
            with self._lock:
                self._next[run_id] = 1
        self.record(run_id, kind, payload)

    def forget(self, run_id: str) -> None:
        """For FileRunStore.add_removal_listener: a run id used again starts at event 1."""
        with self._lock:
            self._next.pop(run_id, None)

    def read(self, run_id: str, *, after: int = 0) -> list[RunEvent]:
        """The run's events with an id above ``after``, in order."""
        events, _ = self.read_from(run_id, 0)
        return [e for e in events if e.id > after]

    def read_from(self, run_id: str, offset: int) -> tuple[list[RunEvent], int]:
        """Complete events from byte ``offset`` on, and the offset after the last of them.

        A line still being written (no newline yet) is left for the next read.
        """
        path = self.root / run_id / EVENTS_FILE
        try:
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
        except FileNotFoundError:
            return [], offset
        end = chunk.rfind(b"\n") + 1
        events: list[RunEvent] = []
        for raw in chunk[:end].splitlines():
            try:
                data = json.loads(raw)
                events.append(RunEvent(int(data["id"]), str(data["event"]), dict(data["data"])))
            except (ValueError, KeyError, TypeError):
                log.warning("run %s: skipped a damaged line in %s", run_id, EVENTS_FILE)
        return events, offset + end

    def ensure_terminal(self, run_id: str, status: dict[str, Any]) -> RunEvent:
        """The run's terminal status event, appended from ``status`` if the log lacks it
        (a crash between the state and the event): every subscriber sees the same end, with
        the same id, and it is in the log."""
        return self.record(run_id, "status", status)

    def last_id(self, run_id: str) -> int:
        events = self.read(run_id)
        return events[-1].id if events else 0


TAIL_BYTES = 16_384


def last_event(path: Path) -> RunEvent | None:
    """The last complete event of an events file, read from its end (None: none there)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - TAIL_BYTES))
            tail = handle.read()
    except FileNotFoundError:
        return None
    for raw in reversed(tail.splitlines()):
        try:
            data = json.loads(raw)
            return RunEvent(int(data["id"]), str(data["event"]), dict(data["data"]))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line, or the start of a line cut by the tail read
    return None


def _append(path: Path, data: bytes) -> None:
    """One ``write`` with O_APPEND: a whole line, no buffered file object around it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _end_torn_line(path: Path) -> bool:
    """Close a line a crashed writer left half-written, so the next event is a line of its own.

    The torn fragment stays (readers skip it); without the newline it would swallow the
    next event too, e.g. the terminal status a restarted server records. False when the
    file does not exist.
    """
    try:
        with path.open("rb+") as handle:
            handle.seek(0, 2)
            if handle.tell() == 0:
                return True
            handle.seek(-1, 2)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
    except FileNotFoundError:
        return False
    return True
