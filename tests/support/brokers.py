"""A deployment's run queue, on whichever broker its APP_* settings name (the Redis of
APP_REDIS_URL, or APP_BROKER_URL's RabbitMQ): how many messages wait, and removing it.

Shared by the fault tests and ``benchmarks.bench_scale``.
"""

from __future__ import annotations

import redis
from kombu.connection import Connection


def _queue(env: dict[str, str]) -> str:
    return f"{env['APP_REDIS_PREFIX']}.runs"


def queue_length(env: dict[str, str]) -> int:
    """Messages waiting in the run queue (handed to no consumer yet)."""
    if "APP_BROKER_URL" not in env:
        client = redis.Redis.from_url(env["APP_REDIS_URL"])
        try:
            return int(client.llen(f"{env['APP_REDIS_PREFIX']}:celery:{_queue(env)}"))
        finally:
            client.close()
    with Connection(env["APP_BROKER_URL"]) as connection:
        _, messages, _ = connection.default_channel.queue_declare(queue=_queue(env), passive=True)
        return int(messages)


def drop_queue(env: dict[str, str]) -> None:
    """Remove a RabbitMQ run queue and its exchange (on Redis they go with the prefix's keys)."""
    if "APP_BROKER_URL" not in env:
        return
    with Connection(env["APP_BROKER_URL"]) as connection:
        connection.default_channel.queue_delete(queue=_queue(env))
        connection.default_channel.exchange_delete(exchange=_queue(env))
