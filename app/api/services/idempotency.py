"""Idempotency-Key on POST /api/v1/runs: one key, one run, across retries, restarts, processes.

A key is kept with its run (``idempotency_key`` and ``request_hash`` in its state). Across
processes a key is claimed exclusively through the store's ``claims`` (a file created with
O_EXCL under ``output/.idempotency/``, or a Redis key set with NX); the winner creates the
run, then records its id in the claim. A request that finds the claim waits (bounded) for
that id, then replays the run, or answers 422 when the key came with a different request.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable

from app.api.services.errors import IdempotencyKeyPending, IdempotencyKeyReused, RunNotFound
from app.api.services.run_store import Claim, RunOptions, RunState, Store

# 1..255 printable ASCII characters (a header value; anything else is a 422).
KEY_PATTERN = r"^[\x20-\x7e]{1,255}$"
# How long a request waits for the holder of a claim to record its run id.
WAIT_S = 5.0
POLL_S = 0.01
# A claim still without a run id after this long was left by a process that died.
STALE_S = 30.0


def request_hash(options: RunOptions, run_id: str | None) -> str:
    """A hash of the normalised request: the same request gives the same hash."""
    normalised = {
        "question": options.question,
        "run_id": run_id,
        "enable_sql": options.enable_sql,
        "markdown_path": options.markdown_path,
        "log_llm_payload": options.log_llm_payload,
    }
    encoded = json.dumps(normalised, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


def submit_once(
    store: Store,
    *,
    key: str,
    request_digest: str,
    submit: Callable[[], RunState],
    wait_s: float = WAIT_S,
) -> RunState:
    """The run of ``key``: the one already recorded with it, or a new one from ``submit``.

    ``submit`` must record ``key`` and ``request_digest`` with the run. IdempotencyKeyReused
    when the key's run was asked with another request; IdempotencyKeyPending when the
    holder of the claim has not recorded its run within ``wait_s``.
    """
    deadline = time.monotonic() + wait_s
    claims = store.claims
    while True:
        known = store.run_for_key(key)
        if known is not None and (state := _existing(store, known)) is not None:
            return _replay(state, request_digest)
        if (claim := claims.try_claim(key)) is not None:
            return _create(claim, submit)
        claimed = claims.claimed_run(key)
        if claimed is not None:
            if (state := _existing(store, claimed)) is not None:
                return _replay(state, request_digest)
            claims.release_if(key, claimed)  # its run is gone: the key is free again
            continue
        if claims.age_s(key) > STALE_S:
            claims.release_if(key, None)
            continue
        if time.monotonic() >= deadline:
            raise IdempotencyKeyPending(retry_after_s=1) from None
        time.sleep(POLL_S)  # the holder is creating its run: a bounded poll


def _create(claim: Claim, submit: Callable[[], RunState]) -> RunState:
    try:
        state = submit()
    except BaseException:
        # Nothing was started under the key (queue full, id taken, ...): free it for a retry.
        claim.abandon()
        raise
    claim.record(state.run_id)
    return state


def _replay(state: RunState, request_digest: str) -> RunState:
    if state.request_hash != request_digest:
        raise IdempotencyKeyReused()
    return state


def _existing(store: Store, run_id: str) -> RunState | None:
    try:
        return store.get(run_id)
    except RunNotFound:
        return None
