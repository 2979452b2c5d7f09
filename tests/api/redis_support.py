"""Helpers for the APP_BACKEND=redis tests: the real Redis on 127.0.0.1:6379, Celery workers.

Every test (or test module) gets a key prefix of its own, so tests never see each other's
runs, and every key under it is removed afterwards. The Redis is the one this machine kind
starts before each session and CI run; APP_TEST_REDIS_URL points elsewhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.api.conftest import REPO

REDIS_URL = os.environ.get("APP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"these tests need Redis at {REDIS_URL} (set APP_TEST_REDIS_URL to use another): {exc}"
        )
    return client


def new_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def drop_keys(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@dataclass
class Worker:
    """A Celery worker process and its log."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


def _wait_until_ready(worker: Worker, *, timeout: float) -> None:
    # Celery logs "<name> ready." once it consumes from its queue.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            pytest.fail(f"celery exited with {worker.process.returncode}:\n{worker.log()}")
        if " ready." in worker.log_path.read_text(errors="replace"):
            return
        time.sleep(0.05)  # poll interval of a bounded readiness loop
    pytest.fail(f"celery worker not ready after {timeout} s:\n{worker.log()}")


def stop_worker(worker: Worker, *, kill: bool = False) -> None:
    process = worker.process
    if process.poll() is not None:
        return
    if kill:
        process.kill()
        process.wait(timeout=10)
        return
    process.send_signal(signal.SIGQUIT)  # cold shutdown: do not wait for held test runs
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@contextmanager
def celery_worker(log_dir: Path, name: str, env: dict[str, str]) -> Iterator[Worker]:
    """A real ``celery -A app.worker worker`` (threads pool) with ``env`` as its APP_* settings."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "OPENAI_"))}
    full_env.update(env)
    log_path = log_dir / f"celery-{name}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "app.worker",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                "2",
                "--hostname",
                f"{name}@%h",
                "--loglevel",
                "INFO",
                # Nothing here needs the cluster-wide chatter; it slows start-up.
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=REPO,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    worker = Worker(process, log_path)
    try:
        _wait_until_ready(worker, timeout=30)
        yield worker
    finally:
        stop_worker(worker)
