"""The Redis store's tests: the real Redis, a key prefix of each test's own, removed after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from app.api.services.backends.redis.store import RedisRunStore
from app.config import AppConfig
from tests.api.redis_support import REDIS_URL, drop_keys, new_prefix, redis_client


@pytest.fixture
def client() -> redis.Redis:
    return redis_client()


@pytest.fixture
def settings() -> dict[str, Any]:
    """Settings a test module adds to the Redis configuration (override the fixture)."""
    return {"heartbeat_s": 0.2}


@pytest.fixture
def config(tmp_path: Path, client: redis.Redis, settings: dict[str, Any]) -> Iterator[AppConfig]:
    prefix = new_prefix()
    yield AppConfig(
        base_dir=tmp_path,
        backend="redis",
        executor="celery",
        redis_url=REDIS_URL,
        redis_prefix=prefix,
        **settings,
    )
    drop_keys(client, prefix)


@pytest.fixture
def store(config: AppConfig) -> Iterator[RedisRunStore]:
    made = RedisRunStore(config)
    made.open()
    yield made
    made.close()
