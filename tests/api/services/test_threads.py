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


class HeldCall:
    """A call that runs until released, and a log of what ended in which order."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.finished: list[str] = []

    def __call__(self) -> None:
        self.started.set()
        self.release.wait(10)
        self.finished.append("call")

    async def run_in(self, pool: ThreadPoolExecutor) -> None:
        try:
            await run_in_pool(pool, self)
        finally:
            self.finished.append("caller clean-up")


async def test_a_cancellation_waits_for_the_call_to_end() -> None:
    call, scope = HeldCall(), anyio.CancelScope()
    with ThreadPoolExecutor(1) as pool:
        async with anyio.create_task_group() as tasks:

            async def caller() -> None:
                with scope:
                    await call.run_in(pool)

            tasks.start_soon(caller)
            assert await anyio.to_thread.run_sync(call.started.wait, 5)
            scope.cancel()
            await wait_all_tasks_blocked()  # the caller has seen the cancellation by now
            # ... and not acted on it yet: its call is still running.
            assert call.finished == []
            call.release.set()
    assert call.finished == ["call", "caller clean-up"]


async def test_a_native_cancel_also_waits_for_the_call_to_end() -> None:
    # task.cancel() (uvicorn's graceful-shutdown timeout) is not an anyio cancel scope.
    call = HeldCall()
    with ThreadPoolExecutor(1) as pool:
        task = asyncio.get_running_loop().create_task(call.run_in(pool))
        assert await anyio.to_thread.run_sync(call.started.wait, 5)
        task.cancel()
        await wait_all_tasks_blocked()
        assert call.finished == []
        call.release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert call.finished == ["call", "caller clean-up"]


async def test_a_limiter_per_name_and_loop() -> None:
    first = thread_limiter("a", 3)
    assert thread_limiter("a", 99) is first
    assert first.total_tokens == 3
    assert thread_limiter("b", 2) is not first
