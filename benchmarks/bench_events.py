"""Benchmark Server-Sent Events on real uvicorn servers: fan-out, memory, event latency.

Run by hand (not part of pytest)::

    .venv/bin/python -m benchmarks.bench_events
    .venv/bin/python -m benchmarks.bench_events --json /tmp/bench_events.json

Every server is ``sys.executable -m uvicorn app.api.main:app --host 127.0.0.1 --port <free
port> --workers 1 --log-level warning``, started with the repository as its working
directory, ``APP_BASE_DIR`` = the repository, a temporary ``APP_OUTPUT_DIR``,
``APP_PIPELINE=benchmarks.event_pipeline:emit_on_demand`` (a run that emits events when the
benchmark writes ``output/<run_id>/go-<n>``, each event carrying the ``time.time()`` at which
the pipeline emitted it) and its open-files limit raised to the hard limit. Every server is
terminated at the end (SIGTERM, then SIGKILL after a bound). Only 127.0.0.1 is loaded; every
load is bounded in count and in time, and every run ends by itself (``done`` file).

The subscribers are raw asyncio sockets (uvloop when installed) in this process: each one
sends ``GET /api/v1/runs/<id>/events``, stamps every chunk of bytes with ``time.time()`` as
it arrives, and parses HTTP chunking and SSE only when the traffic has gone quiet, so that
parsing never delays the stamping. The client shares the machine (and its cores) with the
server; its CPU time is reported next to the server's.

1. **Fan-out**: ``--subscribers`` (1,000) subscribers on one uvicorn process, all following
   one running run; ``--triggers`` (5) times, one progress event is asked for, and for each
   subscriber the time from the pipeline emitting it to the subscriber receiving it is
   taken (also from the go file being written, which adds the pipeline's 5 ms poll).
   p50/p99/max over all triggers. Target: p99 < 250 ms, every subscriber gets every event.
2. **Memory per idle subscriber**: the server's VmRSS (``/proc/<pid>/status``) with the run
   running and no subscriber (after a warm-up of a few subscribers), then with the
   subscribers of 1 connected and idle; (delta / count) in KiB. No target: reported.
3. **Event latency in one process**: one subscriber, ``--events`` (200) progress events
   about 25 ms apart; pipeline emit -> client receipt, p50/p99. Target: p99 < 20 ms.
   The same for ``answer_delta`` events (no state file written) is reported alongside.
4. **Across processes**: two servers sharing one ``APP_OUTPUT_DIR``; the run executes on A,
   the subscriber is connected to B, which learns of the events through its watchfiles
   watcher of ``output/``; ``--cross-events`` (100) progress events about 75 ms apart.
   Target: p99 < 300 ms.

The exit status is 0 when every target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx

from benchmarks.common import (
    Server,
    percentile,
    server_env,
    start_server,
    stop_server,
    wait_ready,
)

SERVICE_APP = "app.api.main:app"
EVENT_PIPELINE = "benchmarks.event_pipeline:emit_on_demand"
RUNS = "/api/v1/runs"
QUESTION = "How many battery-electric trucks did Northwind have at the end of 2024?"
TERMINAL = frozenset({"completed", "completed_with_gaps", "failed", "stopped"})

TARGET_FANOUT_P99_MS = 250.0
TARGET_LOCAL_P99_MS = 20.0
TARGET_CROSS_P99_MS = 300.0

NOFILE_WANTED = 65_536
CONNECT_BATCH = 100  # subscribers connecting at once
QUIET_S = 0.03  # parse only after this long without new bytes
FANOUT_WAIT_S = 30.0  # bound on one trigger reaching every subscriber
SETTLE_S = 1.0  # idle time before reading RSS
PAUSE_S = 0.5  # between fan-out triggers

T = TypeVar("T")


# ----------------------------------------------------------------------------- servers


def raise_nofile() -> int:
    """Raise this process's open-files limit (soft) towards the hard limit; the new soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE_WANTED if hard == resource.RLIM_INFINITY else min(NOFILE_WANTED, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    return int(soft)


@contextlib.contextmanager
def running(env: dict[str, str], log_path: Path) -> Iterator[Server]:
    server = start_server(SERVICE_APP, env, log_path, preexec_fn=raise_nofile)
    try:
        wait_ready(server, "/readyz")
        yield server
    finally:
        stop_server(server)


def event_env(output: Path) -> dict[str, str]:
    return server_env(output, APP_PIPELINE=EVENT_PIPELINE, APP_MAX_WORKERS="2")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def start_run(server: Server) -> str:
    response = httpx.post(f"{server.base_url}{RUNS}", json={"question": QUESTION}, timeout=10.0)
    if response.status_code != 202:
        raise RuntimeError(f"POST {RUNS}: {response.status_code} {response.text[:300]}")
    run_id = str(response.json()["run_id"])
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        status = httpx.get(f"{server.base_url}{RUNS}/{run_id}/status", timeout=10.0).json()
        if status["status"] == "running":
            return run_id
        if status["status"] in TERMINAL:
            raise RuntimeError(f"run {run_id} ended at once: {status}\n{server.log()}")
        time.sleep(0.02)
    raise RuntimeError(f"run {run_id} did not start:\n{server.log()}")


def order(
    run_dir: Path, n: int, count: int = 1, interval_s: float = 0.0, kind: str = "progress"
) -> float:
    """Ask the pipeline for events: write go-<n> atomically; time.time() of the rename."""
    temporary = run_dir / f".go-{n}.tmp"
    temporary.write_text(f"{count} {interval_s} {kind}\n", encoding="utf-8")
    stamp = time.time()
    os.rename(temporary, run_dir / f"go-{n}")
    return stamp


def finish_run(run_dir: Path) -> None:
    (run_dir / "done").touch()


# ----------------------------------------------------------------------------- SSE client

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE = re.compile(rb"\r\n|\n|\r")


@dataclass
class Traffic:
    """Shared by every subscriber: when bytes last arrived, how many chunks, how many parses."""

    chunks: int = 0
    last: float = 0.0
    parses: int = 0  # rounds of parsing in wait_until (each one stalls the receive path)


class GcPauses:
    """The client's own garbage-collection pauses (they delay the stamping of arrivals)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []  # generation, seconds
        self._began = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._began))

    def take(self) -> tuple[int, float]:
        """(largest generation collected, total ms) since the last take."""
        pauses, self.pauses = self.pauses, []
        return max((g for g, _ in pauses), default=-1), sum(s for _, s in pauses) * 1000


@dataclass
class Subscriber(asyncio.Protocol):
    """One SSE subscription on a raw socket: bytes are stamped on arrival, parsed later."""

    request: bytes
    traffic: Traffic
    transport: asyncio.Transport | None = None
    pending: list[tuple[float, bytes]] = field(default_factory=list)
    raw: bytes = b""
    body: bytearray = field(default_factory=bytearray)
    status: int | None = None
    chunked: bool = False
    ended: bool = False  # the last chunk of the body arrived
    lost: bool = False  # the connection closed
    ready: bool = False  # received the pipeline's "ready" event: subscribed to live events
    terminal: bool = False  # received the run's terminal status event
    last_id: int = 0
    order_ok: bool = True  # ids 1, 2, 3, ... without gaps or repeats
    events: int = 0
    ticks: dict[str, tuple[float, float]] = field(default_factory=dict)  # label: emit, recv

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.pending.append((now, data))
        self.traffic.chunks += 1
        self.traffic.last = now

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.close()

    # -- parsing, outside the receive path
    def drain(self) -> None:
        pending, self.pending = self.pending, []
        for stamp, data in pending:
            self._feed(stamp, data)

    def _feed(self, stamp: float, data: bytes) -> None:
        self.raw += data
        if self.status is None:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.raw[:end].decode("latin-1").split("\r\n")
            self.status = int(head[0].split()[1])
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in head[1:])
            }
            self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
            self.raw = self.raw[end + 4 :]
        if self.chunked:
            while not self.ended:
                line_end = self.raw.find(b"\r\n")
                if line_end < 0:
                    break
                size = int(self.raw[:line_end].split(b";")[0], 16)
                if size == 0:
                    self.ended = True
                    break
                start = line_end + 2
                if len(self.raw) < start + size + 2:
                    break
                self.body += self.raw[start : start + size]
                self.raw = self.raw[start + size + 2 :]
        else:
            self.body += self.raw
            self.raw = b""
        while match := _EVENT_END.search(self.body):
            block = bytes(self.body[: match.start()])
            del self.body[: match.end()]
            self._event(stamp, block)

    def _event(self, stamp: float, block: bytes) -> None:
        name, data, event_id = "message", [], None
        for line in _LINE.split(block):
            if not line or line.startswith(b":"):
                continue  # a comment (the heartbeat)
            key, _, value = line.partition(b":")
            text = value[1:] if value.startswith(b" ") else value
            if key == b"event":
                name = text.decode()
            elif key == b"data":
                data.append(text.decode())
            elif key == b"id":
                event_id = int(text)
        if not data:
            return
        self.events += 1
        if event_id is not None:
            if event_id != self.last_id + 1:
                self.order_ok = False
            self.last_id = event_id
        payload = json.loads("\n".join(data))
        if name == "status" and payload.get("status") in TERMINAL:
            self.terminal = True
        text = payload.get("message") if name == "progress" else payload.get("text")
        if not isinstance(text, str):
            return
        if text == "ready":
            self.ready = True
        elif text.startswith("tick "):
            _, label, emitted = text.split()
            self.ticks[label] = (float(emitted), stamp)


async def subscribe(port: int, run_id: str, count: int, traffic: Traffic) -> list[Subscriber]:
    """``count`` subscriptions to the run, ``CONNECT_BATCH`` connecting at a time."""
    loop = asyncio.get_running_loop()
    request = (
        f"GET {RUNS}/{run_id}/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    ).encode()
    subscribers: list[Subscriber] = []
    for start in range(0, count, CONNECT_BATCH):
        made = await asyncio.gather(
            *(
                loop.create_connection(lambda: Subscriber(request, traffic), "127.0.0.1", port)
                for _ in range(min(CONNECT_BATCH, count - start))
            )
        )
        subscribers.extend(protocol for _, protocol in made)
    return subscribers


async def wait_until(
    subscribers: list[Subscriber],
    traffic: Traffic,
    done: Callable[[Subscriber], bool],
    timeout_s: float,
) -> bool:
    """Parse what arrived whenever the traffic goes quiet, until ``done`` holds for all."""
    deadline = time.monotonic() + timeout_s
    left = list(subscribers)
    while True:
        await asyncio.sleep(QUIET_S)
        late = time.monotonic() > deadline
        if time.time() - traffic.last < QUIET_S and not late:
            continue
        traffic.parses += 1
        for subscriber in left:
            subscriber.drain()
        left = [s for s in left if not done(s)]
        if not left:
            return True
        if late:
            return False


def has_ticks(labels: list[str]) -> Callable[[Subscriber], bool]:
    return lambda subscriber: all(label in subscriber.ticks for label in labels)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (as uvicorn does), else on asyncio's loop."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def close_all(subscribers: list[Subscriber]) -> None:
    for subscriber in subscribers:
        subscriber.close()


def summary_ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "min_ms": round(min(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


# ----------------------------------------------------------------------------- 1 + 2. fan-out


async def _fanout(
    args: argparse.Namespace, server: Server, run_id: str, run_dir: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    pid = server.process.pid
    traffic = Traffic()
    result: dict[str, Any] = {"subscribers": args.subscribers, "triggers": args.triggers}

    # Warm-up: a few subscribers come and go, so that lazy imports and the replay thread
    # pool exist before the baseline is read.
    warm = await subscribe(server.port, run_id, 10, traffic)
    if not await wait_until(warm, traffic, lambda s: s.ready, 30.0):
        raise RuntimeError(f"warm-up subscribers never became ready\n{server.log()}")
    close_all(warm)
    await asyncio.sleep(SETTLE_S)
    rss_before = [rss_kib(pid)]
    for _ in range(2):
        await asyncio.sleep(0.25)
        rss_before.append(rss_kib(pid))

    began = time.perf_counter()
    subscribers = await subscribe(server.port, run_id, args.subscribers, traffic)
    connected_s = time.perf_counter() - began
    all_ready = await wait_until(subscribers, traffic, lambda s: s.ready, 60.0)
    ready_s = time.perf_counter() - began
    if not all_ready:
        statuses = {s.status for s in subscribers}
        raise RuntimeError(
            f"only {sum(s.ready for s in subscribers)} of {len(subscribers)} subscribers "
            f"became ready (HTTP statuses {statuses})\n{server.log()}"
        )
    await asyncio.sleep(SETTLE_S)
    rss_with = [rss_kib(pid)]
    for _ in range(2):
        await asyncio.sleep(0.25)
        rss_with.append(rss_kib(pid))
    before, with_subs = statistics.median(rss_before), statistics.median(rss_with)
    result["connect_s"] = round(connected_s, 3)
    result["all_ready_s"] = round(ready_s, 3)
    memory = {
        "rss_idle_kib": before,
        "rss_with_subscribers_kib": with_subs,
        "subscribers": len(subscribers),
        "per_subscriber_kib": round((with_subs - before) / len(subscribers), 2),
    }

    from_emit: list[float] = []
    from_trigger: list[float] = []
    rounds: list[dict[str, Any]] = []
    with GcPauses() as gc_pauses:
        for n in range(1, args.triggers + 1):
            label = f"{n}.1"
            server_cpu, client_cpu = cpu_s(pid), time.process_time()
            wall, parses = time.perf_counter(), traffic.parses
            gc_pauses.take()
            triggered = order(run_dir, n)
            reached = await wait_until(subscribers, traffic, has_ticks([label]), FANOUT_WAIT_S)
            wall = time.perf_counter() - wall - QUIET_S  # the last quiet wait is no work
            server_cpu, client_cpu = cpu_s(pid) - server_cpu, time.process_time() - client_cpu
            gc_generation, gc_ms = gc_pauses.take()
            got = [s.ticks[label] for s in subscribers if label in s.ticks]
            emit = [recv - emitted for emitted, recv in got]
            trig = [recv - triggered for _, recv in got]
            from_emit += emit
            from_trigger += trig
            stats = summary_ms(emit)
            emitted_after = round((got[0][0] - triggered) * 1000, 2) if got else None
            rounds.append(
                {
                    "trigger": n,
                    "received": len(got),
                    "all_received": reached,
                    "emit_after_trigger_ms": emitted_after,
                    **stats,
                    "server_cpu_ms": round(server_cpu * 1000),
                    "client_cpu_ms": round(client_cpu * 1000),
                    "wall_ms": round(wall * 1000),
                    "client_gc_ms": round(gc_ms, 1),
                    "client_gc_max_generation": gc_generation,
                    "client_parse_rounds": traffic.parses - parses,
                }
            )
            print(
                f"  trigger {n}: {len(got)}/{len(subscribers)} received, p50 {stats['p50_ms']:.1f} "
                f"ms, p99 {stats['p99_ms']:.1f} ms, max {stats['max_ms']:.1f} ms "
                f"(server CPU {server_cpu * 1000:.0f} ms, client CPU {client_cpu * 1000:.0f} ms, "
                f"client GC {gc_ms:.1f} ms, client parse rounds {traffic.parses - parses})",
                flush=True,
            )
            await asyncio.sleep(PAUSE_S)

    finish_run(run_dir)
    closed = await wait_until(subscribers, traffic, lambda s: s.terminal and s.ended, 30.0)
    close_all(subscribers)
    await asyncio.sleep(SETTLE_S)
    memory["rss_after_close_kib"] = rss_kib(pid)
    result.update(
        {
            "from_emit": summary_ms(from_emit),
            "from_trigger_file": summary_ms(from_trigger),
            "rounds": rounds,
            "every_subscriber_every_event": all(r["all_received"] for r in rounds)
            and len(from_emit) == args.triggers * args.subscribers,
            "ids_in_order": all(s.order_ok for s in subscribers),
            "streams_ended_after_terminal_status": sum(s.terminal and s.ended for s in subscribers),
            "all_streams_ended": closed,
        }
    )
    return result, memory


def bench_fanout(args: argparse.Namespace, work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    output = work / "fanout-output"
    print(
        f"[1+2] fan-out: {args.subscribers} subscribers on one uvicorn process, "
        f"{args.triggers} triggers",
        flush=True,
    )
    with running(event_env(output), work / "fanout-server.log") as server:
        run_id = start_run(server)
        return run_async(_fanout(args, server, run_id, output / run_id))


# ----------------------------------------------------------------------------- 3 + 4. latency


async def _series(
    port: int, run_id: str, run_dir: Path, orders: list[tuple[int, float, str]]
) -> tuple[list[dict[str, Any]], bool]:
    """One subscriber on ``port``; each order is (count, interval_s, kind), one go file each."""
    traffic = Traffic()
    (subscriber,) = await subscribe(port, run_id, 1, traffic)
    if not await wait_until([subscriber], traffic, lambda s: s.ready, 30.0):
        raise RuntimeError(f"the subscriber never became ready (HTTP {subscriber.status})")
    series = []
    for n, (count, interval, kind) in enumerate(orders, start=1):
        order(run_dir, n, count, interval, kind)
        labels = [f"{n}.{k}" for k in range(1, count + 1)]
        bound = count * interval * 1.5 + 15.0
        all_in = await wait_until([subscriber], traffic, has_ticks(labels), bound)
        latencies = [
            subscriber.ticks[x][1] - subscriber.ticks[x][0] for x in labels if x in subscriber.ticks
        ]
        series.append(
            {"kind": kind, "events": count, "interval_s": interval, "all_received": all_in}
            | summary_ms(latencies)
        )
    finish_run(run_dir)
    await wait_until([subscriber], traffic, lambda s: s.terminal and s.ended, 15.0)
    subscriber.close()
    return series, subscriber.order_ok


def bench_local(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    output = work / "local-output"
    print(f"[3] event latency in one process: {args.events} events, one subscriber", flush=True)
    with running(event_env(output), work / "local-server.log") as server:
        run_id = start_run(server)
        orders = [(args.events, 0.025, "progress"), (args.events, 0.025, "answer_delta")]
        series, order_ok = run_async(_series(server.port, run_id, output / run_id, orders))
    return {"progress": series[0], "answer_delta": series[1], "ids_in_order": order_ok}


def bench_cross(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    output = work / "cross-output"
    print(
        f"[4] across processes: run on server A, subscriber on server B, "
        f"{args.cross_events} events",
        flush=True,
    )
    env = event_env(output)
    with (
        running(env, work / "cross-a.log") as server_a,
        running(env, work / "cross-b.log") as server_b,
    ):
        run_id = start_run(server_a)
        seen = httpx.get(f"{server_b.base_url}{RUNS}/{run_id}/status", timeout=10.0)
        if seen.status_code != 200:
            raise RuntimeError(f"server B does not see run {run_id}: {seen.status_code}")
        orders = [(args.cross_events, 0.075, "progress")]
        series, order_ok = run_async(_series(server_b.port, run_id, output / run_id, orders))
    return {"progress": series[0], "ids_in_order": order_ok}


# ----------------------------------------------------------------------------- report


def machine_info(nofile: int) -> dict[str, Any]:
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        nproc = os.cpu_count() or 0
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in ("uvicorn", "uvloop", "httptools", "fastapi", "starlette", "sse-starlette"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    versions["watchfiles"] = metadata.version("watchfiles")
    return {
        "nproc": nproc,
        "cpu": model,
        "memory_mib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "open_files_limit": nofile,
        **versions,
    }


def report(machine: dict[str, Any], results: dict[str, Any]) -> tuple[bool, list[str]]:
    fan, mem = results["fanout"], results["memory"]
    local, cross = results["local"], results["cross"]
    checks = {
        "fanout_p99": fan["from_emit"]["p99_ms"] < TARGET_FANOUT_P99_MS,
        "fanout_delivery": fan["every_subscriber_every_event"] and fan["ids_in_order"],
        "local_p99": local["progress"]["p99_ms"] < TARGET_LOCAL_P99_MS
        and local["progress"]["all_received"],
        "cross_p99": cross["progress"]["p99_ms"] < TARGET_CROSS_P99_MS
        and cross["progress"]["all_received"],
    }
    results["checks"] = checks

    def verdict(name: str) -> str:
        return "PASS" if checks[name] else "FAIL"

    def dist(s: dict[str, Any]) -> str:
        return (
            f"p50 {s['p50_ms']:.1f}  p99 {s['p99_ms']:.1f}  max {s['max_ms']:.1f} ms (n={s['n']})"
        )

    server_cpu = statistics.median(r["server_cpu_ms"] for r in fan["rounds"])
    client_cpu = statistics.median(r["client_cpu_ms"] for r in fan["rounds"])
    lines = [
        "",
        "SSE benchmark",
        f"Machine: nproc {machine['nproc']} ({machine['cpu']}), {machine['memory_mib']:,} MiB, "
        f"Python {machine['python']}, uvicorn {machine['uvicorn']} (uvloop {machine['uvloop']}, "
        f"httptools {machine['httptools']}), FastAPI {machine['fastapi']}, Starlette "
        f"{machine['starlette']}, sse-starlette {machine['sse-starlette']}, watchfiles "
        f"{machine['watchfiles']}",
        f"         {machine['platform']}, open files limit {machine['open_files_limit']}",
        "Client: raw asyncio sockets on uvloop, one process on the same "
        f"{machine['nproc']} cores as the server(s)",
        "",
        f"1. fan-out: {fan['subscribers']} subscribers on one uvicorn process (connected in "
        f"{fan['connect_s']:.2f} s, all replayed in {fan['all_ready_s']:.2f} s), "
        f"{fan['triggers']} progress events",
        f"   emit -> received:        {dist(fan['from_emit'])}",
        f"   go file -> received:     {dist(fan['from_trigger_file'])}",
        f"   per event: median server CPU {server_cpu:.0f} ms, client CPU {client_cpu:.0f} ms",
        f"   every subscriber got every event, ids in order: "
        f"{fan['every_subscriber_every_event'] and fan['ids_in_order']}; streams ended after "
        f"the terminal status: {fan['streams_ended_after_terminal_status']}/{fan['subscribers']}",
        "",
        f"2. memory: server VmRSS {mem['rss_idle_kib'] / 1024:.1f} MiB with no subscriber, "
        f"{mem['rss_with_subscribers_kib'] / 1024:.1f} MiB with {mem['subscribers']} idle ones "
        f"-> {mem['per_subscriber_kib']:.1f} KiB per subscriber "
        f"({mem['rss_after_close_kib'] / 1024:.1f} MiB after they closed)",
        "",
        "3. one process, one subscriber, events ~25 ms apart",
        f"   progress:      {dist(local['progress'])}",
        f"   answer_delta:  {dist(local['answer_delta'])}  (no state file written)",
        "",
        "4. across processes (run on A, subscriber on B via the watchfiles watcher), "
        "events ~75 ms apart",
        f"   progress:      {dist(cross['progress'])}",
        "",
        f"{'target':<44} {'result':>12}   verdict",
        f"{'1. fan-out p99 < 250 ms (emit -> received)':<44} "
        f"{fan['from_emit']['p99_ms']:>9.1f} ms   {verdict('fanout_p99')}",
        f"{'1. every subscriber gets every event':<44} "
        f"{fan['every_subscriber_every_event']!s:>12}   {verdict('fanout_delivery')}",
        f"{'2. memory per idle subscriber (no target)':<44} "
        f"{mem['per_subscriber_kib']:>8.1f} KiB   info",
        f"{'3. in-process p99 < 20 ms':<44} "
        f"{local['progress']['p99_ms']:>9.1f} ms   {verdict('local_p99')}",
        f"{'4. across processes p99 < 300 ms':<44} "
        f"{cross['progress']['p99_ms']:>9.1f} ms   {verdict('cross_p99')}",
        "",
        f"overall: {'PASS' if all(checks.values()) else 'FAIL'}",
    ]
    return all(checks.values()), lines


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=1000, help="fan-out subscribers")
    parser.add_argument("--triggers", type=int, default=5, help="fan-out events")
    parser.add_argument("--events", type=int, default=200, help="events, one process")
    parser.add_argument("--cross-events", type=int, default=100, help="events, two processes")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    if min(args.subscribers, args.triggers, args.events, args.cross_events) < 1:
        parser.error("counts must be positive")
    if args.subscribers > 5000 or args.triggers > 50 or max(args.events, args.cross_events) > 2000:
        parser.error("--subscribers <= 5000, --triggers <= 50, --events/--cross-events <= 2000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for key in list(os.environ):  # offline and default settings, whatever the shell says
        if key.startswith("APP_") or key == "OPENAI_API_KEY":
            del os.environ[key]
    nofile = raise_nofile()
    if nofile < args.subscribers + 200:
        print(f"open-files limit {nofile} is too low for {args.subscribers} subscribers")
        return 2
    machine = machine_info(nofile)
    print(
        f"Machine: nproc {machine['nproc']}, Python {machine['python']}, uvicorn "
        f"{machine['uvicorn']}, sse-starlette {machine['sse-starlette']}",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="bench-events-"))
    results: dict[str, Any] = {"machine": machine}
    ok = False
    try:
        results["fanout"], results["memory"] = bench_fanout(args, work)
        results["local"] = bench_local(args, work)
        results["cross"] = bench_cross(args, work)
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
