"""create_app(): the FastAPI application; ``app`` is the instance uvicorn serves.

The lifespan builds the settings, the run store (which reconciles runs left by a dead
process) and the executor, and closes them in reverse order: on a clean shutdown running
runs are asked to stop and recorded as stopped, never left "running" on disk.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
from app.api.create_fast_path import CreateFastPath
from app.api.deps import require_api_key, require_api_key_or_token
from app.api.errors import add_exception_handlers
from app.api.events_fast_path import EventsFastPath
from app.api.request_metrics import RequestMetrics
from app.api.routes import documents, events, health, metrics, runs
from app.api.services.backends.files.assembly import files_backend
from app.api.services.backends.redis.assembly import redis_backend
from app.api.services.metrics import Metrics
from app.api.services.run_executor import Executor
from app.api.services.run_store import Store
from app.api.services.run_stream import Stream
from app.api.status_fast_path import StatusFastPath
from app.config import AppConfig

log = logging.getLogger(__name__)

# The bundled static page (web-demo/ at the repository root, beside app/), served at /demo/.
DEMO_DIR = Path(__file__).resolve().parents[2] / "web-demo"
STATUS_ROUTE = "/api/v1/runs/{run_id}/status"
CREATE_ROUTE = "/api/v1/runs"
EVENTS_ROUTE = "/api/v1/runs/{run_id}/events"


class State(TypedDict):
    settings: AppConfig
    store: Store
    executor: Executor
    stream: Stream
    stream_slots: events.StreamSlots
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
        backend = redis_backend if config.backend == "redis" else files_backend
        shutdown = anyio.Event()
        async with backend(config, app_metrics, shutdown) as (store, executor, stream):
            yield State(
                settings=config,
                store=store,
                executor=executor,
                stream=stream,
                stream_slots=events.StreamSlots(config.max_sse_streams),
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
    if not keyed:
        status_route = next(r for r in runs.router.routes if getattr(r, "path", "") == STATUS_ROUTE)
        app.add_middleware(StatusFastPath, route=status_route)
        create_route = next(
            r
            for r in runs.router.routes
            if getattr(r, "path", "") == CREATE_ROUTE and "POST" in getattr(r, "methods", ())
        )
        app.add_middleware(CreateFastPath, route=create_route)
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    if not keyed:
        # Directly inside the timing: an open stream keeps no other middleware's frame.
        events_route = next(
            r for r in events.router.routes if getattr(r, "path", "") == EVENTS_ROUTE
        )
        app.add_middleware(EventsFastPath, route=events_route)
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


app = create_app()
