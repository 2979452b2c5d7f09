"""Helpers for the APP_BACKEND=redis tests: the real Redis on 127.0.0.1:6379, Celery workers.

Every test (or test module) gets a key prefix of its own, so tests never see each other's
runs, and every key under it is removed afterwards. The Redis is the one this machine kind
starts before each session and CI run; APP_TEST_REDIS_URL points elsewhere.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tests.support.processes import ProcessFailed, Service, clean_env, start_celery, wait_log

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


Worker = Service  # a Celery worker process and its log (tests.support.processes)


def stop_worker(worker: Worker, *, kill: bool = False) -> None:
    """Cold shutdown (SIGQUIT: do not wait for held test runs), or SIGKILL: no goodbye."""
    if kill:
        worker.kill()
    else:
        worker.stop(sig=signal.SIGQUIT)


@contextmanager
def celery_worker(log_dir: Path, name: str, env: dict[str, str]) -> Iterator[Worker]:
    """A real ``celery -A app.worker worker`` (threads pool) with ``env`` as its APP_* settings."""
    worker = start_celery(clean_env(**env), log_dir / f"celery-{name}.log", name)
    try:
        try:
            wait_log(worker, " ready.", timeout=30)
        except ProcessFailed as exc:
            pytest.fail(str(exc))
        yield worker
    finally:
        stop_worker(worker)
