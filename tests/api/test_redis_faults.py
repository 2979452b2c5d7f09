"""APP_BACKEND=redis under faults, with real processes: two API nodes, Celery workers, the
real Redis and (for the RabbitMQ broker) the real RabbitMQ on loopback.

A consumer that is frozen while it holds a run's message, then killed, takes the message
with it: on the Redis broker the message has left the queue and is in no unacknowledged
set; on RabbitMQ the broker delivers it again when the connection dies. Either way the run
must still run, exactly once, on the workers that are left.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import redis
from httpx_sse import connect_sse

from tests.api import gated_pipeline
from tests.api.conftest import FILE_GATED, TERMINAL, Server, uvicorn_server
from tests.api.redis_support import (
    REDIS_URL,
    Worker,
    celery_worker,
    drop_keys,
    new_prefix,
    redis_client,
    stop_worker,
)
from tests.support.brokers import drop_queue, queue_length
from tests.support.processes import OwnRedis
from tests.support.tcp_proxy import tcp_proxy

pytestmark = pytest.mark.slow

RUNS = "/api/v1/runs"
RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672//"

TIMEOUT = 30.0


def _wait(
    condition: Callable[[], bool], what: str, *, timeout: float = TIMEOUT, logs: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)  # poll interval of a bounded wait for a state
    pytest.fail(f"timed out waiting for {what}\n{logs}")


def _status(base_url: str, run_id: str) -> str:
    return str(httpx.get(f"{base_url}{RUNS}/{run_id}/status", timeout=5).json()["status"])


def _executions(deployment: Deployment, run_id: str) -> int:
    """How many times a file-gated run's pipeline was called, by any worker."""
    calls = deployment.base / "output" / run_id / gated_pipeline.CALLS_FILE
    return len(calls.read_text().splitlines()) if calls.exists() else 0


class Deployment:
    def __init__(self, tmp_path: Path, broker: str | None) -> None:
        self.client = redis_client()
        self.prefix = new_prefix()
        self.log_dir = tmp_path / "logs"
        self.log_dir.mkdir()
        self.base = tmp_path / "base"
        (self.base / "documents").mkdir(parents=True)
        self.env = {
            "APP_BACKEND": "redis",
            "APP_EXECUTOR": "celery",
            "APP_REDIS_URL": REDIS_URL,
            "APP_REDIS_PREFIX": self.prefix,
            "APP_BASE_DIR": str(self.base),
            "APP_OUTPUT_DIR": str(self.base / "output"),
            "APP_PIPELINE": FILE_GATED,
            "APP_HEARTBEAT_S": "0.5",
            "APP_REQUEUE_AFTER_S": "1",
        }
        if broker is not None:
            self.env["APP_BROKER_URL"] = broker
        self.broker = broker
        self.stack = ExitStack()
        self.nodes: list[Server] = []
        self.workers: list[Worker] = []

    def start_nodes(self) -> None:
        for _ in range(2):
            self.nodes.append(self.stack.enter_context(uvicorn_server(self.log_dir, **self.env)))

    def add_worker(self, name: str) -> Worker:
        worker = self.stack.enter_context(celery_worker(self.log_dir, name, self.env))
        self.workers.append(worker)
        return worker

    def wait_until_consuming(self) -> None:
        """On the Redis broker, until a worker's connection is blocked in BRPOP: "ready" in
        its log comes a moment before it asks the broker for work, and a worker stopped in
        that moment never takes the message."""
        if self.broker is None:
            _wait(
                lambda: any(c.get("cmd") == "brpop" for c in self.client.client_list()),
                "a worker waiting on the broker",
            )

    def queue_length(self) -> int:
        return queue_length(self.env)

    def close(self) -> None:
        self.stack.close()
        drop_keys(self.client, self.prefix)
        drop_queue(self.env)

    def logs(self) -> str:
        parts = [f"--- node {n.base_url}\n{n.log()}" for n in self.nodes]
        parts += [f"--- worker {w.log_path.name}\n{w.log()}" for w in self.workers]
        return "\n".join(parts)


@pytest.fixture(params=["redis-broker", "rabbitmq-broker"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    made = Deployment(tmp_path, None if request.param == "redis-broker" else RABBIT_URL)
    try:
        made.start_nodes()
        yield made
    finally:
        made.close()


def test_a_run_whose_consumer_froze_and_died_holding_it_still_runs_once(
    deployment: Deployment,
) -> None:
    frozen = deployment.add_worker("frozen")
    deployment.wait_until_consuming()
    frozen.process.send_signal(signal.SIGSTOP)  # idle, waiting on the broker: now it cannot read
    try:
        a, b = deployment.nodes[0].base_url, deployment.nodes[1].base_url
        created = httpx.post(f"{a}{RUNS}", json={"question": "How many trucks?"}, timeout=10)
        assert created.status_code == 202, created.text
        run_id = created.json()["run_id"]
        release = deployment.base / "output" / run_id / gated_pipeline.RELEASE_FILE
        release.touch()  # whoever runs it finishes at once
        # The broker handed the message to the frozen consumer: it has left the queue.
        _wait(lambda: deployment.queue_length() == 0, "the message to leave the queue")
        assert _status(b, run_id) == "queued"
    finally:
        stop_worker(frozen, kill=True)  # it dies with the message, never having read it
    lost_at = time.monotonic()
    deployment.add_worker("w1")
    deployment.add_worker("w2")
    try:
        _wait(lambda: _status(b, run_id) == "completed", f"run {run_id} to complete")
    except pytest.fail.Exception:
        pytest.fail(f"run {run_id} is {_status(b, run_id)}:\n{deployment.logs()}")
    print(f"lost message -> completed in {time.monotonic() - lost_at:.2f} s")
    assert _executions(deployment, run_id) == 1
    # The workers are still serving: a new run completes.
    again = httpx.post(f"{b}{RUNS}", json={"question": "And now?"}, timeout=10).json()["run_id"]
    (deployment.base / "output" / again / gated_pipeline.RELEASE_FILE).touch()
    _wait(lambda: _status(a, again) == "completed", f"run {again} to complete")
    state = json.loads((deployment.base / "output" / run_id / "api_state.json").read_text())
    assert state["status"] == "completed"


class Follower(threading.Thread):
    """An SSE client following one run to its end, as a browser would."""

    def __init__(self, base_url: str, run_id: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{base_url}{RUNS}/{run_id}/events"
        self.events: list[tuple[str, str | None]] = []
        self.ids: list[int] = []
        self.error: BaseException | None = None
        self.receiving = threading.Event()  # set once the stream is open and delivering

    def run(self) -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10, read=90)) as client,
                connect_sse(client, "GET", self.url) as source,
            ):
                for sse in source.iter_sse():
                    if sse.event == "ping" or not sse.data:
                        continue
                    self.ids.append(int(sse.id))
                    self.events.append((sse.event, json.loads(sse.data).get("status")))
                    self.receiving.set()
        except BaseException as exc:
            self.error = exc


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[tuple[Deployment, OwnRedis]]:
    own = OwnRedis(tmp_path / "redis")
    own.start()
    made = Deployment(tmp_path, None)
    made.client = redis.Redis.from_url(own.url, decode_responses=True)
    made.env |= {"APP_REDIS_URL": own.url, "APP_PIPELINE": FILE_GATED}
    try:
        made.start_nodes()
        yield made, own
    finally:
        made.stack.close()  # its keys go with the Redis of its own
        own.stop()


def test_a_redis_outage_longer_than_three_heartbeats_loses_no_run_and_no_worker(
    outage: tuple[Deployment, OwnRedis],
) -> None:
    deployment, own = outage
    worker = deployment.add_worker("w1")
    a, b = deployment.nodes[0].base_url, deployment.nodes[1].base_url
    run_id = httpx.post(f"{a}{RUNS}", json={"question": "Q?"}, timeout=10).json()["run_id"]
    _wait(lambda: _status(b, run_id) == "running", "the run to start", logs=deployment.logs())
    follower = Follower(b, run_id)  # an event stream open across the outage
    follower.start()
    assert follower.receiving.wait(TIMEOUT), follower.error  # open before Redis goes
    own.stop()
    # The outage: longer than three heartbeats (0.5 s each) by design, not a wait for a state.
    time.sleep(2.5)
    own.start()
    (deployment.base / "output" / run_id / gated_pipeline.RELEASE_FILE).touch()
    try:
        _wait(lambda: _status(b, run_id) in TERMINAL, f"run {run_id} to end", timeout=60)
    except pytest.fail.Exception:
        pytest.fail(f"run {run_id} is {_status(b, run_id)}:\n{deployment.logs()}")
    assert _status(b, run_id) == "completed", deployment.logs()
    follower.join(timeout=TIMEOUT)
    assert follower.error is None, follower.error  # ended cleanly, not a torn body
    assert follower.events[-1] == ("status", "completed"), follower.events
    assert _executions(deployment, run_id) == 1  # no second delivery ran it again
    ids = follower.ids
    assert ids == sorted(set(ids)), ids  # no gap-filling repeats, in order
    assert worker.process.poll() is None, worker.log()
    again = httpx.post(f"{b}{RUNS}", json={"question": "And now?"}, timeout=10).json()["run_id"]
    _wait(
        lambda: _status(a, again) == "running",
        "a new run to start",
        logs=deployment.logs(),
        timeout=60,
    )
    (deployment.base / "output" / again / gated_pipeline.RELEASE_FILE).touch()
    _wait(lambda: _status(a, again) == "completed", f"run {again} to complete")


def test_a_rabbitmq_outage_with_a_run_in_flight_loses_no_run_and_no_worker(
    tmp_path: Path,
) -> None:
    with tcp_proxy("127.0.0.1", 5672) as proxy:
        deployment = Deployment(tmp_path, f"amqp://guest:guest@127.0.0.1:{proxy.port}//")
        deployment.env["APP_PIPELINE"] = FILE_GATED
        try:
            deployment.start_nodes()
            worker = deployment.add_worker("w1")
            a, b = deployment.nodes[0].base_url, deployment.nodes[1].base_url
            run_id = httpx.post(f"{a}{RUNS}", json={"question": "Q?"}, timeout=10).json()["run_id"]
            _wait(
                lambda: _status(b, run_id) == "running", "the run to start", logs=deployment.logs()
            )
            proxy.cut()
            # The outage: longer than three heartbeats (0.5 s each) by design.
            time.sleep(2.5)
            proxy.restore()
            (deployment.base / "output" / run_id / gated_pipeline.RELEASE_FILE).touch()
            _wait(lambda: _status(b, run_id) in TERMINAL, "the run to end", logs=deployment.logs())
            assert _status(b, run_id) == "completed", deployment.logs()
            assert _executions(deployment, run_id) == 1
            assert worker.process.poll() is None, worker.log()
            again = httpx.post(f"{b}{RUNS}", json={"question": "Next?"}, timeout=10).json()
            _wait(
                lambda: _status(a, again["run_id"]) == "running",
                "a new run to start",
                logs=deployment.logs(),
                timeout=60,
            )
            (deployment.base / "output" / again["run_id"] / gated_pipeline.RELEASE_FILE).touch()
            _wait(lambda: _status(a, again["run_id"]) == "completed", "the new run to complete")
        finally:
            deployment.stack.close()
            drop_keys(deployment.client, deployment.prefix)
            drop_queue(deployment.env)
