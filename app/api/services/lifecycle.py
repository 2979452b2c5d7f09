"""What both backends' start-up and shutdown share: the start-up log line, the garbage
collector's freeze, the retention task, and ending every event stream when the server
stops. Each backend's assembly (backends/<name>/assembly.py) uses these."""

from __future__ import annotations

import gc
from collections.abc import Callable
from functools import partial

import anyio
import anyio.abc

from app.api.services.retention import run_retention
from app.api.services.run_executor import Executor
from app.api.services.run_store import Store
from app.api.services.run_stream import Stream
from app.config import AppConfig

# What a backend's assembly yields: the store, the executor and the event streams.
Backend = tuple[Store, Executor, Stream]


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


def freeze_start_up_objects() -> None:
    # Everything loaded so far (modules, thousands of run records) lives as long as the
    # process: keep it out of the collector's full passes, which otherwise stall every
    # request for milliseconds as output/ grows. No collection first: measured, it finds
    # nothing to free at this point (imports and run records leave no cycles behind) and
    # was a full pass over all of it, 45-65 ms of every start.
    gc.freeze()


def start_retention(
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


async def end_streams_on(shutdown: anyio.Event, end_streams: Callable[[], None]) -> None:
    """End every event stream as soon as the server starts to stop.

    uvicorn waits for open connections to close *before* it runs the lifespan's shutdown,
    so closing the bus there would come too late. sse-starlette sets ``shutdown`` when it
    sees the exit signal; a closed subscription ends its stream with a proper last chunk.
    """
    await shutdown.wait()
    end_streams()
