"""acreate's group commit: creates that wait while one is being written are committed
together, and each still answers only with its run on disk, or fails alone."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import pytest

pytestmark = pytest.mark.anyio

GROUP = 12  # creates that arrive while the first one is held in its fsync


async def _until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``check`` on the loop (every millisecond, bounded): the test waits for a state,
    never for a length of time."""
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.001)
    assert check(), what


def _held_first_sync(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """_sync_file whose first call waits for ``release``; ``holding`` is set once it does."""
    from app.api.services.backends.files import store as store_module

    holding, release = threading.Event(), threading.Event()
    real = store_module._sync_file
    calls = iter(range(1_000_000))

    def held(fd: int) -> None:
        if next(calls) == 0:
            holding.set()
            assert release.wait(10), "the test never released the first fsync"
        real(fd)

    monkeypatch.setattr(store_module, "_sync_file", held)
    return holding, release


async def test_creates_that_wait_are_committed_as_one_group(settings, monkeypatch) -> None:
    from app.api.services.backends.files.store import FileRunStore
    from app.api.services.run_store import RunOptions

    holding, release = _held_first_sync(monkeypatch)
    store = FileRunStore(settings())
    store.open()
    seen_on_disk: dict[str, Any] = {}

    async def create(run_id: str) -> None:
        state = await store.acreate(run_id, RunOptions(question=f"q {run_id}?"))
        # Answered only once the run is on disk, whole, under its own name.
        seen_on_disk[run_id] = json.loads((store.root / run_id / "api_state.json").read_bytes())
        assert state.status == "queued"

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(create, "first")
            assert await anyio.to_thread.run_sync(holding.wait, 10)
            for i in range(GROUP):
                tasks.start_soon(create, f"r{i}")
            await _until(lambda: len(store._pending) == GROUP, "the creates never queued up")
            assert not seen_on_disk  # none answered while the first commit is held
            release.set()
        assert store.commit_groups == 2  # the first alone, then the other twelve together
        assert {k: v["status"] for k, v in seen_on_disk.items()} == dict.fromkeys(
            ["first", *(f"r{i}" for i in range(GROUP))], "queued"
        )
        assert store.count() == GROUP + 1
        assert not [p for p in os.listdir(store.root) if p.startswith(".creating-")]
    finally:
        release.set()
        store.close()


async def test_a_create_that_fails_in_a_group_fails_alone(settings, monkeypatch) -> None:
    from app.api.services.backends.files import store as store_module
    from app.api.services.backends.files.store import FileRunStore
    from app.api.services.errors import RunAlreadyExists
    from app.api.services.run_store import RunOptions

    store = FileRunStore(settings())
    store.open()
    store.create("taken", RunOptions(question="q?"))  # before the first fsync is held
    holding, release = _held_first_sync(monkeypatch)
    held_sync = store_module._sync_file

    def failing_for_doomed(fd: int) -> None:
        # The state file names its run: only the run called "doomed" cannot be made durable.
        # (Opened write-only: read through its path, from /proc, Linux.)
        with open(os.readlink(f"/proc/self/fd/{fd}"), "rb") as staged:
            doomed = b'"doomed"' in staged.read()
        if doomed:
            raise OSError(5, "Input/output error")
        held_sync(fd)

    monkeypatch.setattr(store_module, "_sync_file", failing_for_doomed)
    outcomes: dict[str, Any] = {}

    async def create(run_id: str) -> None:
        try:
            outcomes[run_id] = (await store.acreate(run_id, RunOptions(question="q?"))).status
        except Exception as exc:  # the outcome is what the test looks at
            outcomes[run_id] = exc

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(create, "first")
            assert await anyio.to_thread.run_sync(holding.wait, 10)
            for run_id in ("ok-1", "doomed", "taken", "ok-2"):
                tasks.start_soon(create, run_id)
            await _until(lambda: len(store._pending) == 4, "the creates never queued up")
            release.set()
        assert outcomes["first"] == outcomes["ok-1"] == outcomes["ok-2"] == "queued"
        assert isinstance(outcomes["doomed"], OSError)
        assert isinstance(outcomes["taken"], RunAlreadyExists)
        # Nothing of the failed ones: no run, no staging folder; the id of "doomed" is free.
        assert not (store.root / "doomed").exists()
        assert not [p for p in os.listdir(store.root) if p.startswith(".creating-")]
        assert sorted(s.run_id for s in store.list_runs(limit=10)[0]) == [
            "first",
            "ok-1",
            "ok-2",
            "taken",
        ]
    finally:
        release.set()
        store.close()


async def test_no_create_of_a_group_answers_before_its_run_is_renamed_into_place(
    settings, monkeypatch
) -> None:
    # A 202 means the run survives a kill: a create may answer only once its folder has its
    # final name (a SIGKILL test cannot tell: the renames finish microseconds after an
    # early answer). The group's first rename is held; nothing of the group may answer.
    from app.api.services import faults
    from app.api.services.backends.files.store import FileRunStore
    from app.api.services.run_store import RunOptions

    holding, release = _held_first_sync(monkeypatch)
    renaming, go_on = threading.Event(), threading.Event()
    claims = iter(range(1_000_000))

    def hold_the_groups_first_rename(point: str) -> None:
        if point == "create:staged" and next(claims) == 1:  # 0 is "first", alone
            renaming.set()
            assert go_on.wait(10), "the test never let the rename go on"

    store = FileRunStore(settings())
    store.open()
    answered: list[str] = []

    async def create(run_id: str) -> None:
        await store.acreate(run_id, RunOptions(question=f"q {run_id}?"))
        answered.append(run_id)

    group = [f"r{i}" for i in range(GROUP)]
    try:
        with faults.installed(hold_the_groups_first_rename):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(create, "first")
                assert await anyio.to_thread.run_sync(holding.wait, 10)
                for run_id in group:
                    tasks.start_soon(create, run_id)
                await _until(lambda: len(store._pending) == GROUP, "the creates never queued up")
                release.set()
                assert await anyio.to_thread.run_sync(renaming.wait, 10)
                # An answer reaches the loop by call_soon_threadsafe: one sent before the
                # held rename is queued ahead of to_thread's own wake-up above; these turns
                # of the loop let it, and the task it wakes, run.
                for _ in range(20):
                    await anyio.sleep(0)
                assert answered == ["first"]
                assert not [r for r in group if (store.root / r).exists()]
                go_on.set()
        assert sorted(answered) == sorted(["first", *group])
    finally:
        release.set()
        go_on.set()
        store.close()


async def test_a_create_after_close_is_refused_as_shutting_down(settings) -> None:
    from app.api.services.backends.files.store import FileRunStore
    from app.api.services.errors import ShuttingDown
    from app.api.services.run_store import RunOptions

    store = FileRunStore(settings())
    store.open()
    store.close()
    # A 503 with Retry-After for the client, not a RuntimeError (a 500) from the closed pool.
    with pytest.raises(ShuttingDown):
        await store.acreate("late", RunOptions(question="late?"))
    assert not (store.root / "late").exists()
