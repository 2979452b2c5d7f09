"""APP_BACKEND=redis end to end: two uvicorn nodes and two Celery workers on loopback.

Real processes, the real Redis: node A and node B share nothing but Redis and ``output/``
(the shared volume of a real deployment); the workers run the file-gated pipeline, which the
tests steer by creating files in ``output/<run_id>/``. Every wait is bounded and waits for a
status, an event or a file, never for time to pass.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis
from httpx_sse import aconnect_sse

from app.api.services.backends.redis.store import RedisRunStore
from app.config import AppConfig
from tests.api import gated_pipeline
from tests.api.conftest import FILE_GATED, STATUS_KEYS, TERMINAL, Server, uvicorn_server
from tests.api.redis_support import (
    REDIS_URL,
    Worker,
    celery_worker,
    drop_keys,
    new_prefix,
    redis_client,
    stop_worker,
)

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

RUNS = "/api/v1/runs"
TIMEOUT = 20.0
HEARTBEAT_S = 1.0  # a 3 s heartbeat: a busy CI machine must not look like a lost worker


@dataclass
class Cluster:
    base: Path
    env: dict[str, str]
    nodes: list[Server]
    workers: list[Worker]
    log_dir: Path
    stack: ExitStack
    client: redis.Redis
    store: RedisRunStore = field(init=False)

    def __post_init__(self) -> None:
        config = AppConfig(
            base_dir=self.base,
            backend="redis",
            executor="celery",
            redis_url=REDIS_URL,
            redis_prefix=self.env["APP_REDIS_PREFIX"],
        )
        self.store = RedisRunStore(config)

    @property
    def a(self) -> str:
        return self.nodes[0].base_url

    @property
    def b(self) -> str:
        return self.nodes[1].base_url

    def run_dir(self, run_id: str) -> Path:
        return self.base / "output" / run_id

    def release(self, run_id: str) -> None:
        (self.run_dir(run_id) / gated_pipeline.RELEASE_FILE).touch()

    def add_worker(self, name: str) -> Worker:
        worker = self.stack.enter_context(celery_worker(self.log_dir, name, self.env))
        self.workers.append(worker)
        return worker

    def logs(self) -> str:
        parts = [f"--- node {n.base_url}\n{n.log()}" for n in self.nodes]
        parts += [f"--- worker {w.log_path.name}\n{w.log()}" for w in self.workers]
        return "\n".join(parts)


def redis_env(base: Path, prefix: str, **extra: str) -> dict[str, str]:
    """The APP_* settings of one deployment: nodes and workers get the same ones."""
    return {
        "APP_BACKEND": "redis",
        "APP_EXECUTOR": "celery",
        "APP_REDIS_URL": REDIS_URL,
        "APP_REDIS_PREFIX": prefix,
        "APP_BASE_DIR": str(base),
        "APP_OUTPUT_DIR": str(base / "output"),
        "APP_LLM_PROVIDER": "extractive",
        **extra,
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    client = redis_client()
    base = tmp_path_factory.mktemp("cluster")
    (base / "documents").mkdir()
    (base / "documents" / "fleet.md").write_text(
        "# Fleet\n\nNorthwind ran 186 battery-electric trucks in 2024.\n"
    )
    log_dir = tmp_path_factory.mktemp("cluster-logs")
    prefix = new_prefix()
    env = redis_env(
        base,
        prefix,
        APP_PIPELINE=FILE_GATED,
        APP_HEARTBEAT_S=str(HEARTBEAT_S),
        APP_SSE_PING_S="1",
    )
    with ExitStack() as stack:
        nodes = [stack.enter_context(uvicorn_server(log_dir, **env)) for _ in range(2)]
        made = Cluster(base, env, nodes, [], log_dir, stack, client)
        made.add_worker("w1")
        made.add_worker("w2")
        yield made
    drop_keys(client, prefix)


async def wait_for(
    client: httpx.AsyncClient,
    url: str,
    run_id: str,
    want: Collection[str],
    cluster: Cluster,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    try:
        with anyio.fail_after(TIMEOUT):
            while True:
                body = (await client.get(f"{url}{RUNS}/{run_id}/status")).json()
                if body.get("status") in want:
                    return body
                await anyio.sleep(0.02)  # poll interval of a bounded wait
    except TimeoutError:
        pytest.fail(f"run {run_id} not {want} in {TIMEOUT} s (last {body}):\n{cluster.logs()}")


async def post(client: httpx.AsyncClient, url: str, **body: Any) -> httpx.Response:
    return await client.post(f"{url}{RUNS}", json={"question": "How many trucks?", **body})


async def test_a_run_posted_on_a_is_followed_over_sse_on_b(cluster: Cluster) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        created = await post(client, cluster.a, run_id="follow-b")
        assert created.status_code == 202, created.text
        await wait_for(client, cluster.b, "follow-b", {"running"}, cluster)
        events: list[tuple[int, str, dict[str, Any]]] = []
        with anyio.fail_after(TIMEOUT):
            async with aconnect_sse(client, "GET", f"{cluster.b}{RUNS}/follow-b/events") as source:
                assert source.response.status_code == 200
                async with aclosing(source.aiter_sse()) as stream:
                    async for sse in stream:
                        events.append((int(sse.id), sse.event, json.loads(sse.data)))
                        if sse.event == "progress" and sse.data and "gate" in sse.data:
                            # Live from here: pieces of the answer, then the end.
                            (cluster.run_dir("follow-b") / gated_pipeline.delta_file(1)).touch()
                        if sse.event == "answer_delta" and events[-1][2]["text"].startswith(
                            "Piece 1"
                        ):
                            cluster.release("follow-b")
        status = (await client.get(f"{cluster.a}{RUNS}/follow-b/status")).json()
        output = (await client.get(f"{cluster.b}{RUNS}/follow-b/output")).json()

    assert [e[0] for e in events] == list(range(1, len(events) + 1))
    kinds = [(e[1], e[2].get("status") or e[2].get("stage")) for e in events]
    assert kinds[:3] == [("status", "queued"), ("status", "running"), ("progress", "gate")]
    assert kinds[-1] == ("status", "completed")
    text = "".join(e[2]["text"] for e in events if e[1] == "answer_delta")
    assert text == output["content"]
    assert set(status) == STATUS_KEYS
    assert status["status"] == "completed"
    # The shared volume holds the whole run, as with the file backend.
    logged = (cluster.run_dir("follow-b") / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in logged] == [e[0] for e in events]


async def test_a_stream_resumes_on_the_other_node_after_last_event_id(cluster: Cluster) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await post(client, cluster.a, run_id="resume")).status_code == 202
        await wait_for(client, cluster.a, "resume", {"running"}, cluster)
        cluster.release("resume")
        await wait_for(client, cluster.a, "resume", TERMINAL, cluster)
        with anyio.fail_after(TIMEOUT):
            async with aconnect_sse(
                client, "GET", f"{cluster.b}{RUNS}/resume/events", headers={"Last-Event-ID": "2"}
            ) as source:
                ids = [int(sse.id) async for sse in source.aiter_sse()]
        done = await client.get(
            f"{cluster.a}{RUNS}/resume/events", headers={"Last-Event-ID": str(ids[-1])}
        )
    assert ids[0] == 3
    assert ids == list(range(3, ids[-1] + 1))
    assert done.status_code == 204


def test_concurrent_duplicate_run_ids_across_nodes_accept_exactly_one(cluster: Cluster) -> None:
    def create(index: int) -> int:
        url = cluster.a if index % 2 else cluster.b
        body = {"question": "How many trucks?", "run_id": "dup-across"}
        return httpx.post(f"{url}{RUNS}", json=body, timeout=10).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(create, range(20)))
    assert codes.count(202) == 1, codes
    assert codes.count(409) == 19, codes
    cluster.release("dup-across")


def test_one_idempotency_key_on_both_nodes_starts_one_run(cluster: Cluster) -> None:
    def create(index: int) -> str:
        url = cluster.a if index % 2 else cluster.b
        response = httpx.post(
            f"{url}{RUNS}",
            json={"question": "Same question"},
            headers={"Idempotency-Key": "cluster-key"},
            timeout=10,
        )
        assert response.status_code == 202, response.text
        run_id: str = response.json()["run_id"]
        return run_id

    with ThreadPoolExecutor(10) as pool:
        run_ids = set(pool.map(create, range(10)))
    assert len(run_ids) == 1
    cluster.release(run_ids.pop())


async def test_cancel_on_b_stops_a_run_running_on_a_worker(cluster: Cluster) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await post(client, cluster.a, run_id="cancel-b")).status_code == 202
        await wait_for(client, cluster.a, "cancel-b", {"running"}, cluster)
        cancelled = await client.post(f"{cluster.b}{RUNS}/cancel-b/cancel")
        assert cancelled.status_code == 202
        status = await wait_for(client, cluster.a, "cancel-b", TERMINAL, cluster)
        again = await client.post(f"{cluster.a}{RUNS}/cancel-b/cancel")
    assert (status["status"], status["finish_reason"]) == ("stopped", "cancelled")
    assert again.status_code == 200


async def test_runs_spread_over_both_workers_and_all_finish(cluster: Cluster) -> None:
    ids = [f"spread-{n}" for n in range(8)]
    async with httpx.AsyncClient(timeout=10) as client:
        for n, run_id in enumerate(ids):
            url = cluster.a if n % 2 else cluster.b
            assert (await post(client, url, run_id=run_id)).status_code == 202
        for run_id in ids:
            await wait_for(client, cluster.a, run_id, {"running", *TERMINAL}, cluster)
            cluster.release(run_id)
        finals = [await wait_for(client, cluster.b, r, TERMINAL, cluster) for r in ids]
        listed = (await client.get(f"{cluster.a}{RUNS}", params={"limit": 200})).json()
    assert {f["status"] for f in finals} == {"completed"}
    owners = {str((cluster.store.get(r).owner or {}).get("worker")) for r in ids}
    assert len(owners) == 2  # four at a time fit on two workers of two threads each
    assert set(ids) <= {item["run_id"] for item in listed["items"]}


async def test_a_killed_worker_leaves_its_run_failed_interrupted(cluster: Cluster) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await post(client, cluster.a, run_id="orphan")).status_code == 202
        await wait_for(client, cluster.b, "orphan", {"running"}, cluster)
        owner = cluster.store.get("orphan").owner or {}
        victim = next(w for w in cluster.workers if w.process.pid == owner.get("pid"))
        stop_worker(victim, kill=True)  # SIGKILL: no goodbye, no acknowledgement
        status = await wait_for(client, cluster.a, "orphan", TERMINAL, cluster)
        assert (status["status"], status["finish_reason"]) == ("failed", "interrupted")
        assert status["error"]["code"] == "worker_lost"

        # The other worker goes on: nothing else is lost.
        assert (await post(client, cluster.b, run_id="after-kill")).status_code == 202
        await wait_for(client, cluster.a, "after-kill", {"running"}, cluster)
        cluster.release("after-kill")
        after = await wait_for(client, cluster.a, "after-kill", TERMINAL, cluster)
    assert after["status"] == "completed"
    cluster.workers.remove(victim)
    cluster.add_worker("w3")


async def test_the_time_limit_stops_a_run_on_a_worker(cluster: Cluster, tmp_path: Path) -> None:
    env = {**cluster.env, "APP_RUN_TIMEOUT_S": "0.5"}
    # A worker of its own with a short limit, on a queue of its own (another prefix).
    prefix = new_prefix()
    env["APP_REDIS_PREFIX"] = prefix
    try:
        with (
            celery_worker(tmp_path, "timeout", env),
            uvicorn_server(tmp_path, **env) as node,
        ):
            async with httpx.AsyncClient(timeout=10) as client:
                assert (await post(client, node.base_url, run_id="slow")).status_code == 202
                status = await wait_for(client, node.base_url, "slow", TERMINAL, cluster)
    finally:
        drop_keys(cluster.client, prefix)
    assert (status["status"], status["finish_reason"]) == ("stopped", "timeout")
    assert status["error"]["code"] == "run_timeout"


async def test_the_offline_engine_answers_through_a_celery_worker(tmp_path: Path) -> None:
    client = redis_client()
    prefix = new_prefix()
    base = tmp_path / "base"
    (base / "documents").mkdir(parents=True)
    (base / "documents" / "fleet.md").write_text(
        "# Fleet\n\nNorthwind Logistics ran 186 battery-electric trucks in 2024.\n"
    )
    env = redis_env(base, prefix)  # the built-in engine: no APP_PIPELINE
    started = time.monotonic()
    try:
        with celery_worker(tmp_path, "engine", env), uvicorn_server(tmp_path, **env) as node:
            async with httpx.AsyncClient(base_url=node.base_url, timeout=10) as http:
                created = await http.post(
                    RUNS, json={"question": "How many battery-electric trucks did Northwind run?"}
                )
                run_id = created.json()["run_id"]
                with anyio.fail_after(60):
                    while (status := (await http.get(f"{RUNS}/{run_id}/status")).json())[
                        "status"
                    ] not in TERMINAL:
                        await anyio.sleep(0.05)  # poll interval of a bounded wait
                output = (await http.get(f"{RUNS}/{run_id}/output")).json()
                context = (await http.get(f"{RUNS}/{run_id}/context")).json()
            # The frontend's smoke script passes on this backend too, polling and over SSE.
            smoke = [
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "app.scripts.test_async_backend_flow",
                        "--base-url",
                        node.base_url,
                        "--question",
                        "How many trucks did Northwind run?",
                        "--out",
                        str(tmp_path / f"smoke{n}"),
                        "--timeout",
                        "60",
                        "--poll",
                        "0.1",
                        *flags,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=90,
                    check=False,
                )
                for n, flags in enumerate(([], ["--sse"]))
            ]
    finally:
        drop_keys(client, prefix)
    for done in smoke:
        assert done.returncode == 0, done.stdout + done.stderr
    assert status["status"] == "completed", (status, time.monotonic() - started)
    assert "186" in output["content"]
    assert "[1]" in output["content"]
    assert output["final_output_path"] == f"output/{run_id}/final.md"
    assert context["context_bundle"]["evidence"]


async def test_a_stopping_node_ends_its_streams_and_exits(cluster: Cluster, tmp_path: Path) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await post(client, cluster.a, run_id="held-stream")).status_code == 202
        await wait_for(client, cluster.a, "held-stream", {"running"}, cluster)
        with uvicorn_server(tmp_path, **cluster.env) as node:
            seen: list[str] = []
            with anyio.fail_after(TIMEOUT):
                async with aconnect_sse(
                    client, "GET", f"{node.base_url}{RUNS}/held-stream/events"
                ) as source:
                    async for sse in source.aiter_sse():
                        seen.append(sse.event)
                        if sse.event == "progress":  # live now: stop the node under it
                            node.process.send_signal(signal.SIGTERM)
                with anyio.fail_after(10):
                    exit_code = await anyio.to_thread.run_sync(node.process.wait)
            log = node.log()
        # The run itself belongs to a worker and goes on.
        status = (await client.get(f"{cluster.b}{RUNS}/held-stream/status")).json()
    cluster.release("held-stream")
    assert seen[:3] == ["status", "status", "progress"]
    # uvicorn re-raises the signal it handled once it has shut down cleanly.
    assert exit_code in {0, -signal.SIGTERM}, log
    assert "Finished server process" in log, log
    assert "Traceback" not in log, log
    assert status["status"] == "running"
