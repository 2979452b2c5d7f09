"""The redis backend assembled for the app's lifespan: store, Celery executor, streams,
the sweeper of lost runs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
import anyio.to_thread

from app.api.services.lifecycle import (
    Backend,
    end_streams_on,
    freeze_start_up_objects,
    start_retention,
    startup_summary,
)
from app.api.services.metrics import Metrics
from app.config import AppConfig

log = logging.getLogger(__name__)


@asynccontextmanager
async def redis_backend(
    config: AppConfig, app_metrics: Metrics, shutdown: anyio.Event
) -> AsyncIterator[Backend]:
    """Beyond one machine: run state and events in Redis, runs on Celery workers."""
    # Imported here: the default backend needs neither redis nor celery at start-up.
    from app.api.services.backends.redis.executor import CeleryExecutor, Sweeper, sweep  # noqa: PLC0415
    from app.api.services.backends.redis.store import RedisRunStore  # noqa: PLC0415
    from app.api.services.backends.redis.stream import RedisRunStream  # noqa: PLC0415

    store = RedisRunStore(config)
    await anyio.to_thread.run_sync(store.open)
    freeze_start_up_objects()
    executor = CeleryExecutor(store, config)
    stream = RedisRunStream(store)
    # Runs end on the workers; the sweeper brings their durations to this node's metrics.
    app_metrics.bind(store=store, executor=executor, stream=stream)
    log.info("answer service ready (redis at %s): %s runs known", config.redis_url, store.count())
    log.info("%s", await anyio.to_thread.run_sync(startup_summary, config))
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(end_streams_on, shutdown, stream.close)
        sweeper = Sweeper(store, executor.celery, config, app_metrics.observe_run)
        tasks.start_soon(partial(sweep, sweeper, interval_s=config.heartbeat_s, stop=shutdown))
        start_retention(tasks, config, store, shutdown)
        try:
            yield store, executor, stream
        finally:
            shutdown.set()
            stream.close()
            executor.shutdown()
            store.close()
            await store.aclose()
