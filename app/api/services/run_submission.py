"""Starting a run from a request: a generated id when none is given, once per idempotency key."""

from __future__ import annotations

from dataclasses import replace

import anyio.to_thread

from app.api.services.document_roots import confine_markdown_path
from app.api.services.errors import RunAlreadyExists
from app.api.services.idempotency import request_hash, submit_once
from app.api.services.run_executor import Executor
from app.api.services.run_store import RunOptions, RunState, Store
from app.config import AppConfig
from app.modules.run_ids import build_run_id

GENERATED_ID_ATTEMPTS = 5  # a generated id clashes only by a one-in-16M chance


async def submit_run(
    settings: AppConfig,
    executor: Executor,
    store: Store,
    options: RunOptions,
    *,
    run_id: str | None,
    idempotency_key: str | None,
) -> RunState:
    """Confine ``options.markdown_path``, then start the run (``executor.asubmit``).

    A keyed request may wait (bounded, idempotency.WAIT_S) for another holder of its key:
    all of it goes to anyio's shared pool, so that a few such waits never hold up a POST.
    """
    if idempotency_key is not None:

        def confined_start() -> RunState:
            confined = replace(
                options, markdown_path=confine_markdown_path(settings, options.markdown_path)
            )
            return start_run(
                executor, store, confined, run_id=run_id, idempotency_key=idempotency_key
            )

        return await anyio.to_thread.run_sync(confined_start)
    # A few stats on the documents folder, on the loop like a status read.
    confined = replace(
        options, markdown_path=confine_markdown_path(settings, options.markdown_path)
    )
    if run_id is not None:
        return await executor.asubmit(run_id, confined)
    for attempt in range(GENERATED_ID_ATTEMPTS):
        try:
            return await executor.asubmit(build_run_id(), confined)
        except RunAlreadyExists:
            if attempt == GENERATED_ID_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


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
