"""Start the real thing: uvicorn serving an app, a Celery worker; wait until it answers; stop it.

Shared by the tests (``tests/api/conftest.py``, ``tests/api/redis_support.py``) and the
benchmarks (``python -m benchmarks.bench_api`` ...), so that a server is started, awaited
and stopped the same way everywhere. Failures raise ``ProcessFailed`` with the tail of the
process's log; tests turn it into ``pytest.fail``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
SERVICE_APP = "app.api.main:app"


class ProcessFailed(RuntimeError):
    """A started process exited, or did not become ready in time."""


@dataclass
class Service:
    """A started process, where it listens (if it does) and where it logs."""

    process: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0  # 0: it does not listen (a Celery worker)
    started: float = 0.0  # time.perf_counter() just before the process was started
    log_offset: int = 0  # the log's size before: a log can hold an earlier process's lines

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, *, sig: signal.Signals = signal.SIGTERM, timeout: float = 15.0) -> float:
        """``sig`` (SIGTERM: uvicorn's graceful shutdown; SIGQUIT: Celery's cold one), then
        SIGKILL after ``timeout``; the seconds it took."""
        began = time.perf_counter()
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return time.perf_counter() - began

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def kill_group(self) -> None:
        """SIGKILL the process and every child in its group (uvicorn and its workers), and
        reap it: a crash, not a shutdown. Only for a service started with ``new_session``."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any APP_* or OPENAI_* variable, plus ``settings``:
    a started process sees only the configuration it is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "OPENAI_"))}
    env.update(settings)
    return env


def _spawn(
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    preexec_fn: Callable[[], object] | None = None,
    new_session: bool = False,
    cwd: Path = REPO,  # so that tests.* and benchmarks.* pipelines import in the child
) -> tuple[subprocess.Popen[bytes], float]:
    with log_path.open("ab") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,  # noqa: PLW1509 - only setrlimit, before exec
            start_new_session=new_session,
        )
    return process, started


def start_command(
    command: list[str], env: dict[str, str], log_path: Path, *, port: int, cwd: Path = REPO
) -> Service:
    """Any command that serves HTTP on ``port`` ("python -m app serve --port N", as a person
    types it), started in ``cwd``."""
    offset = log_path.stat().st_size if log_path.exists() else 0
    process, started = _spawn(command, env, log_path, cwd=cwd)
    return Service(process, log_path, port, started, offset)


def start_uvicorn(
    target: str,
    env: dict[str, str],
    log_path: Path,
    *,
    port: int | None = None,
    workers: int | None = None,
    log_level: str | None = None,
    preexec_fn: Callable[[], object] | None = None,
    new_session: bool = False,
) -> Service:
    """``uvicorn target`` on 127.0.0.1 (a free port unless ``port`` is given); with
    ``new_session`` it leads its own process group, which ``kill_group`` ends at once."""
    port = port or free_port()
    command = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port)]
    if workers is not None:
        command += ["--workers", str(workers)]
    if log_level is not None:
        command += ["--log-level", log_level]
    process, started = _spawn(command, env, log_path, preexec_fn, new_session)
    return Service(process, log_path, port, started)


def wait_http(
    service: Service, path: str = "/healthz", *, timeout: float = 20.0, interval: float = 0.05
) -> float:
    """Poll ``path`` until it answers 200; the seconds since the process was started."""
    deadline = time.perf_counter() + timeout
    with httpx.Client(base_url=service.base_url, timeout=2.0) as client:
        while time.perf_counter() < deadline:
            if service.process.poll() is not None:
                raise ProcessFailed(
                    f"{service.log_path.name}: exited with {service.process.returncode}:\n"
                    f"{service.log()}"
                )
            try:
                if client.get(path).status_code == 200:
                    return time.perf_counter() - service.started
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(interval)  # poll interval of a bounded readiness loop
    raise ProcessFailed(f"{service.log_path.name}: not ready after {timeout:g} s:\n{service.log()}")


@contextmanager
def uvicorn(
    target: str,
    env: dict[str, str],
    log_path: Path,
    *,
    ready_path: str = "/healthz",
    timeout: float = 20.0,
    **options: object,
) -> Iterator[Service]:
    """A uvicorn server for the ``with`` block: started, ready on ``ready_path``, stopped."""
    service = start_uvicorn(target, env, log_path, **options)  # type: ignore[arg-type]
    try:
        wait_http(service, ready_path, timeout=timeout)
        yield service
    finally:
        service.stop()


def start_celery(
    env: dict[str, str], log_path: Path, name: str, *, concurrency: int = 2
) -> Service:
    """``celery -A app.worker worker`` with the threads pool, named ``name@host``."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "app.worker",
        "worker",
        "--pool",
        "threads",
        "--concurrency",
        str(concurrency),
        "--hostname",
        f"{name}@%h",
        "--loglevel",
        "INFO",
        # Nothing here needs the cluster-wide chatter; it slows start-up.
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    offset = log_path.stat().st_size if log_path.exists() else 0
    process, started = _spawn(command, env, log_path)
    return Service(process, log_path, 0, started, offset)


def wait_log(service: Service, marker: str, *, timeout: float = 30.0) -> None:
    """Wait until the process's log holds ``marker`` (Celery logs "<name> ready.")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise ProcessFailed(
                f"{service.log_path.name}: exited with {service.process.returncode}:\n"
                f"{service.log()}"
            )
        if marker in service.log_path.read_text(errors="replace")[service.log_offset :]:
            return
        time.sleep(0.05)  # poll interval of a bounded readiness loop
    raise ProcessFailed(f"{service.log_path.name}: no {marker!r} after {timeout:g} s")


@contextmanager
def celery(
    env: dict[str, str], log_path: Path, name: str, *, concurrency: int = 2, timeout: float = 30.0
) -> Iterator[Service]:
    """A Celery worker for the ``with`` block: started, consuming, then a cold shutdown
    (SIGQUIT: it does not wait for the runs it holds)."""
    service = start_celery(env, log_path, name, concurrency=concurrency)
    try:
        wait_log(service, " ready.", timeout=timeout)
        yield service
    finally:
        service.stop(sig=signal.SIGQUIT)


class OwnRedis:
    """A redis-server of a test's or benchmark's own on a free loopback port, its data on
    disk (append-only file): it can be stopped and started like a real outage without
    touching the machine's shared Redis."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.service: Service | None = None

    def start(self, *, timeout: float = 10.0) -> None:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.folder), "--appendonly", "yes", "--appendfsync", "always",
            "--save", "",
        ]  # fmt: skip
        self.service = start_command(command, {}, self.folder / "redis.log", port=self.port)
        wait_log(self.service, "Ready to accept connections", timeout=timeout)

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()  # SIGTERM: redis-server flushes its append-only file and exits
