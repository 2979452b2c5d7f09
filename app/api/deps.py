"""Typed getters for what the lifespan built; routes use the Annotated aliases.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its thread
pool, and that hop cost the status endpoint more than half its throughput.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import Depends, Request

from app.api.services.run_executor import RunExecutor
from app.api.services.run_store import RunStore
from app.api.services.run_stream import RunStream
from app.config import AppConfig


async def get_settings(request: Request) -> AppConfig:
    settings: AppConfig = request.state.settings
    return settings


async def get_run_store(request: Request) -> RunStore:
    store: RunStore = request.state.store
    return store


async def get_run_executor(request: Request) -> RunExecutor:
    executor: RunExecutor = request.state.executor
    return executor


async def get_run_stream(request: Request) -> RunStream:
    stream: RunStream = request.state.stream
    return stream


async def get_shutdown(request: Request) -> anyio.Event:
    """Set when the server stops: open event streams end promptly."""
    event: anyio.Event = request.state.shutdown
    return event


SettingsDep = Annotated[AppConfig, Depends(get_settings)]
RunStoreDep = Annotated[RunStore, Depends(get_run_store)]
RunExecutorDep = Annotated[RunExecutor, Depends(get_run_executor)]
RunStreamDep = Annotated[RunStream, Depends(get_run_stream)]
ShutdownDep = Annotated[anyio.Event, Depends(get_shutdown)]
