"""The files backend assembled for the app's lifespan: store, executor, streams, watcher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread

from app.api.services.backends.files.event_bus import EventBus
from app.api.services.backends.files.event_log import EventLog
from app.api.services.backends.files.executor import ThreadExecutor
from app.api.services.backends.files.store import FileRunStore
from app.api.services.backends.files.stream import FileRunStream
from app.api.services.backends.files.watcher import OutputWatcher
from app.api.services.lifecycle import (
    Backend,
    end_streams_on,
    freeze_start_up_objects,
    start_retention,
    startup_summary,
)
from app.api.services.metrics import Metrics
from app.api.services.run_executor import load_pipeline, warm_up_engine
from app.config import AppConfig

log = logging.getLogger(__name__)


@asynccontextmanager
async def files_backend(
    config: AppConfig, app_metrics: Metrics, shutdown: anyio.Event
) -> AsyncIterator[Backend]:
    """One machine: state files under output/, a thread pool, the in-process bus."""
    # An APP_PIPELINE that cannot be loaded fails the start-up, not the first run; the
    # built-in engine is imported after readiness (warm_up_engine logs a failure).
    pipeline = load_pipeline(config.pipeline)
    bus = EventBus()
    bus.bind(asyncio.get_running_loop())
    store = FileRunStore(config)
    events = EventLog(store.root, bus)
    store.add_listener(events.listener)  # before open(): reconciled runs get their event
    store.add_listener(app_metrics.run_listener)
    await anyio.to_thread.run_sync(store.open)
    freeze_start_up_objects()
    executor = ThreadExecutor(store, config, pipeline)
    stream = FileRunStream(store, events, bus)
    app_metrics.bind(store=store, executor=executor, stream=stream)
    watcher = OutputWatcher(store, events, bus, force_polling=config.watch_force_polling)
    # A deleted run: numbering and offsets start over, its open streams end.
    for forget in (events.forget, watcher.forget, app_metrics.forget, bus.end):
        store.add_removal_listener(forget)
    log.info("answer service ready: %s runs known", store.count())
    if not config.pipeline:
        warm_up_engine()
    async with anyio.create_task_group() as tasks:
        # Logged when it is known: reading the documents roots does not hold up readiness.
        tasks.start_soon(_log_summary, config)
        tasks.start_soon(watcher.run, shutdown)
        tasks.start_soon(end_streams_on, shutdown, bus.close)
        start_retention(tasks, config, store, shutdown)
        try:
            yield store, executor, stream
        finally:
            # Under uvicorn the streams have ended already (end_streams_on); without a
            # signal (tests, an embedding app) end them here, then stop the runs.
            shutdown.set()
            bus.close()
            await anyio.to_thread.run_sync(executor.shutdown)
            await anyio.to_thread.run_sync(store.close)


async def _log_summary(config: AppConfig) -> None:
    log.info("%s", await anyio.to_thread.run_sync(startup_summary, config))
