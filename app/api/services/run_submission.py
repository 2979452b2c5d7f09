"""Starting a run from a request: a generated id when none is given, once per idempotency key."""

from __future__ import annotations

from dataclasses import replace

from app.api.services.backends import Executor, Store
from app.api.services.errors import RunAlreadyExists
from app.api.services.idempotency import request_hash, submit_once
from app.api.services.run_store import RunOptions, RunState
from app.modules.run_ids import build_run_id

GENERATED_ID_ATTEMPTS = 5  # a generated id clashes only by a one-in-16M chance


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
