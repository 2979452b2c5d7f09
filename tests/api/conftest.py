"""Fixtures for the API tests: a small base directory, the app in process, uvicorn in a subprocess.

Helpers that tests call (``wait_for_status``, ``serve``, ``uvicorn``, ``error``) are handed
out by fixtures; test modules import only the constants below (payload key sets, patterns).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.api.main import create_app
from app.config import AppConfig
from tests.api import gated_pipeline
from tests.support.processes import (
    ProcessFailed,
    Service,
    clean_env,
    free_port,
    start_uvicorn,
    wait_http,
)

REPO = Path(__file__).resolve().parents[2]
GATED = "tests.api.gated_pipeline:gated_pipeline"
BLOCKING = "tests.api.gated_pipeline:blocking_pipeline"
FILE_GATED = "tests.api.gated_pipeline:file_gated_pipeline"
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
TERMINAL = frozenset({"completed", "completed_with_gaps", "failed", "stopped"})

# The four v1 payloads (docs/api.md): exactly these keys, no more.
ACCEPTED_KEYS = {"run_id", "status", "status_url", "output_url", "context_url"}
STATUS_KEYS = {"run_id", "status", "started_at", "completed_at", "finish_reason", "error"}
OUTPUT_KEYS = {"run_id", "status", "content", "final_output_path"}
CONTEXT_KEYS = {"run_id", "status", "context_bundle", "context_bundle_path"}

Settings = Callable[..., AppConfig]
Serve = Callable[[AppConfig], AbstractAsyncContextManager[httpx.AsyncClient]]
WaitForStatus = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # AppConfig reads APP_* (and OPENAI_API_KEY): the caller's shell must not change a test.
    for name in list(os.environ):
        if name.startswith(("APP_", "OPENAI_")):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _release_gates() -> Iterator[None]:
    yield
    gated_pipeline.reset()


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    """A base directory of its own: documents/reports/fleet.md, output/ created by the app."""
    reports = tmp_path / "documents" / "reports"
    reports.mkdir(parents=True)
    (reports / "fleet.md").write_text("# Fleet\n\nNorthwind ran 186 battery-electric trucks.\n")
    return tmp_path


@pytest.fixture
def settings(base_dir: Path) -> Settings:
    """``settings(**overrides)``: an AppConfig over ``base_dir`` that runs the gated pipeline."""

    def make(**overrides: Any) -> AppConfig:
        values: dict[str, Any] = {
            "base_dir": base_dir,
            "documents_roots": ["documents"],
            "output_dir": base_dir / "output",
            "pipeline": GATED,
            "llm_provider": "extractive",
            "max_workers": 2,
        }
        values.update(overrides)
        return AppConfig(**values)

    return make


@pytest.fixture
def serve() -> Serve:
    """``async with serve(settings) as client``: the app with its lifespan, over ASGI."""

    @asynccontextmanager
    async def run(config: AppConfig) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(config)
        async with (
            LifespanManager(app) as manager,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(manager.app), base_url="http://test"
            ) as client,
        ):
            yield client

    return run


async def _wait_for_status(
    client: httpx.AsyncClient,
    run_id: str,
    statuses: Collection[str],
    *,
    timeout: float = 5.0,
) -> dict[str, Any]:
    last: dict[str, Any] | None = None
    try:
        with anyio.fail_after(timeout):
            while True:
                response = await client.get(f"/api/v1/runs/{run_id}/status")
                assert response.status_code == 200, response.text
                last = response.json()
                if last["status"] in statuses:
                    return last
                await anyio.sleep(0.01)  # poll interval, not synchronisation
    except TimeoutError:
        pytest.fail(f"run {run_id} did not reach {sorted(statuses)} in {timeout} s: {last}")


def poll_status(
    client: httpx.Client, run_id: str, statuses: set[str] | frozenset[str], timeout: float
) -> dict[str, Any]:
    """Poll /status until the run reaches one of ``statuses`` (bounded), for sync clients."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/api/v1/runs/{run_id}/status")
        assert response.status_code == 200, response.text
        last = response.json()
        if last["status"] in statuses:
            return last
        time.sleep(0.02)  # poll interval of a bounded loop, not synchronisation
    pytest.fail(f"run {run_id} did not reach {sorted(statuses)} in {timeout} s: {last}")


def wait_for_state_file(path: Path, status: str, *, timeout: float = 10.0) -> None:
    """Wait until a run's api_state.json says ``status``.

    /status answers from memory; the state file is written a moment later, so a test about
    what a killed process leaves on disk must wait for the file itself.
    """
    deadline = time.monotonic() + timeout
    while json.loads(path.read_text()).get("status") != status:
        assert time.monotonic() < deadline, f"{path} never said {status}"
        time.sleep(0.01)  # poll interval of a bounded wait for the file


@pytest.fixture
def wait_for_status() -> WaitForStatus:
    """``await wait_for_status(client, run_id, {"completed"})``: poll /status, bounded."""
    return _wait_for_status


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The error body of docs/api.md: top-level ``code`` and ``message``; no traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str), body
    assert body["message"], body
    assert "Traceback" not in response.text
    return body


@pytest.fixture
def error() -> Callable[[httpx.Response, int, str], dict[str, Any]]:
    """``error(response, 404, "run_not_found")`` asserts docs/api.md's error body and returns it."""
    return assert_error


# --------------------------------------------------------------------------- real uvicorn


Server = Service  # a uvicorn process, its base URL and its log (tests.support.processes)


@contextmanager
def uvicorn_server(
    log_dir: Path, target: str = "app.api.main:app", **env_overrides: str
) -> Iterator[Server]:
    """Real uvicorn on a free port, serving ``target`` with only the given APP_* settings."""
    with uvicorn_server_at(log_dir, free_port(), target, env_overrides) as server:
        yield server


@contextmanager
def uvicorn_server_at(
    log_dir: Path, port: int, target: str, env_overrides: dict[str, str]
) -> Iterator[Server]:
    """Real uvicorn on ``port``: a server started again where its clients expect it."""
    server = start_uvicorn(
        target, clean_env(**env_overrides), log_dir / f"uvicorn-{port}.log", port=port
    )
    try:
        try:
            wait_http(server, "/healthz", timeout=20)
        except ProcessFailed as exc:
            pytest.fail(str(exc))
        yield server
    finally:
        server.stop()


@pytest.fixture
def uvicorn(tmp_path: Path) -> Iterator[Callable[..., AbstractContextManager[Server]]]:
    """``with uvicorn(APP_BASE_DIR=..., ...) as server``: real uvicorn on a free port.

    ``uvicorn("pkg.module:app", ...)`` serves another ASGI app (a deliberately broken one).

    The environment drops every APP_* and OPENAI_* variable of the test process, so the
    server sees only what the test passes. The process is always terminated (and reaped).
    """
    started: list[Server] = []

    @contextmanager
    def run(target: str = "app.api.main:app", **env_overrides: str) -> Iterator[Server]:
        with uvicorn_server(tmp_path, target, **env_overrides) as server:
            started.append(server)
            yield server

    yield run
    for server in started:  # a test that failed half-way still leaves no process behind
        server.stop()
