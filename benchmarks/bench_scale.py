"""Benchmark the Redis/Celery backend against the default (files + thread pool).

Run by hand (not part of pytest); it needs the Redis on 127.0.0.1:6379 (``--redis-url``)::

    .venv/bin/python -m benchmarks.bench_scale
    .venv/bin/python -m benchmarks.bench_scale --runs 300 --events 200 --json /tmp/scale.json

Everything runs on 127.0.0.1 in real processes: uvicorn servers (one worker each, started
with the repository as working directory) and Celery workers (``celery -A app.worker
worker --pool threads``); each deployment has an output/ of its own under a temporary
folder and, for Redis, a key prefix of its own, removed at the end. Loads are bounded in
count, every wait in time, and every process is stopped at the end.

1. **Runs per second** (``benchmarks.fast_pipeline:answer_at_once``: no retrieval, so the
   figure is the backend's own cost): ``--runs`` runs posted by ``--clients`` concurrent
   clients to one API node, timed from the first POST until every run is terminal.
   a. files + the thread pool, ``APP_MAX_WORKERS=2`` (the default);
   b. redis + two Celery workers, ``--concurrency 1`` each (so two runs at a time, as in a).
2. **Event latency across nodes** (``benchmarks.event_pipeline:emit_on_demand``): a run
   posted on node A, followed over SSE on node B; ``--events`` progress events about 20 ms
   apart, each carrying the time it was emitted; latency = received - emitted (same clock).
   a. files: the run executes in A's thread pool, B reads it through its output/ watcher;
   b. redis: the run executes on a Celery worker, B reads the run's Redis stream.
3. **A lost message**, on the Redis broker and on RabbitMQ (``--rabbitmq-url``): a worker
   frozen (SIGSTOP) while it waits on the broker is handed a run's message, then killed;
   two fresh workers start: seconds from the kill until the run is running, and completed.
4. **Outages with a run in flight** (the file-gated test pipeline holds the run): the
   deployment's own ``redis-server`` (state and broker) stopped for 3 s, or the RabbitMQ
   behind a TCP proxy of the benchmark's own cut for 3 s: seconds from the service being
   back until the run in flight completes, and until a run posted then completes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import redis
from httpx_sse import connect_sse

from benchmarks.common import percentile, running, server_env
from tests.support.brokers import drop_queue, queue_length
from tests.support.processes import OwnRedis, celery, start_celery, wait_log
from tests.support.tcp_proxy import tcp_proxy

SERVICE_APP = "app.api.main:app"
FAST_PIPELINE = "benchmarks.fast_pipeline:answer_at_once"
EVENT_PIPELINE = "benchmarks.event_pipeline:emit_on_demand"
RUNS = "/api/v1/runs"
TERMINAL = frozenset({"completed", "completed_with_gaps", "failed", "stopped"})
WAIT_S = 300.0  # bound on any one phase
WORKER_READY_S = 60.0


@contextlib.contextmanager
def deployment(
    kind: str,
    work: Path,
    redis_url: str,
    pipeline: str,
    *,
    nodes: int,
    workers: int,
    broker: str | None = None,
    **settings: str,
) -> Iterator[tuple[list[str], Path, dict[str, str]]]:
    """API nodes (their base URLs) and, for redis, Celery workers over one output/ (the
    second value), with the environment they share (the third); ``broker``: APP_BROKER_URL
    (RabbitMQ), else the Redis is the broker."""
    output = work / f"{kind}-{uuid.uuid4().hex[:6]}"
    extra = {"APP_PIPELINE": pipeline, "APP_MAX_QUEUED": "100000", "APP_LLM_PROVIDER": "extractive"}
    prefix = f"bench-{uuid.uuid4().hex[:10]}"
    if kind != "files":
        extra |= {
            "APP_BACKEND": "redis",
            "APP_EXECUTOR": "celery",
            "APP_REDIS_URL": redis_url,
            "APP_REDIS_PREFIX": prefix,
        }
    if broker is not None:
        extra["APP_BROKER_URL"] = broker
    env = server_env(output, **extra, **settings)
    try:
        with contextlib.ExitStack() as stack:
            urls = [
                stack.enter_context(
                    running(SERVICE_APP, env, work / f"{kind}-node{n}.log", "/readyz")
                ).base_url
                for n in range(nodes)
            ]
            for n in range(workers):
                stack.enter_context(
                    celery(
                        env,
                        work / f"{kind}-worker{n}.log",
                        f"w{n}",
                        concurrency=1,
                        timeout=WORKER_READY_S,
                    )
                )
            yield urls, output, env
    finally:
        if kind != "files":
            with contextlib.suppress(redis.RedisError):
                client = redis.Redis.from_url(redis_url)
                keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
                if keys:
                    client.delete(*keys)
                client.close()
        with contextlib.suppress(Exception):
            drop_queue(env)


# ----------------------------------------------------------------------------- 1. runs/s


def runs_per_second(url: str, runs: int, clients: int) -> dict[str, Any]:
    ids = [f"scale-{n:05d}" for n in range(runs)]
    began = time.perf_counter()

    def post(share: list[str]) -> list[int]:
        # One connection per client, kept alive, as a frontend or a load balancer would.
        with httpx.Client(base_url=url, timeout=30) as http:
            return [
                http.post(RUNS, json={"question": "q", "run_id": run_id}).status_code
                for run_id in share
            ]

    with ThreadPoolExecutor(clients) as pool:
        codes = [
            c for batch in pool.map(post, [ids[n::clients] for n in range(clients)]) for c in batch
        ]
    posted = time.perf_counter() - began
    if set(codes) != {202}:
        raise RuntimeError(f"POST answered {sorted(set(codes))}")
    outstanding = set(ids)
    statuses: dict[str, str] = {}
    deadline = time.monotonic() + WAIT_S
    with httpx.Client(base_url=url, timeout=30) as http:
        while outstanding:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(outstanding)} runs not finished after {WAIT_S:g} s")
            for run_id in sorted(outstanding):
                status = http.get(f"{RUNS}/{run_id}/status").json()["status"]
                if status in TERMINAL:
                    statuses[run_id] = status
                    outstanding.discard(run_id)
                else:
                    break  # runs finish roughly in order: look again at this one
            time.sleep(0.01)  # poll interval of a bounded wait
    elapsed = time.perf_counter() - began
    return {
        "runs": runs,
        "seconds": round(elapsed, 3),
        "runs_per_s": round(runs / elapsed, 1),
        "post_seconds": round(posted, 3),
        "completed": sum(1 for s in statuses.values() if s == "completed"),
    }


# ----------------------------------------------------------------------------- 2. latency


def event_latency(post_url: str, follow_url: str, output: Path, events: int) -> dict[str, Any]:
    run_id = f"lat-{uuid.uuid4().hex[:8]}"
    with httpx.Client(timeout=30) as http:
        created = http.post(f"{post_url}{RUNS}", json={"question": "q", "run_id": run_id})
        if created.status_code != 202:
            raise RuntimeError(f"POST answered {created.status_code}: {created.text}")
    latencies: list[float] = []
    ready = threading.Event()
    failure: list[BaseException] = []

    def follow() -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(30, read=60)) as http,
                connect_sse(http, "GET", f"{follow_url}{RUNS}/{run_id}/events") as source,
            ):
                for sse in source.iter_sse():
                    received = time.time()
                    if sse.event != "progress":
                        if sse.event == "status" and json.loads(sse.data)["status"] in TERMINAL:
                            return
                        continue
                    message = json.loads(sse.data)["message"]
                    if message == "ready":
                        ready.set()
                    elif message.startswith("tick "):
                        latencies.append(received - float(message.split()[-1]))
                        if len(latencies) == events:
                            return
        except BaseException as exc:
            failure.append(exc)
            ready.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    if not ready.wait(WAIT_S) or failure:
        raise RuntimeError(f"the stream did not start: {failure}")
    run_dir = output / run_id
    for name, content in (("go-1", f"{events} 0.02 progress"),):
        temporary = run_dir / f".{name}.tmp"
        temporary.write_text(content)
        os.replace(temporary, run_dir / name)  # the pipeline only ever sees a whole file
    reader.join(WAIT_S)
    (run_dir / "done").touch()
    if failure or len(latencies) < events:
        raise RuntimeError(f"got {len(latencies)} of {events} events: {failure}")
    ms = [x * 1000 for x in latencies]
    return {
        "events": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1),
    }


# ----------------------------------------------------------------------------- 3-4. faults

FAULT_SETTINGS = {"APP_HEARTBEAT_S": "0.5", "APP_REQUEUE_AFTER_S": "1"}
FILE_GATED = "tests.api.gated_pipeline:file_gated_pipeline"
OUTAGE_S = 3.0  # longer than three heartbeats


def _until(condition: Any, what: str) -> float:
    """Seconds until ``condition()`` holds (polled every 20 ms, bounded by WAIT_S)."""
    began = time.perf_counter()
    while not condition():
        if time.perf_counter() - began > WAIT_S:
            raise RuntimeError(f"no {what} after {WAIT_S:g} s")
        time.sleep(0.02)  # poll interval of a bounded wait
    return time.perf_counter() - began


def _status(url: str, run_id: str) -> str:
    return str(httpx.get(f"{url}{RUNS}/{run_id}/status", timeout=10).json()["status"])


def _post(url: str) -> str:
    return str(httpx.post(f"{url}{RUNS}", json={"question": "q"}, timeout=10).json()["run_id"])


def lost_message(work: Path, redis_url: str, broker: str | None, kind: str) -> dict[str, Any]:
    """A consumer frozen while it waits on the broker, handed a run's message, then killed;
    two fresh workers: seconds from the kill until the run is running, then completed."""
    with deployment(
        f"lost-{kind}", work, redis_url, FAST_PIPELINE, nodes=1, workers=0, broker=broker,
        **FAULT_SETTINGS,
    ) as (urls, _, env):  # fmt: skip
        frozen = start_celery(env, work / f"lost-{kind}-frozen.log", "frozen")
        wait_log(frozen, " ready.", timeout=WORKER_READY_S)
        frozen.process.send_signal(signal.SIGSTOP)
        run_id = _post(urls[0])
        _until(lambda: queue_length(env) == 0, "the message to leave the queue")
        frozen.kill()
        killed = time.perf_counter()
        with contextlib.ExitStack() as stack:
            for n in range(2):
                log = work / f"lost-{kind}-w{n}.log"
                stack.enter_context(celery(env, log, f"w{n}", timeout=WORKER_READY_S))
            _until(lambda: _status(urls[0], run_id) != "queued", "start")
            running_s = time.perf_counter() - killed
            _until(lambda: _status(urls[0], run_id) == "completed", "completion")
            return {
                "to_running_s": round(running_s, 2),
                "to_completed_s": round(time.perf_counter() - killed, 2),
            }


def _in_flight(urls: list[str], output: Path, cut: Any, restore: Any) -> dict[str, Any]:
    run_id = _post(urls[0])
    _until(lambda: _status(urls[0], run_id) == "running", "start")
    cut()
    time.sleep(OUTAGE_S)  # the outage itself: a duration, not a wait for a state
    restore()
    back = time.perf_counter()
    (output / run_id / "release").touch()
    _until(lambda: _status(urls[0], run_id) in TERMINAL, "end of the run in flight")
    in_flight = time.perf_counter() - back
    if _status(urls[0], run_id) != "completed":
        raise RuntimeError(f"the run in flight ended {_status(urls[0], run_id)}")
    new = _post(urls[0])
    _until(lambda: _status(urls[0], new) == "running", "a new run to start")
    (output / new / "release").touch()
    _until(lambda: _status(urls[0], new) == "completed", "a new run to complete")
    return {
        "in_flight_completed_s": round(in_flight, 2),
        "new_run_completed_s": round(time.perf_counter() - back, 2),
    }


def redis_outage(work: Path) -> dict[str, Any]:
    own = OwnRedis(work / "own-redis")
    own.start()
    try:
        with deployment(
            "outage-redis", work, own.url, FILE_GATED, nodes=2, workers=1, **FAULT_SETTINGS
        ) as (urls, output, _):
            return _in_flight(urls, output, own.stop, own.start)
    finally:
        own.stop()


def rabbitmq_outage(work: Path, redis_url: str, rabbitmq_url: str) -> dict[str, Any]:
    with tcp_proxy("127.0.0.1", 5672) as proxy:
        broker = rabbitmq_url.replace(":5672/", f":{proxy.port}/")
        with deployment(
            "outage-rabbitmq", work, redis_url, FILE_GATED, nodes=2, workers=1, broker=broker,
            **FAULT_SETTINGS,
        ) as (urls, output, _):  # fmt: skip
            return _in_flight(urls, output, proxy.cut, proxy.restore)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rabbitmq-url", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    results: dict[str, Any] = {}
    try:
        for kind, workers, broker in (
            ("files", 0, None),
            ("redis", 2, None),
            ("rabbitmq", 2, args.rabbitmq_url),
        ):
            print(f"[1{kind[0]}] runs/s, {kind}: {args.runs} runs, {args.clients} clients")
            with deployment(
                kind, work, args.redis_url, FAST_PIPELINE, nodes=1, workers=workers, broker=broker
            ) as (urls, _, _):
                results[f"runs_{kind}"] = runs_per_second(urls[0], args.runs, args.clients)
            print(f"    {results[f'runs_{kind}']}")
        for kind, workers in (("files", 0), ("redis", 2)):
            print(f"[2{kind[0]}] event latency, run posted on A, followed on B ({kind})")
            with deployment(
                kind, work, args.redis_url, EVENT_PIPELINE, nodes=2, workers=workers
            ) as (urls, output, _):
                results[f"latency_{kind}"] = event_latency(urls[0], urls[1], output, args.events)
            print(f"    {results[f'latency_{kind}']}")
        for kind, broker in (("redis", None), ("rabbitmq", args.rabbitmq_url)):
            print(f"[3{kind[0]}] a lost message ({kind} broker): consumer frozen, then killed")
            results[f"lost_{kind}"] = lost_message(work, args.redis_url, broker, kind)
            print(f"    {results[f'lost_{kind}']}")
        print("[4r] Redis (state and broker) stopped for 3 s with a run in flight")
        results["outage_redis"] = redis_outage(work)
        print(f"    {results['outage_redis']}")
        print("[4q] RabbitMQ cut for 3 s (a proxy of this benchmark's own) with a run in flight")
        results["outage_rabbitmq"] = rabbitmq_outage(work, args.redis_url, args.rabbitmq_url)
        print(f"    {results['outage_rabbitmq']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = results["runs_redis"]["runs_per_s"] / results["runs_files"]["runs_per_s"]
    results["runs_ratio_redis_to_files"] = round(ratio, 2)
    print("\nsummary")
    print(
        f"  runs/s: files + 2 threads {results['runs_files']['runs_per_s']}, "
        f"redis + 2 Celery workers {results['runs_redis']['runs_per_s']} (x{ratio:.2f})"
    )
    print(
        f"  runs/s through 2 workers: Redis broker {results['runs_redis']['runs_per_s']}, "
        f"RabbitMQ {results['runs_rabbitmq']['runs_per_s']}"
    )
    for kind in ("files", "redis"):
        lat = results[f"latency_{kind}"]
        print(f"  event latency A->B ({kind}): p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms")
    for kind in ("redis", "rabbitmq"):
        lost = results[f"lost_{kind}"]
        print(
            f"  lost message ({kind} broker): running again {lost['to_running_s']} s after the "
            f"consumer died, completed at {lost['to_completed_s']} s"
        )
    for kind in ("redis", "rabbitmq"):
        out = results[f"outage_{kind}"]
        print(
            f"  {kind} back -> the run in flight completed {out['in_flight_completed_s']} s, "
            f"a new run completed {out['new_run_completed_s']} s later"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
