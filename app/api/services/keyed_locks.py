"""A lock per key (a run id) that exists only while someone holds it or waits for it.

A lock kept for every run ever seen cost one more object per run for the garbage collector
to walk on each full pass; with tens of thousands of runs those passes stalled requests for
tens of milliseconds. Here the entry goes when its last user lets go.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class KeyedLocks:
    def __init__(self) -> None:
        self._guard = threading.Lock()  # held only to look up or count, never while waiting
        self._locks: dict[str, tuple[threading.Lock, list[int]]] = {}

    def acquire(self, key: str) -> None:
        with self._guard:
            entry = self._locks.get(key)
            if entry is None:
                entry = self._locks[key] = (threading.Lock(), [0])
            entry[1][0] += 1  # a user from now on, so the entry outlives its holder
        entry[0].acquire()

    def release(self, key: str) -> None:
        with self._guard:
            lock, users = self._locks[key]
            users[0] -= 1
            if users[0] == 0:
                # Nobody waits on this lock: the next acquire makes a fresh one, which is
                # right, since this holder's work is done.
                del self._locks[key]
        lock.release()

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        self.acquire(key)
        try:
            yield
        finally:
            self.release(key)

    def users(self, key: str) -> int:
        """Holders and waiters of ``key`` (for tests)."""
        with self._guard:
            entry = self._locks.get(key)
            return entry[1][0] if entry else 0

    def __len__(self) -> int:
        """Keys with a holder or a waiter (for tests)."""
        with self._guard:
            return len(self._locks)
