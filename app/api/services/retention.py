"""APP_RETENTION_DAYS: remove finished runs older than that, at start-up and then periodically."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from functools import partial

import anyio
import anyio.to_thread

from app.api.services.run_store import Store

log = logging.getLogger(__name__)


async def run_retention(store: Store, *, days: float, interval_s: float, stop: anyio.Event) -> None:
    """Delete expired terminal runs now and every ``interval_s`` until ``stop`` is set."""
    while not stop.is_set():
        cutoff = datetime.now(UTC) - timedelta(days=days)
        try:
            await anyio.to_thread.run_sync(partial(store.remove_expired, older_than=cutoff))
        except Exception:  # a failed pass must not take the server down; the next one retries
            log.exception("retention: the pass failed")
        with anyio.move_on_after(interval_s):
            await stop.wait()
