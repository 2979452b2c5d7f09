"""run_in_pool: a cancelled caller still waits for its call to end (no clean-up races it)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from app.api.services.threads import run_in_pool, thread_limiter

pytestmark = pytest.mark.anyio


async def test_returns_the_result_and_raises_the_exception() -> None:
    with ThreadPoolExecutor(1) as pool:
        assert await run_in_pool(pool, lambda: threading.current_thread().name) != (
            threading.current_thread().name
        )

        def fail() -> None:
            raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            await run_in_pool(pool, fail)


async def test_a_cancellation_waits_for_the_call_to_end() -> None:
    started, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def slow() -> None:
        started.set()
        release.wait(10)
        finished.append("call")

    scope = anyio.CancelScope()
    with ThreadPoolExecutor(1) as pool:
        async with anyio.create_task_group() as tasks:

            async def caller() -> None:
                with scope:
                    try:
                        await run_in_pool(pool, slow)
                    finally:
                        finished.append("caller clean-up")

            tasks.start_soon(caller)
            assert await anyio.to_thread.run_sync(started.wait, 5)
            scope.cancel()
            await wait_all_tasks_blocked()  # the caller has seen the cancellation by now
            # ... and not acted on it yet: its call is still running.
            assert finished == []
            release.set()
    assert finished == ["call", "caller clean-up"]


async def test_a_limiter_per_name_and_loop() -> None:
    first = thread_limiter("a", 3)
    assert thread_limiter("a", 99) is first
    assert first.total_tokens == 3
    assert thread_limiter("b", 2) is not first


async def test_a_native_cancel_also_waits_for_the_call_to_end() -> None:
    # task.cancel() (uvicorn's graceful-shutdown timeout) is not an anyio cancel scope.
    started, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def slow() -> None:
        started.set()
        release.wait(10)
        finished.append("call")

    async def caller() -> None:
        try:
            await run_in_pool(pool, slow)
        finally:
            finished.append("caller clean-up")

    with ThreadPoolExecutor(1) as pool:
        task = asyncio.get_running_loop().create_task(caller())
        assert await anyio.to_thread.run_sync(started.wait, 5)
        task.cancel()
        await wait_all_tasks_blocked()
        assert finished == []
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert finished == ["call", "caller clean-up"]
