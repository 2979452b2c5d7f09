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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
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
from tests.support.processes import celery

SERVICE_APP = "app.api.main:app"
FAST_PIPELINE = "benchmarks.fast_pipeline:answer_at_once"
EVENT_PIPELINE = "benchmarks.event_pipeline:emit_on_demand"
RUNS = "/api/v1/runs"
TERMINAL = frozenset({"completed", "completed_with_gaps", "failed", "stopped"})
WAIT_S = 300.0  # bound on any one phase
WORKER_READY_S = 60.0


@contextlib.contextmanager
def deployment(
    kind: str, work: Path, redis_url: str, pipeline: str, *, nodes: int, workers: int
) -> Iterator[tuple[list[str], Path]]:
    """API nodes (their base URLs) and, for redis, Celery workers over one output/ (the
    second value)."""
    output = work / f"{kind}-{uuid.uuid4().hex[:6]}"
    extra = {"APP_PIPELINE": pipeline, "APP_MAX_QUEUED": "100000", "APP_LLM_PROVIDER": "extractive"}
    prefix = f"bench-{uuid.uuid4().hex[:10]}"
    if kind == "redis":
        extra |= {
            "APP_BACKEND": "redis",
            "APP_EXECUTOR": "celery",
            "APP_REDIS_URL": redis_url,
            "APP_REDIS_PREFIX": prefix,
        }
    env = server_env(output, **extra)
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
            yield urls, output
    finally:
        if kind == "redis":
            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    results: dict[str, Any] = {}
    try:
        for kind, workers in (("files", 0), ("redis", 2)):
            print(f"[1{kind[0]}] runs/s, {kind}: {args.runs} runs, {args.clients} clients")
            with deployment(
                kind, work, args.redis_url, FAST_PIPELINE, nodes=1, workers=workers
            ) as (urls, _):
                results[f"runs_{kind}"] = runs_per_second(urls[0], args.runs, args.clients)
            print(f"    {results[f'runs_{kind}']}")
        for kind, workers in (("files", 0), ("redis", 2)):
            print(f"[2{kind[0]}] event latency, run posted on A, followed on B ({kind})")
            with deployment(
                kind, work, args.redis_url, EVENT_PIPELINE, nodes=2, workers=workers
            ) as (urls, output):
                results[f"latency_{kind}"] = event_latency(urls[0], urls[1], output, args.events)
            print(f"    {results[f'latency_{kind}']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = results["runs_redis"]["runs_per_s"] / results["runs_files"]["runs_per_s"]
    results["runs_ratio_redis_to_files"] = round(ratio, 2)
    print("\nsummary")
    print(
        f"  runs/s: files + 2 threads {results['runs_files']['runs_per_s']}, "
        f"redis + 2 Celery workers {results['runs_redis']['runs_per_s']} (x{ratio:.2f})"
    )
    for kind in ("files", "redis"):
        lat = results[f"latency_{kind}"]
        print(f"  event latency A->B ({kind}): p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
