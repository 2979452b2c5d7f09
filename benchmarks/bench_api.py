"""Benchmark the HTTP API on real uvicorn servers: POST latency, status throughput, start-up.

Run by hand (not part of pytest)::

    .venv/bin/python -m benchmarks.bench_api
    .venv/bin/python -m benchmarks.bench_api --json /tmp/bench_api.json

Every server is ``sys.executable -m uvicorn <app> --host 127.0.0.1 --port <free port>
--workers <--workers, 1> --log-level warning`` (the bare endpoint too, so that the ratios
compare like with like), started with the repository as its working directory,
``APP_BASE_DIR`` = the repository and an ``APP_OUTPUT_DIR`` in a temporary folder (under
``--work-dir`` when given); every server is terminated at the end (SIGTERM, then SIGKILL
after a bound). Only 127.0.0.1 is loaded; every load is bounded in count or in time.

1. **POST under a full queue**: ``APP_PIPELINE=benchmarks.stall_pipeline:
   wait_until_stopped`` (runs never finish by themselves), ``APP_MAX_WORKERS=2``,
   ``APP_MAX_QUEUED=100000``, and beside it the bare FastAPI POST (benchmarks/bare_app.py:
   the same body model, validated, a constant answer, no disk). ``--fill`` runs (300) are
   posted first so that hundreds wait; then ``--rounds`` (3) rounds, the service and the
   bare endpoint alternated in each (bare first in even rounds): ``--creates`` (500)
   sequential POSTs on one keep-alive http.client connection (median; target <= 2.5 ms),
   then ``wrk -t2 -c<clients> -d<--wrk-duration>s --latency -s benchmarks/post.lua``
   (p99; target < 20 ms, no answer other than 202). The figures judged are the medians of
   the rounds, each printed with the bare one of the same round. Last, ``--clients`` (32)
   concurrent httpx.AsyncClient tasks post ``--posts`` (2,000) more, a cross-check through
   a real client library (its own event loop tops out near 200-300 POST/s on these two
   cores, so its latency is mostly its own queueing).
2. **Status throughput**: ``--runs`` (10,000) finished runs are written into output/ before
   the server starts (``api_state.json`` built from the store's own ``RunState.to_json()``,
   plus ``final.md`` and ``context_bundle.json``); one of them has a ``--big-mb`` (50) MB
   final.md. ``wrk -t2 -c64 -d10s`` against a bare FastAPI endpoint (benchmarks/bare_app.py),
   then GET /api/v1/runs/<id>/status of a normal run and of the big run. Targets: status
   >= 0.6 x bare; the big run ~1 x the normal one.
3. **Start-up**: with the same 10,000 runs, the time from starting the process to the first
   200 from /readyz (polled every 10 ms, bounded), median of ``--starts`` (3). Target: < 3 s.

The exit status is 0 when every target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from app.api.services.run_store import STATE_FILE, RunState
from app.config import AppConfig
from benchmarks.common import (
    percentile,
    running,
    server_env,
    start_server,
    stop_server,
    wait_ready,
)
from tests.support.processes import REPO as REPO_ROOT

MB = 1_000_000
SERVICE_APP = "app.api.main:app"
BARE_APP = "benchmarks.bare_app:app"
STALL_PIPELINE = "benchmarks.stall_pipeline:wait_until_stopped"
POST_LUA = Path(__file__).resolve().parent / "post.lua"
RUNS = "/api/v1/runs"

TARGET_POST_P99_MS = 20.0  # wrk, 32 clients, hundreds queued, one worker process
TARGET_CREATE_MS = 2.5  # sequential create, median
TARGET_STATUS_RATIO = 0.9
TARGET_BIG_RATIO = 0.9  # "as fast as the others": within 10 % of the normal run
TARGET_START_S = 3.0

WORKERS = 1  # uvicorn --workers for every server; main() sets it from --workers
QUESTION = "How many battery-electric trucks did Northwind have at the end of 2024?"


# ----------------------------------------------------------------------------- 1. POST


async def _post_many(
    base: str, count: int, clients: int, *, measure: bool
) -> tuple[list[float], dict[int, int], list[str]]:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    run_ids: list[str] = []
    remaining = iter(range(count))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=30.0, limits=limits) as client:

        async def worker() -> None:
            for _ in remaining:  # shared iterator: the tasks split the count between them
                began = time.perf_counter()
                response = await client.post(RUNS, json={"question": QUESTION})
                elapsed = time.perf_counter() - began
                codes[response.status_code] = codes.get(response.status_code, 0) + 1
                if response.status_code == 202:
                    run_ids.append(response.json()["run_id"])
                if measure:
                    latencies.append(elapsed)

        await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, codes, run_ids


def sequential_creates(port: int, path: str, count: int, warm_up: int = 50) -> dict[str, Any]:
    """``count`` POSTs one after the other on one keep-alive connection (after ``warm_up``
    not counted): the latency a lone client sees. http.client, not httpx: the client's own
    cost per request is then ~0.1 ms instead of ~0.3 ms, on the same two cores."""
    body = json.dumps({"question": QUESTION}).encode()
    headers = {"content-type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies: list[float] = []
    codes: dict[int, int] = {}
    try:
        for i in range(warm_up + count):
            began = time.perf_counter()
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            response.read()
            elapsed = time.perf_counter() - began
            codes[response.status] = codes.get(response.status, 0) + 1
            if i >= warm_up:
                latencies.append(elapsed * 1000)
    finally:
        connection.close()
    return {
        "median_ms": round(statistics.median(latencies), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "codes": {str(k): v for k, v in sorted(codes.items())},
    }


def bench_post(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Sequential creates and POST p99 under wrk, each beside the bare POST endpoint in the
    same run: ``--rounds`` rounds, service and bare alternated in each, medians of rounds."""
    output = work / "post-output"
    env = server_env(
        output,
        APP_PIPELINE=STALL_PIPELINE,
        APP_MAX_WORKERS="2",
        APP_MAX_QUEUED="100000",
    )
    print(
        f"[1] POST: {args.fill} runs to fill the queue, then {args.rounds} rounds of "
        f"{args.creates} sequential creates and wrk -c{args.clients} -d{args.wrk_duration}s, "
        "each beside the bare POST; then "
        f"{args.posts} POSTs from {args.clients} concurrent httpx clients",
        flush=True,
    )
    rounds: list[dict[str, Any]] = []
    with (
        running(SERVICE_APP, env, work / "post-server.log", "/readyz", workers=WORKERS) as server,
        running(
            BARE_APP, server_env(work / "bare-output"), work / "bare.log", "/bare", workers=WORKERS
        ) as bare,
    ):
        fill_began = time.perf_counter()
        _, fill_codes, fill_ids = asyncio.run(
            _post_many(server.base_url, args.fill, 8, measure=False)
        )
        fill_s = time.perf_counter() - fill_began
        if fill_codes != {202: args.fill}:
            raise RuntimeError(f"filling the queue failed: {fill_codes}\n{server.log()}")
        statuses = {
            run_id: httpx.get(f"{server.base_url}{RUNS}/{run_id}/status").json()["status"]
            for run_id in (fill_ids[0], fill_ids[-1])
        }
        for number in range(1, args.rounds + 1):
            # Alternated, the bare endpoint first in even rounds: a drift in the machine's
            # load then weighs on both sides alike.
            order = ("service", "bare") if number % 2 else ("bare", "service")
            row: dict[str, Any] = {}
            for side in order:
                port, path = (server.port, RUNS) if side == "service" else (bare.port, "/bare")
                row[f"{side}_sequential"] = sequential_creates(port, path, args.creates)
            for side in order:
                url = f"{server.base_url}{RUNS}" if side == "service" else f"{bare.base_url}/bare"
                row[f"{side}_wrk"] = run_wrk(
                    url,
                    duration_s=args.wrk_duration,
                    threads=2,
                    connections=args.clients,
                    script=POST_LUA,
                )
            rounds.append(row)
            print(
                f"  round {number}: sequential create {row['service_sequential']['median_ms']:.2f}"
                f" ms (bare {row['bare_sequential']['median_ms']:.2f} ms); wrk -c{args.clients} "
                f"p99 {row['service_wrk'].get('p99_ms', math.inf):.1f} ms, "
                f"{row['service_wrk']['requests_per_s']:,.0f} POST/s "
                f"(bare {row['bare_wrk'].get('p99_ms', math.inf):.1f} ms, "
                f"{row['bare_wrk']['requests_per_s']:,.0f}/s)",
                flush=True,
            )
        began = time.perf_counter()
        latencies, codes, _ = asyncio.run(
            _post_many(server.base_url, args.posts, args.clients, measure=True)
        )
        wall_s = time.perf_counter() - began
        waiting = httpx.get(f"{server.base_url}{RUNS}", params={"status": "queued", "limit": 1})
        queued_after = waiting.status_code == 200 and bool(waiting.json()["items"])
        stop_s = stop_server(server)  # records every queued run as stopped
    ms = [x * 1000 for x in latencies]

    def median_of(key: str, field: str) -> float:
        return round(float(statistics.median(r[key].get(field, math.inf) for r in rounds)), 3)

    return {
        "fill_runs": args.fill,
        "fill_s": round(fill_s, 3),
        "oldest_and_newest_fill_status": list(statuses.values()),
        "rounds": rounds,
        "creates_per_round": args.creates,
        "sequential_median_ms": median_of("service_sequential", "median_ms"),
        "bare_sequential_median_ms": median_of("bare_sequential", "median_ms"),
        "wrk_p99_ms": median_of("service_wrk", "p99_ms"),
        "bare_wrk_p99_ms": median_of("bare_wrk", "p99_ms"),
        "wrk_posts_per_s": median_of("service_wrk", "requests_per_s"),
        "bare_wrk_posts_per_s": median_of("bare_wrk", "requests_per_s"),
        "posts": args.posts,
        "clients": args.clients,
        "codes": {str(k): v for k, v in sorted(codes.items())},
        "wall_s": round(wall_s, 3),
        "posts_per_s": round(args.posts / wall_s, 1),
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
        "runs_still_queued_after": queued_after,
        "server_stop_s": round(stop_s, 2),
    }


# ----------------------------------------------------------------------------- run fixtures


def _run_id(i: int) -> str:
    return f"20260101_{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}_{i:06x}"


def write_runs(output: Path, count: int, big_index: int, big_bytes: int) -> dict[str, Any]:
    """``count`` finished runs in ``output``, as the store would have left them."""
    config = AppConfig(base_dir=REPO_ROOT, output_dir=output)
    output.mkdir(parents=True, exist_ok=True)
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    answer = (
        "Northwind had **412 battery-electric trucks** at the end of 2024 [1], up from 268 a "
        "year earlier [2].\n\n## Sources\n\n1. northwind/fleet-report-2024.md, Fleet, "
        "lines 12-30\n2. northwind/annual-report-2023.md, Transport, lines 40-52\n"
    )
    for i in range(count):
        run_id = _run_id(i)
        run_dir = output / run_id
        run_dir.mkdir()
        stamp = (epoch + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        final = run_dir / "final.md"
        bundle = run_dir / "context_bundle.json"
        if i == big_index:
            paragraph = (
                "Northwind's fleet report lists every depot, vehicle class and charging site; "
                "this paragraph stands for a very long answer. [1]\n\n"
            )
            text = paragraph * (big_bytes // len(paragraph) + 1)
            final.write_text(text[:big_bytes], encoding="utf-8")
        else:
            final.write_text(answer, encoding="utf-8")
        bundle.write_text(
            json.dumps(
                {
                    "run_id": run_id,
                    "question": QUESTION,
                    "markdown_path": "documents",
                    "created_at": stamp,
                    "plan": [{"id": 1, "text": QUESTION}],
                    "evidence": [],
                    "sql": [],
                    "citations": [],
                    "invalid_citations": [],
                    "gaps": [],
                    "engine": {"writer": "extractive"},
                    "timings": {},
                    "warnings": [],
                },
                ensure_ascii=False,
                indent=2,
            ),
            encoding="utf-8",
        )
        state = RunState(
            run_id=run_id,
            status="completed",
            question=QUESTION,
            created_at=stamp,
            created_ns=int((epoch + timedelta(seconds=i)).timestamp() * 1e9),
            started_at=stamp,
            completed_at=stamp,
            finish_reason="answered",
            stage="save",
            message="Saving the answer and its evidence",
            step=6,
            total_steps=6,
            final_output_path=config.relative(final),
            context_bundle_path=config.relative(bundle),
            owner=None,
        )
        # What write_json_atomic writes, without the fsyncs.
        (run_dir / STATE_FILE).write_bytes(
            json.dumps(state.to_json(), ensure_ascii=False, indent=2).encode("utf-8")
        )
    return {"runs": count, "normal_run": _run_id(1), "big_run": _run_id(big_index)}


# ----------------------------------------------------------------------------- 2. wrk

_WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_WRK_ERRORS = re.compile(r"Socket errors:\s+(.*)")
_WRK_LATENCY = re.compile(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)")
_WRK_TOTAL = re.compile(r"(\d+) requests in")


def _wrk_ms(text: str) -> float:
    """A wrk duration ("812.00us", "54.21ms", "1.02s") in milliseconds."""
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(
    url: str,
    *,
    duration_s: int,
    threads: int,
    connections: int,
    script: Path | None = None,
) -> dict[str, Any]:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 60, check=True
    )
    out = done.stdout
    rate = _WRK_RATE.search(out)
    if rate is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}\n{done.stderr}")
    non2xx = _WRK_NON2XX.search(out)
    errors = _WRK_ERRORS.search(out)
    latency = _WRK_LATENCY.search(out)
    total = _WRK_TOTAL.search(out)
    percentiles = {
        f"p{pct}_ms": round(_wrk_ms(found.group(1)), 2)
        for pct in (50, 90, 99)
        if (found := re.search(rf"^\s+{pct}%\s+(\S+)", out, re.MULTILINE))
    }
    return {
        "command": " ".join(command),
        "requests_per_s": float(rate.group(1)),
        **percentiles,
        "requests": int(total.group(1)) if total else None,
        "latency_avg": latency.group(1) if latency else None,
        "latency_max": latency.group(3) if latency else None,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else None,
    }


def bench_status(args: argparse.Namespace, work: Path, runs: dict[str, Any]) -> dict[str, Any]:
    output = work / "status-output"
    env = server_env(output)
    print(
        f"[2] status throughput: wrk -t2 -c64 -d{args.wrk_duration}s, {runs['runs']} runs "
        "in output/",
        flush=True,
    )
    wrk = {"duration_s": args.wrk_duration, "threads": 2, "connections": 64}
    warm = {**wrk, "duration_s": 2}
    results: dict[str, Any] = {}
    with (
        running(
            BARE_APP, server_env(work / "bare-output"), work / "bare.log", "/bare", workers=WORKERS
        ) as bare,
        running(
            SERVICE_APP, env, work / "status-server.log", "/readyz", workers=WORKERS
        ) as service,
    ):
        targets = {
            "bare": f"{bare.base_url}/bare",
            "status_normal": f"{service.base_url}{RUNS}/{runs['normal_run']}/status",
            "status_big": f"{service.base_url}{RUNS}/{runs['big_run']}/status",
        }
        for name, url in targets.items():
            check = httpx.get(url)
            if check.status_code != 200:
                raise RuntimeError(f"{url}: {check.status_code} {check.text[:300]}")
            run_wrk(url, **warm)  # warm-up, not counted
            results[name] = run_wrk(url, **wrk)
            results[name]["body"] = check.json()
            print(f"  {name:<14} {results[name]['requests_per_s']:>10,.0f} req/s", flush=True)
    bare_rate = results["bare"]["requests_per_s"]
    for name in ("status_normal", "status_big"):
        results[name]["ratio_to_bare"] = round(results[name]["requests_per_s"] / bare_rate, 3)
    results["big_to_normal"] = round(
        results["status_big"]["requests_per_s"] / results["status_normal"]["requests_per_s"], 3
    )
    return results


# ----------------------------------------------------------------------------- 3. start-up


def bench_startup(args: argparse.Namespace, work: Path, runs: dict[str, Any]) -> dict[str, Any]:
    output = work / "status-output"
    env = server_env(output)
    print(f"[3] start-up to the first 200 from /readyz, {runs['runs']} runs, {args.starts} starts")
    seconds: list[float] = []
    stops: list[float] = []
    for attempt in range(args.starts):
        server = start_server(SERVICE_APP, env, work / f"start-{attempt}.log", workers=WORKERS)
        try:
            seconds.append(wait_ready(server, "/readyz"))
        finally:
            stops.append(stop_server(server))
        print(f"  start {attempt + 1}: {seconds[-1]:.3f} s", flush=True)
    return {
        "runs": runs["runs"],
        "starts_s": [round(s, 3) for s in seconds],
        "median_s": round(statistics.median(seconds), 3),
        "stop_s": [round(s, 3) for s in stops],
    }


# ----------------------------------------------------------------------------- report


def machine_info() -> dict[str, Any]:
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        nproc = os.cpu_count() or 0
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return {
        "nproc": nproc,
        "python": platform.python_version(),
        "uvicorn": metadata.version("uvicorn"),
        "fastapi": metadata.version("fastapi"),
        "starlette": metadata.version("starlette"),
        "pydantic": metadata.version("pydantic"),
        "httpx": metadata.version("httpx"),
        "wrk": (wrk.stdout or wrk.stderr).split("[")[0].strip(),
        "platform": platform.platform(),
    }


def _post_row(label: str, row: dict[str, Any]) -> str:
    service, bare = row["service_wrk"], row["bare_wrk"]
    errors = f"   non-2xx {service['non_2xx']}" if "non_2xx" in service else ""
    return (
        f"   {label:<6} {row['service_sequential']['median_ms']:>8.2f} ms "
        f"({row['bare_sequential']['median_ms']:.2f} ms)"
        f"{service.get('p99_ms', math.inf):>17.1f} ms ({bare.get('p99_ms', math.inf):.1f} ms)"
        f"{service['requests_per_s']:>12,.0f} ({bare['requests_per_s']:,.0f}){errors}"
    )


def report(machine: dict[str, Any], results: dict[str, Any]) -> tuple[bool, list[str]]:
    post, status, start = results["post"], results["status"], results["startup"]
    checks = {
        "create": post["sequential_median_ms"] <= TARGET_CREATE_MS
        and all(
            r["service_sequential"]["codes"] == {"202": post["creates_per_round"] + 50}
            for r in post["rounds"]
        ),
        "post_p99": post["wrk_p99_ms"] < TARGET_POST_P99_MS
        and all(r["service_wrk"]["non_2xx"] == 0 for r in post["rounds"])
        and post["codes"] == {"202": post["posts"]},
        "status_normal": status["status_normal"]["ratio_to_bare"] >= TARGET_STATUS_RATIO,
        "status_big": status["status_big"]["ratio_to_bare"] >= TARGET_STATUS_RATIO,
        "big_vs_normal": status["big_to_normal"] >= TARGET_BIG_RATIO,
        "startup": start["median_s"] < TARGET_START_S,
    }
    results["checks"] = checks

    def verdict(name: str) -> str:
        return "PASS" if checks[name] else "FAIL"

    lines = [
        "",
        "API benchmark",
        f"Machine: nproc {machine['nproc']}, Python {machine['python']}, uvicorn "
        f"{machine['uvicorn']}, FastAPI {machine['fastapi']}, Starlette {machine['starlette']}, "
        f"pydantic {machine['pydantic']}, {machine['wrk']}",
        f"         {machine['platform']}",
        f"uvicorn --workers {results['workers']} for every server; "
        f"output/ folders under {results['work_dir']}",
        "",
        f"1. POST {RUNS}, {post['fill_runs']} runs queued first "
        f"({'/'.join(post['oldest_and_newest_fill_status'])}); beside the bare FastAPI POST "
        "(same body model, no disk), alternated, in the same run",
        f"   round    sequential create median (bare)    wrk -c{post['clients']} p99 (bare)"
        "       POST/s (bare)",
        *(_post_row(str(i), r) for i, r in enumerate(post["rounds"], 1)),
        _post_row(
            "median",
            {
                "service_sequential": {"median_ms": post["sequential_median_ms"]},
                "bare_sequential": {"median_ms": post["bare_sequential_median_ms"]},
                "service_wrk": {
                    "p99_ms": post["wrk_p99_ms"],
                    "requests_per_s": post["wrk_posts_per_s"],
                },
                "bare_wrk": {
                    "p99_ms": post["bare_wrk_p99_ms"],
                    "requests_per_s": post["bare_wrk_posts_per_s"],
                },
            },
        ),
        f"   sequential create median (target <= {TARGET_CREATE_MS:g} ms)  {verdict('create')}; "
        f"POST p99, {post['clients']} clients (target < {TARGET_POST_P99_MS:g} ms)  "
        f"{verdict('post_p99')}",
        f"   httpx cross-check, {post['posts']} POSTs from {post['clients']} clients: codes "
        f"{post['codes']}, {post['posts_per_s']:,.0f} POST/s, p50 {post['p50_ms']:.1f} ms, "
        f"p99 {post['p99_ms']:.1f} ms, max {post['max_ms']:.1f} ms",
        f"   the server then took {post['server_stop_s']:.1f} s to stop (recording the queued "
        "runs stopped)",
        "",
        f"2. GET status, wrk -t2 -c64 -d{status['bare']['command'].split('-d')[1].split()[0]}, "
        f"{results['runs']['runs']:,} runs in output/",
    ]
    rows = [
        ("bare FastAPI /bare", status["bare"], None),
        ("status, normal run", status["status_normal"], "status_normal"),
        (f"status, {results['runs']['big_mb']:g} MB run", status["status_big"], "status_big"),
    ]
    for label, row, check in rows:
        ratio = row.get("ratio_to_bare", 1.0)
        extra = f"non-2xx {row['non_2xx']}" + (
            f", socket errors {row['socket_errors']}" if row["socket_errors"] else ""
        )
        lines.append(
            f"   {label:<22} {row['requests_per_s']:>9,.0f} req/s   x{ratio:.2f} of bare   "
            f"avg latency {row['latency_avg']}   {extra}" + (f"  {verdict(check)}" if check else "")
        )
    lines += [
        f"   (target: status >= {TARGET_STATUS_RATIO:g} x bare)",
        f"   {results['runs']['big_mb']:g} MB run / normal run: x{status['big_to_normal']:.2f}"
        f"   (target ~1, >= {TARGET_BIG_RATIO:g})  {verdict('big_vs_normal')}",
        "",
        f"3. start-up to first 200 from /readyz with {start['runs']:,} runs: starts "
        f"{', '.join(f'{s:.2f}' for s in start['starts_s'])} s, median {start['median_s']:.2f} s"
        f"   (target < {TARGET_START_S:g} s)  {verdict('startup')}",
        "",
        f"overall: {'PASS' if all(checks.values()) else 'FAIL'}",
    ]
    return all(checks.values()), lines


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--fill", type=int, default=300, help="runs queued before measuring")
    parser.add_argument("--posts", type=int, default=2000, help="httpx cross-check POSTs")
    parser.add_argument("--creates", type=int, default=500, help="sequential creates a round")
    parser.add_argument("--rounds", type=int, default=3, help="alternated POST rounds")
    parser.add_argument("--clients", type=int, default=32, help="concurrent POST clients")
    parser.add_argument("--runs", type=int, default=10_000, help="finished runs in output/")
    parser.add_argument("--big-mb", type=float, default=50.0, help="final.md of the big run")
    parser.add_argument("--wrk-duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--starts", type=int, default=3, help="server starts to time")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn --workers, every server")
    parser.add_argument(
        "--work-dir", type=Path, help="where the temporary output/ folders go (default: $TMPDIR)"
    )
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    if (
        min(args.fill, args.posts, args.clients, args.runs, args.wrk_duration, args.starts) < 1
        or min(args.creates, args.rounds) < 1
    ):
        parser.error("counts and durations must be positive")
    if args.runs < 2:
        parser.error("--runs must be at least 2")
    if not 1 <= args.wrk_duration <= 60 or args.posts > 100_000 or args.starts > 10:
        parser.error("--wrk-duration <= 60, --posts <= 100000, --starts <= 10")
    if args.creates > 100_000 or args.rounds > 9:
        parser.error("--creates <= 100000, --rounds <= 9")
    if not 1 <= args.workers <= 8:
        parser.error("--workers must be 1..8")
    return args


def main(argv: list[str] | None = None) -> int:
    global WORKERS  # noqa: PLW0603 - one setting for every server this run starts
    args = parse_args(argv)
    WORKERS = args.workers
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get update && apt-get install -y wrk", file=sys.stderr)
        return 2
    for key in list(os.environ):  # offline and default settings, whatever the shell says
        if key.startswith("APP_") or key == "OPENAI_API_KEY":
            del os.environ[key]
    machine = machine_info()
    print(
        f"Machine: nproc {machine['nproc']}, Python {machine['python']}, uvicorn "
        f"{machine['uvicorn']}, FastAPI {machine['fastapi']}",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="bench-api-", dir=args.work_dir))
    results: dict[str, Any] = {"machine": machine, "workers": args.workers, "work_dir": str(work)}
    ok = False
    try:
        results["post"] = bench_post(args, work)
        print(
            f"  medians: sequential create {results['post']['sequential_median_ms']} ms, "
            f"wrk p99 {results['post']['wrk_p99_ms']} ms",
            flush=True,
        )
        print(f"writing {args.runs:,} runs (one with a {args.big_mb:g} MB final.md) ...")
        began = time.perf_counter()
        runs = write_runs(work / "status-output", args.runs, args.runs // 2, int(args.big_mb * MB))
        runs["big_mb"] = args.big_mb
        runs["write_s"] = round(time.perf_counter() - began, 2)
        results["runs"] = runs
        print(f"  done in {runs['write_s']} s", flush=True)
        results["startup"] = bench_startup(args, work, runs)
        results["status"] = bench_status(args, work, runs)
        ok, lines = report(machine, results)
        results["pass"] = ok
        print("\n".join(lines), flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
            print(f"figures written to {args.json}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
