"""Starting a run from a request: a generated id when none is given, once per idempotency key."""

from __future__ import annotations

from dataclasses import replace

import anyio.to_thread
from anyio import CapacityLimiter
from anyio.lowlevel import RunVar

from app.api.services.backends import Executor, Store
from app.api.services.document_roots import confine_markdown_path
from app.api.services.errors import RunAlreadyExists
from app.api.services.idempotency import request_hash, submit_once
from app.api.services.run_store import RunOptions, RunState
from app.config import AppConfig
from app.modules.run_ids import build_run_id

GENERATED_ID_ATTEMPTS = 5  # a generated id clashes only by a one-in-16M chance
# The disk part of a POST (mkdir, state file with its fsyncs, first event) runs on a few
# threads of its own rather than anyio's 40: every thread contends for the GIL with the event
# loop, and 32 clients put 32 threads to work at once in the shared pool. Four keep the fsync
# waits overlapped (measured: 1 thread serialises them; 8 and 40 cost more CPU per POST).
SUBMISSION_THREADS = 4

_limiter: RunVar[CapacityLimiter] = RunVar("run_submission_limiter")


def _submission_limiter() -> CapacityLimiter:
    try:
        return _limiter.get()
    except LookupError:
        limiter = CapacityLimiter(SUBMISSION_THREADS)
        _limiter.set(limiter)
        return limiter


async def submit_run(
    settings: AppConfig,
    executor: Executor,
    store: Store,
    options: RunOptions,
    *,
    run_id: str | None,
    idempotency_key: str | None,
) -> RunState:
    """Confine ``options.markdown_path``, then :func:`start_run`, in one trip to a thread."""

    def confined_start() -> RunState:
        confined = replace(
            options, markdown_path=confine_markdown_path(settings, options.markdown_path)
        )
        return start_run(executor, store, confined, run_id=run_id, idempotency_key=idempotency_key)

    # A keyed request may wait (bounded, idempotency.WAIT_S) for another holder of its key:
    # it goes to anyio's shared pool, so that a few such waits never hold up every POST.
    limiter = _submission_limiter() if idempotency_key is None else None
    return await anyio.to_thread.run_sync(confined_start, limiter=limiter)


def start_run(
    executor: Executor,
    store: Store,
    options: RunOptions,
    *,
    run_id: str | None,
    idempotency_key: str | None,
) -> RunState:
    """Queue the run (QueueFull, RunAlreadyExists and idempotency errors propagate)."""
    if idempotency_key is None:
        return _submit(executor, run_id, options)
    digest = request_hash(options, run_id)
    keyed = replace(options, idempotency_key=idempotency_key, request_hash=digest)
    return submit_once(
        store,
        key=idempotency_key,
        request_digest=digest,
        submit=lambda: _submit(executor, run_id, keyed),
    )


def _submit(executor: Executor, run_id: str | None, options: RunOptions) -> RunState:
    if run_id is not None:
        return executor.submit(run_id, options)
    for attempt in range(GENERATED_ID_ATTEMPTS):
        try:
            return executor.submit(build_run_id(), options)
        except RunAlreadyExists:
            if attempt == GENERATED_ID_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")
