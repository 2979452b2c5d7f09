"""Typed getters for what the lifespan built; routes use the Annotated aliases.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its thread
pool, and that hop cost the status endpoint more than half its throughput.
"""

from __future__ import annotations

import hmac
from typing import Annotated

import anyio
from fastapi import Depends, HTTPException, Query, Request, status

from app.api.services.metrics import Metrics
from app.api.services.run_executor import Executor
from app.api.services.run_store import Store
from app.api.services.run_stream import Stream
from app.config import AppConfig


async def get_settings(request: Request) -> AppConfig:
    settings: AppConfig = request.state.settings
    return settings


async def get_run_store(request: Request) -> Store:
    store: Store = request.state.store
    return store


async def get_run_executor(request: Request) -> Executor:
    executor: Executor = request.state.executor
    return executor


async def get_run_stream(request: Request) -> Stream:
    stream: Stream = request.state.stream
    return stream


async def get_shutdown(request: Request) -> anyio.Event:
    """Set when the server stops: open event streams end promptly."""
    event: anyio.Event = request.state.shutdown
    return event


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.state.metrics
    return metrics


SettingsDep = Annotated[AppConfig, Depends(get_settings)]
RunStoreDep = Annotated[Store, Depends(get_run_store)]
RunExecutorDep = Annotated[Executor, Depends(get_run_executor)]
RunStreamDep = Annotated[Stream, Depends(get_run_stream)]
ShutdownDep = Annotated[anyio.Event, Depends(get_shutdown)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


# --------------------------------------------------------------------------- API keys


def _key_accepted(candidate: str, keys: list[str]) -> bool:
    # compare_digest against every key, without stopping at a match: the time taken does
    # not tell which key, or how much of one, was right.
    given = candidate.encode()
    accepted = False
    for key in keys:
        accepted |= hmac.compare_digest(given, key.encode())
    return accepted


def _bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750, section 2.1)."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _check(settings: AppConfig, token: str | None) -> None:
    if not settings.api_keys:
        return  # APP_API_KEYS empty: the API is open
    if token is None or not _key_accepted(token, settings.api_keys):
        # Never echo the key; WWW-Authenticate is required with a 401 (RFC 9110, 11.6.1).
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid API key is required: send it as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def require_api_key(request: Request, settings: SettingsDep) -> None:
    """Router dependency: with APP_API_KEYS set, a request needs a Bearer key."""
    _check(settings, _bearer(request.headers.get("authorization")))


async def require_api_key_or_token(
    request: Request,
    settings: SettingsDep,
    access_token: Annotated[
        str | None,
        Query(description="The API key, for clients that cannot set headers (EventSource)."),
    ] = None,
) -> None:
    """Like require_api_key; also accepts ``?access_token=`` (EventSource sets no headers)."""
    token = _bearer(request.headers.get("authorization"))
    _check(settings, token if token is not None else access_token)
