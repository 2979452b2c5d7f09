"""Typed getters for what the lifespan built; routes use the Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.api.services.run_executor import RunExecutor
from app.api.services.run_store import RunStore
from app.config import AppConfig


def get_settings(request: Request) -> AppConfig:
    settings: AppConfig = request.state.settings
    return settings


def get_run_store(request: Request) -> RunStore:
    store: RunStore = request.state.store
    return store


def get_run_executor(request: Request) -> RunExecutor:
    executor: RunExecutor = request.state.executor
    return executor


SettingsDep = Annotated[AppConfig, Depends(get_settings)]
RunStoreDep = Annotated[RunStore, Depends(get_run_store)]
RunExecutorDep = Annotated[RunExecutor, Depends(get_run_executor)]
