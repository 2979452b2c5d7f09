"""The sweeper against the real Redis: stranded queued runs are sent again, heartbeats are
judged only after Redis has been reachable for a while, lost runs are never run again."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from app.api.services.backends.redis.executor import (
    Sweeper,
    WorkerRuntime,
    make_celery,
)
from app.api.services.backends.redis.store import RedisRunStore
from app.api.services.errors import StoreUnavailable
from app.api.services.run_store import RunOptions
from app.config import AppConfig
from app.modules.orchestrator.contract import PipelineResult, RunCall, pipeline

GRACE_S = 0.3


@pytest.fixture
def settings() -> dict[str, Any]:
    return {"heartbeat_s": 0.1, "requeue_after_s": GRACE_S}


class Broker:
    """The tasks the sweeper sends, read back from the real Redis broker's queue."""

    def __init__(self, client: redis.Redis, config: AppConfig) -> None:
        self.client = client
        self.queue = f"{config.redis_prefix}:celery:{config.redis_prefix}.runs"

    def sent(self) -> list[str]:
        messages = self.client.lrange(self.queue, 0, -1)
        return [json.loads(m)["headers"]["id"] for m in messages]


@pytest.fixture
def sweeper(store: RedisRunStore, config: AppConfig) -> Iterator[Sweeper]:
    celery = make_celery(config)
    yield Sweeper(store, celery, config)
    celery.close()


def _queued(store: RedisRunStore, run_id: str) -> None:
    store.create(run_id, RunOptions(question="How many trucks?"))


def _wait_past_grace() -> None:
    time.sleep(GRACE_S + 0.05)  # the grace is a duration the sweeper measures; let it pass


def test_a_queued_run_passed_by_a_newer_run_is_sent_again(
    store: RedisRunStore, sweeper: Sweeper, client: redis.Redis, config: AppConfig
) -> None:
    _queued(store, "old")  # its message is lost: it was never sent at all
    _queued(store, "new")
    store.transition("new", "running")  # the workers have taken the queue past "old"
    sweeper.sweep()
    assert Broker(client, config).sent() == []  # within the grace: nothing yet
    _wait_past_grace()
    sweeper.sweep()
    assert Broker(client, config).sent() == ["old"]
    sweeper.sweep()  # not again at once: the next send waits twice the grace
    assert Broker(client, config).sent() == ["old"]


def test_a_queued_run_behind_a_running_older_one_is_left_in_the_queue(
    store: RedisRunStore, sweeper: Sweeper, client: redis.Redis, config: AppConfig
) -> None:
    _queued(store, "first")
    _queued(store, "second")
    store.transition("first", "running")  # FIFO: "second" waits its turn, it is not lost
    _wait_past_grace()
    sweeper.sweep()
    assert Broker(client, config).sent() == []


def test_with_nothing_running_a_queued_run_past_the_grace_is_sent_again(
    store: RedisRunStore, sweeper: Sweeper, client: redis.Redis, config: AppConfig
) -> None:
    _queued(store, "alone")
    _wait_past_grace()
    sweeper.sweep()
    assert Broker(client, config).sent() == ["alone"]
    store.transition("alone", "running")
    store.transition("alone", "completed", finish_reason="answered")
    _wait_past_grace()
    sweeper.sweep()  # started and finished: never sent again
    assert Broker(client, config).sent() == ["alone"]


@pipeline
def _count(call: RunCall) -> PipelineResult:
    _count.calls.append(call.run_id)  # type: ignore[attr-defined]
    return call.save("# Answer\n\nDone [1].\n", {"run_id": call.run_id, "evidence": []})


def test_a_second_delivery_of_a_run_never_runs_it_again(
    store: RedisRunStore, config: AppConfig
) -> None:
    _count.calls = []  # type: ignore[attr-defined]
    _queued(store, "twice")
    worker = WorkerRuntime(config, _count)
    worker.execute("twice")  # the first delivery claims and runs it
    worker.execute("twice")  # the re-sent one finds it finished
    assert _count.calls == ["twice"]  # type: ignore[attr-defined]
    assert store.get("twice").status == "completed"
    worker.store.close()


def test_heartbeats_are_judged_only_a_grace_after_redis_is_back(
    store: RedisRunStore, sweeper: Sweeper, client: redis.Redis, config: AppConfig
) -> None:
    _queued(store, "busy")
    store.transition("busy", "running")
    client.delete(store.key("hb", "busy"))  # the heartbeat expired while Redis was away
    sweeper.reachable = False  # the last pass found Redis unreachable
    sweeper.sweep()  # the first pass with Redis back
    assert store.get("busy").status == "running"  # a healthy worker has time to beat again
    time.sleep(3 * config.heartbeat_s + 0.05)  # the grace is a duration; let it pass
    sweeper.sweep()  # no beat came in the grace: the worker is gone
    failed = store.get("busy")
    assert failed.status == "failed"
    assert failed.finish_reason == "interrupted"


def test_an_unreachable_redis_is_said_and_the_next_pass_goes_on(
    store: RedisRunStore, sweeper: Sweeper, config: AppConfig
) -> None:
    sweeper.store = RedisRunStore(config.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    with pytest.raises(StoreUnavailable):
        sweeper.sweep()
    while_away = sweeper.reachable
    sweeper.store.close()
    sweeper.store = store
    sweeper.sweep()
    assert (while_away, sweeper.reachable) == (False, True)
    assert sweeper.judge_after > time.monotonic()


def test_runs_that_ended_on_workers_reach_the_nodes_metrics_once(
    store: RedisRunStore, config: AppConfig
) -> None:
    seen: list[tuple[str, float]] = []
    celery = make_celery(config)
    sweeper = Sweeper(store, celery, config, lambda status, s: seen.append((status, s)))
    _queued(store, "ran")
    store.transition("ran", "running")
    store.transition("ran", "completed", finish_reason="answered")
    _queued(store, "never-ran")
    store.transition("never-ran", "stopped", finish_reason="cancelled")
    sweeper.sweep()
    sweeper.sweep()  # taken once, by one node
    celery.close()
    assert [status for status, _ in seen] == ["completed"]
    assert 0 <= seen[0][1] < 5


def test_a_node_that_has_just_started_gives_heartbeats_the_same_grace(
    store: RedisRunStore, sweeper: Sweeper, client: redis.Redis
) -> None:
    # A node started with Redis after an outage: every heartbeat expired meanwhile.
    _queued(store, "busy")
    store.transition("busy", "running")
    client.delete(store.key("hb", "busy"))
    sweeper.sweep()
    assert store.get("busy").status == "running"
