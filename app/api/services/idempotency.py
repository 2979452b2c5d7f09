"""Idempotency-Key on POST /api/v1/runs: one key, one run, across retries, restarts, processes.

A key is kept with its run (``idempotency_key`` and ``request_hash`` in api_state.json; the
store indexes them on start-up). Across processes sharing ``output/`` a key is claimed with
an exclusive create of ``output/.idempotency/<sha256(key)>``; the winner creates the run,
then writes its id into the claim. A request that finds the claim waits (bounded) for that
id, then replays the run, or answers 422 when the key came with a different request.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from app.api.services.errors import IdempotencyKeyPending, IdempotencyKeyReused, RunNotFound
from app.api.services.run_store import RunOptions, RunState, RunStore, idempotency_claim_path

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
    store: RunStore,
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
    claim = idempotency_claim_path(store.root, key)
    while True:
        known = store.run_for_key(key)
        if known is not None and (state := _existing(store, known)) is not None:
            return _replay(state, request_digest)
        claim.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            claimed = _claimed_run(claim)
            if claimed is not None:
                if (state := _existing(store, claimed)) is not None:
                    return _replay(state, request_digest)
                _release_if(claim, claimed)  # its run is gone: the key is free again
                continue
            if _age_s(claim) > STALE_S:
                _release_if(claim, None)
                continue
            if time.monotonic() >= deadline:
                raise IdempotencyKeyPending(retry_after_s=1) from None
            time.sleep(POLL_S)  # the holder is creating its run: a bounded poll
            continue
        return _create(claim, fd, submit)


def _create(claim: Path, fd: int, submit: Callable[[], RunState]) -> RunState:
    try:
        state = submit()
    except BaseException:
        # Nothing was started under the key (queue full, id taken, ...): free it for a retry.
        os.close(fd)
        claim.unlink(missing_ok=True)
        raise
    try:
        # One short write, newline-terminated: a reader takes the id only once it is whole.
        os.write(fd, f"{state.run_id}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return state


def _replay(state: RunState, request_digest: str) -> RunState:
    if state.request_hash != request_digest:
        raise IdempotencyKeyReused()
    return state


def _existing(store: RunStore, run_id: str) -> RunState | None:
    try:
        return store.get(run_id)
    except RunNotFound:
        return None


def _claimed_run(claim: Path) -> str | None:
    try:
        text = claim.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None
    return text[:-1] if text.endswith("\n") and len(text) > 1 else None


def _age_s(claim: Path) -> float:
    try:
        return time.time() - claim.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _release_if(claim: Path, run_id: str | None) -> None:
    """Remove a stale claim, unless it has changed hands meanwhile."""
    if _claimed_run(claim) == run_id:
        claim.unlink(missing_ok=True)
