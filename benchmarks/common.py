"""What the API benchmarks share: servers started the way the tests start them
(``tests.support.processes``), and the percentile every figure is reported with.

Run the benchmarks from the repository root as modules (``python -m benchmarks.bench_api``),
so that ``benchmarks`` and ``tests`` import as packages.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.support.processes import (
    REPO,
    Service,
    clean_env,
    start_uvicorn,
    wait_http,
)

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0

Server = Service


def server_env(output_dir: Path, **extra: str) -> dict[str, str]:
    """No APP_* or OPENAI_* of the caller; the bundled documents; runs under ``output_dir``."""
    return clean_env(APP_BASE_DIR=str(REPO), APP_OUTPUT_DIR=str(output_dir), **extra)


def start_server(
    app: str,
    env: dict[str, str],
    log_path: Path,
    *,
    workers: int = 1,
    preexec_fn: Callable[[], object] | None = None,
) -> Server:
    return start_uvicorn(
        app, env, log_path, workers=workers, log_level="warning", preexec_fn=preexec_fn
    )


def wait_ready(server: Server, path: str, *, timeout_s: float = READY_TIMEOUT_S) -> float:
    """Seconds from process start to the first 200 from ``path`` (polled every 10 ms)."""
    return wait_http(server, path, timeout=timeout_s, interval=0.01)


def stop_server(server: Server, *, timeout_s: float = STOP_TIMEOUT_S) -> float:
    """SIGTERM (uvicorn's graceful shutdown), SIGKILL after ``timeout_s``; seconds taken."""
    return server.stop(timeout=timeout_s)


@contextlib.contextmanager
def running(
    app: str, env: dict[str, str], log_path: Path, ready_path: str, *, workers: int = 1
) -> Iterator[Server]:
    server = start_server(app, env, log_path, workers=workers)
    try:
        wait_ready(server, ready_path)
        yield server
    finally:
        stop_server(server)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
