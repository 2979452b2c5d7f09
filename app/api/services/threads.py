"""Blocking work started from the event loop, on threads of its own.

``thread_limiter``: a small budget of anyio's worker threads, per event loop (an anyio
CapacityLimiter in a RunVar: limiters belong to one loop, and tests start many). Work sent
there does not queue behind, or crowd out, anyio's shared pool of 40 threads.

``run_in_pool``: a call in a ``ThreadPoolExecutor`` the caller owns, for hot paths:
loop.run_in_executor costs ~16 us of CPU per call where
anyio.to_thread.run_sync costs ~60 us (measured here, 3,000 calls from 30 tasks).

Either way a few threads, not forty: each contends with the event loop for the GIL
(measured on POST: 1 thread serialises the fsyncs; 8 and 40 cost more CPU per request
than 4).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio
from anyio import CapacityLimiter
from anyio.lowlevel import RunVar

T = TypeVar("T")

_limiters: RunVar[dict[str, CapacityLimiter]] = RunVar("app_thread_limiters")


def thread_limiter(name: str, threads: int) -> CapacityLimiter:
    """The limiter called ``name`` of the running event loop (``threads`` on first use)."""
    try:
        limiters = _limiters.get()
    except LookupError:
        limiters = {}
        _limiters.set(limiters)
    limiter = limiters.get(name)
    if limiter is None:
        limiter = limiters[name] = CapacityLimiter(threads)
    return limiter


async def run_in_pool(pool: ThreadPoolExecutor, call: Callable[[], T]) -> T:
    """``call()`` in ``pool``, awaited to the end even when the caller is cancelled.

    As anyio.to_thread.run_sync does by default: a cancellation takes effect once the call
    has returned, so that the caller's clean-up never races a call still running. That
    holds for a native ``task.cancel()`` too (uvicorn's graceful-shutdown timeout sends
    one), which an anyio shield alone would let through.
    """
    return await wait_to_the_end(asyncio.get_running_loop().run_in_executor(pool, call))


async def wait_to_the_end(future: asyncio.Future[T]) -> T:
    """The result of ``future``, awaited to its end even when the caller is cancelled
    (see run_in_pool); the cancellation is raised after it."""
    cancelled = await wait_out(future)
    if cancelled is not None:
        raise cancelled
    return future.result()


async def wait_out(future: asyncio.Future[Any]) -> asyncio.CancelledError | None:
    """Wait until ``future`` is done, whatever cancellation arrives meanwhile; that
    cancellation is returned, not raised, for a caller that must act on the outcome first
    (a run created on disk must still be queued) and raise it after."""
    cancelled: asyncio.CancelledError | None = None
    with anyio.CancelScope(shield=True):
        while not future.done():
            try:
                # wait(), unlike awaiting the future, never cancels the future itself.
                await asyncio.wait([future])
            except asyncio.CancelledError as exc:
                cancelled = exc
    return cancelled
