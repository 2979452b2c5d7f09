"""Fixtures for the smoke script's tests: the API tests' real uvicorn, and a broken server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from tests.api.conftest import (  # the `uvicorn` fixture, re-exported for tests/scripts
    REPO,
    Server,
    _free_port,
    _stop,
    _wait_until_healthy,
    uvicorn,  # noqa: F401
)


@pytest.fixture
def broken_server(tmp_path: Path) -> Iterator[Callable[[str], AbstractContextManager[Server]]]:
    """``with broken_server("extra_field") as server``: tests/scripts/broken_app.py in uvicorn."""
    started: list[subprocess.Popen[bytes]] = []

    @contextmanager
    def run(mode: str) -> Iterator[Server]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "OPENAI_"))}
        env["BROKEN_MODE"] = mode
        port = _free_port()
        log_path = tmp_path / f"broken-{port}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "tests.scripts.broken_app:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        server = Server(process, f"http://127.0.0.1:{port}", log_path)
        try:
            _wait_until_healthy(server, timeout=20)
            yield server
        finally:
            _stop(process)

    yield run
    for process in started:
        _stop(process)
