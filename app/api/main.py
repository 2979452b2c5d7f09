"""create_app(): the FastAPI application; ``app`` is the instance uvicorn serves.

The lifespan builds the settings, the run store (which reconciles runs left by a dead
process) and the executor, and closes them in reverse order: on a clean shutdown running
runs are asked to stop and recorded as stopped, never left "running" on disk.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TypedDict

import anyio
import anyio.abc
import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from app import __version__
from app.api import access_log, logging_setup
from app.api.body_limit import BodySizeLimit
from app.api.deps import require_api_key, require_api_key_or_token
from app.api.errors import add_exception_handlers
from app.api.request_metrics import RequestMetrics
from app.api.routes import documents, events, health, metrics, runs
from app.api.services.backends.files.event_bus import EventBus
from app.api.services.backends.files.event_log import EventLog
from app.api.services.backends.files.executor import ThreadExecutor
from app.api.services.backends.files.store import FileRunStore
from app.api.services.backends.files.stream import FileRunStream
from app.api.services.backends.files.watcher import OutputWatcher
from app.api.services.metrics import Metrics
from app.api.services.retention import run_retention
from app.api.services.run_executor import Executor, load_pipeline
from app.api.services.run_store import Store
from app.api.services.run_stream import Stream
from app.config import AppConfig

log = logging.getLogger(__name__)

# The bundled static page (web-demo/ at the repository root, beside app/), served at /demo/.
DEMO_DIR = Path(__file__).resolve().parents[2] / "web-demo"


# What a backend builds: the store, the executor and the event streams.
Backend = tuple[Store, Executor, Stream]


class State(TypedDict):
    settings: AppConfig
    store: Store
    executor: Executor
    stream: Stream
    shutdown: anyio.Event
    metrics: Metrics


def create_app(settings: AppConfig | None = None, *, demo_dir: Path | None = DEMO_DIR) -> FastAPI:
    """A new application; nothing is created until its lifespan starts.

    ``demo_dir`` is the static demo page mounted at ``/demo/``; when it is None or missing
    (an install without the repository's web-demo/), nothing is mounted.
    """
    config = settings or AppConfig()
    logging_setup.configure(json_lines=config.log_json)
    access_log.install()  # keys given as ?access_token= never reach the access log
    app_metrics = Metrics()  # created here: the middleware needs it before the lifespan runs

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        backend = _redis_backend if config.backend == "redis" else _files_backend
        shutdown = anyio.Event()
        async with backend(config, app_metrics, shutdown) as (store, executor, stream):
            yield State(
                settings=config,
                store=store,
                executor=executor,
                stream=stream,
                shutdown=shutdown,
                metrics=app_metrics,
            )

    # FastAPIOffline: FastAPI whose /docs and /redoc load their scripts from the package
    # (at /static-offline-docs/), so the API docs work with no network.
    app = FastAPIOffline(
        title="Answer service",
        version=__version__,
        summary="Cited answers about a folder of documents, as long-running runs.",
        lifespan=lifespan,
    )
    add_exception_handlers(app)
    # The key check is attached only when keys are configured: an open server pays nothing
    # for it on every poll.
    keyed = bool(config.api_keys)
    app.include_router(runs.router, dependencies=[Depends(require_api_key)] if keyed else [])
    app.include_router(documents.router, dependencies=[Depends(require_api_key)] if keyed else [])
    app.include_router(
        events.router, dependencies=[Depends(require_api_key_or_token)] if keyed else []
    )
    app.include_router(health.router)
    app.include_router(metrics.router)
    # The last one added is the outermost: timing sees every response (413s included), and
    # CORS answers preflights before anything else (they carry no API key).
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=app_metrics)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,  # exact origins; never "*"
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "Idempotency-Key"],
            expose_headers=["Location", "Retry-After"],
        )
    _mount_demo(app, demo_dir)
    return app


@asynccontextmanager
async def _files_backend(
    config: AppConfig, app_metrics: Metrics, shutdown: anyio.Event
) -> AsyncIterator[Backend]:
    """One machine: state files under output/, a thread pool, the in-process bus."""
    pipeline = load_pipeline(config.pipeline)  # fail at start-up, not on the first run
    bus = EventBus()
    bus.bind(asyncio.get_running_loop())
    store = FileRunStore(config)
    events = EventLog(store.root, bus)
    store.add_listener(events.listener)  # before open(): reconciled runs get their event
    store.add_listener(app_metrics.run_listener)
    await anyio.to_thread.run_sync(store.open)
    _freeze_start_up_objects()
    executor = ThreadExecutor(store, config, pipeline)
    stream = FileRunStream(store, events, bus)
    app_metrics.bind(store=store, executor=executor, stream=stream)
    watcher = OutputWatcher(store, events, bus, force_polling=config.watch_force_polling)
    # A deleted run: numbering and offsets start over, its open streams end.
    for forget in (events.forget, watcher.forget, app_metrics.forget, bus.end):
        store.add_removal_listener(forget)
    log.info("answer service ready: %s runs known", store.count())
    log.info("%s", await anyio.to_thread.run_sync(startup_summary, config))
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watcher.run, shutdown)
        tasks.start_soon(_end_streams_on, shutdown, bus.close)
        _start_retention(tasks, config, store, shutdown)
        try:
            yield store, executor, stream
        finally:
            # Under uvicorn the streams have ended already (_end_streams_on); without a
            # signal (tests, an embedding app) end them here, then stop the runs.
            shutdown.set()
            bus.close()
            await anyio.to_thread.run_sync(executor.shutdown)
            await anyio.to_thread.run_sync(store.close)


@asynccontextmanager
async def _redis_backend(
    config: AppConfig, app_metrics: Metrics, shutdown: anyio.Event
) -> AsyncIterator[Backend]:
    """Beyond one machine: run state and events in Redis, runs on Celery workers."""
    # Imported here: the default backend needs neither redis nor celery at start-up.
    from app.api.services.backends.redis.executor import CeleryExecutor, sweep_lost_runs  # noqa: PLC0415
    from app.api.services.backends.redis.store import RedisRunStore  # noqa: PLC0415
    from app.api.services.backends.redis.stream import RedisRunStream  # noqa: PLC0415

    store = RedisRunStore(config)
    await anyio.to_thread.run_sync(store.open)
    _freeze_start_up_objects()
    executor = CeleryExecutor(store, config)
    stream = RedisRunStream(store)
    # Run durations are observed where runs execute (the workers), not here.
    app_metrics.bind(store=store, executor=executor, stream=stream)
    log.info("answer service ready (redis at %s): %s runs known", config.redis_url, store.count())
    log.info("%s", await anyio.to_thread.run_sync(startup_summary, config))
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_end_streams_on, shutdown, stream.close)
        tasks.start_soon(
            partial(sweep_lost_runs, store, interval_s=config.heartbeat_s, stop=shutdown)
        )
        _start_retention(tasks, config, store, shutdown)
        try:
            yield store, executor, stream
        finally:
            shutdown.set()
            stream.close()
            executor.shutdown()
            store.close()
            await store.aclose()


def startup_summary(config: AppConfig) -> str:
    """One line for the start-up log: what a run reads, what it writes with, where runs live."""
    from app.api.services.documents import describe_documents  # noqa: PLC0415
    from app.modules.llm.openai_provider import redact_url  # noqa: PLC0415

    listing = describe_documents(config)
    parts = []
    for root in listing["roots"]:
        index = root["index"]
        indexed = (
            "not indexed yet"
            if index["indexed_files"] is None
            else f"{index['indexed_files']} indexed, {index['updated_at']}"
        )
        state = f"{root['files']} markdown files, {indexed}" if root["exists"] else "MISSING"
        parts.append(f"'{root['name']}' ({state})")
    provider = config.effective_provider()
    writer = (
        f"openai-compatible model {config.llm_model} at "
        f"{redact_url(config.llm_base_url) or 'api.openai.com'}"
        if provider == "openai"
        else "offline extractive (no model)"
    )
    if config.pipeline:
        writer = f"custom pipeline {config.pipeline}"
    return (
        f"documents: {', '.join(parts)}; default folder '{listing['default']}' · "
        f"writer: {writer} · backend: {config.backend}+{config.executor}, "
        f"output: {config.relative(config.output_root) or config.output_root.name}"
    )


def _freeze_start_up_objects() -> None:
    # Everything loaded so far (modules, thousands of run records) lives as long as the
    # process: keep it out of the collector's full passes, which otherwise stall every
    # request for milliseconds as output/ grows.
    gc.collect()
    gc.freeze()


def _start_retention(
    tasks: anyio.abc.TaskGroup, config: AppConfig, store: Store, shutdown: anyio.Event
) -> None:
    if config.retention_days is not None:
        tasks.start_soon(
            partial(
                run_retention,
                store,
                days=config.retention_days,
                interval_s=config.retention_interval_s,
                stop=shutdown,
            )
        )


def _mount_demo(app: FastAPI, demo_dir: Path | None) -> None:
    """Serve web-demo/ at /demo/ (index.html for the folder); /demo and / redirect there
    (/ to the API docs when there is no demo)."""
    if demo_dir is None or not (demo_dir / "index.html").is_file():
        log.info("no demo page at %s: /demo is not served", demo_dir)

        @app.get("/", include_in_schema=False)
        async def root_to_docs() -> RedirectResponse:
            return RedirectResponse("/docs", status_code=307)

        return

    @app.get("/", include_in_schema=False)
    async def root_redirect() -> RedirectResponse:
        return RedirectResponse("/demo/", status_code=307)

    @app.get("/demo", include_in_schema=False)
    async def demo_redirect() -> RedirectResponse:
        return RedirectResponse("/demo/", status_code=307)

    app.mount("/demo", StaticFiles(directory=demo_dir, html=True), name="demo")


async def _end_streams_on(shutdown: anyio.Event, end_streams: Callable[[], None]) -> None:
    """End every event stream as soon as the server starts to stop.

    uvicorn waits for open connections to close *before* it runs the lifespan's shutdown,
    so closing the bus there would come too late. sse-starlette sets ``shutdown`` when it
    sees the exit signal; a closed subscription ends its stream with a proper last chunk.
    """
    await shutdown.wait()
    end_streams()


app = create_app()
