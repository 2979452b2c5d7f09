"""The files backend's executor and store, driven directly (no HTTP): order, bounds, and
what a failed or interrupted create leaves behind."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest

from tests.api import gated_pipeline

pytestmark = pytest.mark.anyio


class TestThreadExecutorAndStore:
    def test_a_cancel_that_saw_queued_does_not_stop_a_started_run(self, settings) -> None:
        from app.api.services.backends.files.store import FileRunStore
        from app.api.services.run_store import RunOptions

        store = FileRunStore(settings())
        store.open()
        store.create("raced", RunOptions(question="q?"))
        store.transition("raced", "running")
        stopped = store.try_transition(
            "raced", "stopped", expect=frozenset({"queued"}), finish_reason="cancelled"
        )
        assert stopped is None
        assert store.get("raced").status == "running"

    def test_waiting_runs_start_in_order_and_are_small(self, settings) -> None:
        # Thousands of runs may wait: each must stay a few objects (a Future or an Event per
        # run made the collector's full passes stall POSTs for 90-180 ms at 14,000 runs).
        from app.api.services.backends.files.executor import ThreadExecutor
        from app.api.services.backends.files.store import FileRunStore
        from app.api.services.run_store import RunOptions

        waiting = 200
        store = FileRunStore(settings(max_workers=1, max_queued=waiting + 1))
        store.open()
        started: list[str] = []
        all_ended = threading.Event()

        def on_change(run_id: str, kind: str, payload: dict[str, Any]) -> None:
            if kind == "status" and payload["status"] == "running":
                started.append(run_id)
            if kind == "status" and payload["status"] == "completed" and run_id == "w199":
                all_ended.set()

        store.add_listener(on_change)
        executor = ThreadExecutor(store, store.config)
        first = gated_pipeline.gate("first")
        try:
            executor.submit("first", RunOptions(question="q?"))
            assert first.started.wait(5), "the first run never started"
            gc.collect()
            before = len(gc.get_objects())
            for i in range(waiting):
                executor.submit(f"w{i:03d}", RunOptions(question="q?"))
            gc.collect()
            per_run = (len(gc.get_objects()) - before) / waiting
            assert per_run <= 2, f"{per_run:.1f} objects tracked per waiting run"
            assert executor.queued == waiting
            first.release.set()
            assert all_ended.wait(30), f"only {len(started)} runs started"
            assert started == ["first", *(f"w{i:03d}" for i in range(waiting))]
        finally:
            first.release.set()
            executor.shutdown(wait_s=5)

    def test_a_server_shutting_down_answers_503_not_queue_full(self, settings) -> None:
        from app.api.services.backends.files.executor import ThreadExecutor
        from app.api.services.backends.files.store import FileRunStore
        from app.api.services.errors import ShuttingDown
        from app.api.services.run_store import RunOptions

        store = FileRunStore(settings())
        store.open()
        executor = ThreadExecutor(store, store.config)
        executor.shutdown(wait_s=5)
        with pytest.raises(ShuttingDown) as refused:
            executor.submit("late", RunOptions(question="q?"))
        assert refused.value.status_code == 503
        assert refused.value.headers == {"Retry-After": "5"}
        assert "shutting down" in refused.value.message
        store.close()

    def test_a_run_that_cannot_be_recorded_does_not_block_the_queue(self, settings) -> None:
        from app.api.services.backends.files.executor import ThreadExecutor
        from app.api.services.backends.files.store import FileRunStore
        from app.api.services.run_store import RunOptions, RunState

        class RefusingStore(FileRunStore):
            """A disk that refuses every state write of one run once it is queued."""

            def transition(self, run_id: str, status: str, **kwargs: Any) -> RunState:
                if run_id == "doomed":
                    raise OSError(28, "No space left on device")
                return super().transition(run_id, status, **kwargs)

        store = RefusingStore(settings(max_workers=1))
        store.open()
        ended = threading.Event()
        store.add_listener(
            lambda run_id, kind, payload: (
                ended.set() if run_id == "after" and payload.get("status") == "completed" else None
            )
        )
        executor = ThreadExecutor(store, store.config)
        try:
            executor.submit("doomed", RunOptions(question="q?"))
            executor.submit("after", RunOptions(question="q?"))
            assert ended.wait(10), "the run behind the doomed one never completed"
        finally:
            executor.shutdown(wait_s=5)

    async def test_a_create_whose_state_cannot_be_made_durable_leaves_nothing(
        self, settings, monkeypatch
    ) -> None:
        from app.api.services.backends.files import store as store_module
        from app.api.services.backends.files.store import FileRunStore
        from app.api.services.run_store import RunOptions

        def refuse(fd: int) -> None:
            raise OSError(5, "Input/output error")

        store = FileRunStore(settings())
        store.open()
        try:
            with monkeypatch.context() as patched:
                patched.setattr(store_module, "_sync_file", refuse)
                with pytest.raises(OSError, match="Input/output"):
                    await store.acreate("fragile", RunOptions(question="q?"))
            assert store.count() == 0
            assert not (store.root / "fragile").exists()
            # The id is free again, and a second try records the run.
            state = await store.acreate("fragile", RunOptions(question="q?"))
            assert state.status == "queued"
            assert (
                json.loads((store.root / "fragile" / "api_state.json").read_text())["status"]
                == "queued"
            )
        finally:
            store.close()

    async def test_a_shutdown_during_a_create_does_not_lose_the_run(
        self, settings, monkeypatch
    ) -> None:
        from app.api.services.backends.files import store as store_module
        from app.api.services.backends.files.executor import ThreadExecutor
        from app.api.services.backends.files.store import FileRunStore
        from app.api.services.errors import ShuttingDown
        from app.api.services.run_store import RunOptions

        syncing, release = threading.Event(), threading.Event()
        real_sync = store_module._sync_file

        def slow_sync(fd: int) -> None:
            syncing.set()
            release.wait(10)
            real_sync(fd)

        monkeypatch.setattr(store_module, "_sync_file", slow_sync)
        store = FileRunStore(settings())
        store.open()
        executor = ThreadExecutor(store, store.config)
        outcome: list[BaseException] = []

        async def post() -> None:
            try:
                await executor.asubmit("late", RunOptions(question="q?"))
            except ShuttingDown as exc:
                outcome.append(exc)

        try:
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(post)
                    assert await anyio.to_thread.run_sync(syncing.wait, 5)

                    async def shut_down() -> None:
                        await anyio.to_thread.run_sync(executor.shutdown)

                    tasks.start_soon(shut_down)
                    deadline = anyio.current_time() + 5
                    while executor.accepting:  # shutdown has begun
                        assert anyio.current_time() < deadline, "shutdown never began"
                        await anyio.sleep(0.001)
                    release.set()
            assert len(outcome) == 1  # refused: the server is stopping
            state = store.get("late")
            assert state.status == "stopped"
            assert state.error is not None
            assert state.error["code"] == "server_shutdown"
        finally:
            release.set()
            store.close()

    async def test_a_post_cancelled_during_its_create_still_queues_the_run(
        self, settings, monkeypatch
    ) -> None:
        # uvicorn's graceful-shutdown timeout cancels a request task: a create already
        # under way finishes (its run is on disk), and that run must then be queued, not
        # left "queued" forever with no worker ever taking it.
        from app.api.services.backends.files import store as store_module
        from app.api.services.backends.files.executor import ThreadExecutor
        from app.api.services.backends.files.store import FileRunStore
        from app.api.services.run_store import RunOptions

        syncing, release = threading.Event(), threading.Event()
        real_sync = store_module._sync_file

        def held_sync(fd: int) -> None:
            syncing.set()
            assert release.wait(10), "the test never released the fsync"
            real_sync(fd)

        monkeypatch.setattr(store_module, "_sync_file", held_sync)
        store = FileRunStore(settings(max_workers=1))
        store.open()
        ended = threading.Event()
        store.add_listener(
            lambda run_id, kind, payload: (
                ended.set()
                if run_id == "cut-short" and payload.get("status") == "completed"
                else None
            )
        )
        executor = ThreadExecutor(store, store.config)
        try:
            task = asyncio.ensure_future(executor.asubmit("cut-short", RunOptions(question="q?")))
            assert await anyio.to_thread.run_sync(syncing.wait, 10)
            task.cancel()  # a native cancel, as uvicorn sends: not an anyio scope
            release.set()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (store.root / "cut-short").is_dir()  # the create did finish
            assert await anyio.to_thread.run_sync(ended.wait, 10), (
                "the run was created but never ran: "
                f"{store.get('cut-short').status}, {executor.queued} queued"
            )
        finally:
            release.set()
            executor.shutdown(wait_s=5)
            store.close()
