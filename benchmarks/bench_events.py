"""Benchmark Server-Sent Events on real uvicorn servers against bare sse-starlette.

Run by hand (not part of pytest)::

    .venv/bin/python -m benchmarks.bench_events                # about 2 minutes
    .venv/bin/python -m benchmarks.bench_events --idle 10000   # about 7 minutes
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

1+2. **Fan-out and memory, against bare sse-starlette**, in ``--rounds`` (3) rounds; each
   round starts a fresh server of each app, alternating which goes first (the machine is
   shared: only figures taken side by side are compared):

   - the service, with one running run of the event pipeline;
   - ``benchmarks.bare_sse_app:app``: sse-starlette's documented usage and nothing more
     (one queue per subscriber, a broadcaster), whose broadcast is triggered and stamped
     the same way (a thread polls the go files, stamps ``time.time()`` and hands the
     event to the loop).

   ``--subscribers`` (1,000) subscribers connect, all reach their ``ready`` event and go
   idle: **memory per idle stream** is the server's VmRSS (``/proc/<pid>/status``, once
   steady) with them minus without them (after a warm-up of a few), / count, in KiB.
   Then ``--triggers`` (5) times one progress event is asked for, and for each subscriber
   the time from its emission to its receipt is taken: **fan-out** p50/p99/max. Then the
   run ends and every stream must end with the final status. Per round: service / bare
   ratios; the report gives each figure beside its reference, and the medians.
   Targets: fan-out p99 service / bare <= 1.2 (and < 250 ms), memory per idle stream
   service / bare <= 1.0, every subscriber gets every event, ids in order.
2b. **``--idle N``** (e.g. 10000; off by default): in each round, each app also holds N
   idle subscribers on its one process for ``--idle-hold`` (20) seconds, past a heartbeat
   at the default APP_SSE_PING_S of 15 s; none may be lost, and all must end with the
   final status; memory per idle stream at N is reported against bare's (target <= 1.0).
   This process then holds N sockets and each server N (open-files limits raised to the
   hard limit; N <= 15,000). The service runs with APP_MAX_SSE_STREAMS above N.
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
from tests.support.processes import clean_env

SERVICE_APP = "app.api.main:app"
BARE_APP = "benchmarks.bare_sse_app:app"
BARE_EVENTS = "/events"
BARE_READY = "/openapi.json"  # the bare app has no route of its own to poll
APPS = ("service", "bare")
EVENT_PIPELINE = "benchmarks.event_pipeline:emit_on_demand"
RUNS = "/api/v1/runs"
QUESTION = "How many battery-electric trucks did Northwind have at the end of 2024?"
TERMINAL = frozenset({"completed", "completed_with_gaps", "failed", "stopped"})

TARGET_FANOUT_P99_MS = 250.0
TARGET_LOCAL_P99_MS = 20.0
TARGET_CROSS_P99_MS = 300.0
TARGET_FANOUT_RATIO = 1.2  # service p99 / bare sse-starlette p99, same client, same run
TARGET_MEMORY_RATIO = 1.0  # service KiB per idle stream / bare sse-starlette's
MAX_IDLE = 15_000  # --idle: bounded, and within the hard open-files limit of this VM

NOFILE_WANTED = 65_536
CONNECT_BATCH = 100  # subscribers connecting at once
QUIET_S = 0.03  # parse only after this long without new bytes
FANOUT_WAIT_S = 30.0  # bound on one trigger reaching every subscriber
READY_WAIT_S = 120.0  # bound on every subscriber having connected and been replayed to
SETTLE_S = 1.0  # idle time before reading RSS
RSS_STEADY_KIB = 64  # three reads within this of each other: RSS has settled
RSS_SETTLE_MAX_S = 15.0  # bound on waiting for it
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
def running(
    env: dict[str, str], log_path: Path, *, app: str = SERVICE_APP, ready: str = "/readyz"
) -> Iterator[Server]:
    server = start_server(app, env, log_path, preexec_fn=raise_nofile)
    try:
        wait_ready(server, ready)
        yield server
    finally:
        stop_server(server)


def event_env(output: Path, **extra: str) -> dict[str, str]:
    return server_env(output, APP_PIPELINE=EVENT_PIPELINE, APP_MAX_WORKERS="2", **extra)


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


def events_path(run_id: str) -> str:
    return f"{RUNS}/{run_id}/events"


async def subscribe(port: int, path: str, count: int, traffic: Traffic) -> list[Subscriber]:
    """``count`` subscriptions to ``path``, ``CONNECT_BATCH`` connecting at a time."""
    loop = asyncio.get_running_loop()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
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


@dataclass
class Target:
    """One app under test: the service, or the bare sse-starlette reference."""

    name: str  # "service" or "bare"
    server: Server
    path: str  # what the subscribers GET
    trigger_dir: Path  # where go-<n> and done are written


@contextlib.contextmanager
def serving(name: str, work: Path, tag: str, max_streams: int) -> Iterator[Target]:
    """A fresh server of ``name`` for one round: the service with one running run of the
    event pipeline, or the bare app with its trigger folder."""
    if name == "service":
        output = work / f"{tag}-output"
        env = event_env(output, APP_MAX_SSE_STREAMS=str(max_streams))
        with running(env, work / f"{tag}.log") as server:
            run_id = start_run(server)
            yield Target(name, server, events_path(run_id), output / run_id)
    else:
        folder = work / tag
        folder.mkdir()
        env = clean_env(BARE_SSE_DIR=str(folder))
        with running(env, work / f"{tag}.log", app=BARE_APP, ready=BARE_READY) as server:
            yield Target(name, server, BARE_EVENTS, folder)


async def _rss_settled(pid: int) -> float:
    """VmRSS once it has stopped moving: the median of the first three reads 0.25 s apart
    that lie within ``RSS_STEADY_KIB`` of each other (a server still importing in a
    thread, as the service's start-up summary does, would otherwise count as streams)."""
    await asyncio.sleep(SETTLE_S)
    reads = [rss_kib(pid)]
    deadline = time.monotonic() + RSS_SETTLE_MAX_S
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        reads.append(rss_kib(pid))
        if len(reads) >= 3 and max(reads[-3:]) - min(reads[-3:]) <= RSS_STEADY_KIB:
            break
    return statistics.median(reads[-3:])


async def _connect_idle(
    target: Target, count: int, traffic: Traffic
) -> tuple[list[Subscriber], dict[str, Any]]:
    """``count`` subscribers, all past their ``ready`` event and idle; the server's memory
    before and with them."""
    server, pid = target.server, target.server.process.pid
    # Warm-up: a few subscribers come and go, so that lazy imports and the replay thread
    # pool exist before the baseline is read.
    warm = await subscribe(server.port, target.path, 10, traffic)
    if not await wait_until(warm, traffic, lambda s: s.ready, 30.0):
        raise RuntimeError(f"{target.name}: warm-up subscribers never became ready\n{server.log()}")
    close_all(warm)
    before = await _rss_settled(pid)

    began = time.perf_counter()
    subscribers = await subscribe(server.port, target.path, count, traffic)
    connected_s = time.perf_counter() - began
    all_ready = await wait_until(subscribers, traffic, lambda s: s.ready, READY_WAIT_S)
    ready_s = time.perf_counter() - began
    if not all_ready:
        statuses = {s.status for s in subscribers}
        close_all(subscribers)
        raise RuntimeError(
            f"{target.name}: only {sum(s.ready for s in subscribers)} of {len(subscribers)} "
            f"subscribers became ready (HTTP statuses {statuses})\n{server.log()}"
        )
    with_subs = await _rss_settled(pid)
    return subscribers, {
        "subscribers": len(subscribers),
        "connect_s": round(connected_s, 3),
        "all_ready_s": round(ready_s, 3),
        "rss_idle_kib": before,
        "rss_with_subscribers_kib": with_subs,
        "per_subscriber_kib": round((with_subs - before) / len(subscribers), 2),
    }


async def _end_streams(
    target: Target, subscribers: list[Subscriber], traffic: Traffic
) -> dict[str, Any]:
    """Write ``done``: every stream must end with the final status; then close them all."""
    finish_run(target.trigger_dir)
    closed = await wait_until(subscribers, traffic, lambda s: s.terminal and s.ended, 60.0)
    close_all(subscribers)
    after = await _rss_settled(target.server.process.pid)
    return {
        "streams_ended_after_terminal_status": sum(s.terminal and s.ended for s in subscribers),
        "all_streams_ended": closed,
        "rss_after_close_kib": after,
    }


async def _fanout(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    pid = target.server.process.pid
    traffic = Traffic()
    subscribers, memory = await _connect_idle(target, args.subscribers, traffic)
    result: dict[str, Any] = {
        "app": target.name,
        "subscribers": args.subscribers,
        "triggers": args.triggers,
        "memory": memory,
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
            triggered = order(target.trigger_dir, n)
            reached = await wait_until(subscribers, traffic, has_ticks([label]), FANOUT_WAIT_S)
            wall = time.perf_counter() - wall - QUIET_S  # the last quiet wait is no work
            server_cpu, client_cpu = cpu_s(pid) - server_cpu, time.process_time() - client_cpu
            gc_generation, gc_ms = gc_pauses.take()
            got = [s.ticks[label] for s in subscribers if label in s.ticks]
            emit = [recv - emitted for emitted, recv in got]
            trig = [recv - triggered for _, recv in got]
            from_emit += emit
            from_trigger += trig
            stats = summary_ms(emit) if emit else {"p50_ms": -1.0, "p99_ms": -1.0, "max_ms": -1.0}
            rounds.append(
                {
                    "trigger": n,
                    "received": len(got),
                    "all_received": reached,
                    **stats,
                    "server_cpu_ms": round(server_cpu * 1000),
                    "client_cpu_ms": round(client_cpu * 1000),
                    "wall_ms": round(wall * 1000),
                    "client_gc_ms": round(gc_ms, 1),
                    "client_gc_max_generation": gc_generation,
                    "client_parse_rounds": traffic.parses - parses,
                }
            )
            if args.verbose:
                print(
                    f"    trigger {n}: {len(got)}/{len(subscribers)} received, p50 "
                    f"{stats['p50_ms']:.1f} ms, p99 {stats['p99_ms']:.1f} ms, max "
                    f"{stats['max_ms']:.1f} ms (server CPU {server_cpu * 1000:.0f} ms, client "
                    f"CPU {client_cpu * 1000:.0f} ms, client GC {gc_ms:.1f} ms)",
                    flush=True,
                )
            await asyncio.sleep(PAUSE_S)
    ended = await _end_streams(target, subscribers, traffic)
    memory["rss_after_close_kib"] = ended.pop("rss_after_close_kib")
    result.update(
        {
            "from_emit": summary_ms(from_emit) if from_emit else None,
            "from_trigger_file": summary_ms(from_trigger) if from_trigger else None,
            "server_cpu_ms_per_event": statistics.median(r["server_cpu_ms"] for r in rounds),
            "client_cpu_ms_per_event": statistics.median(r["client_cpu_ms"] for r in rounds),
            "rounds": rounds,
            "every_subscriber_every_event": all(r["all_received"] for r in rounds)
            and len(from_emit) == args.triggers * args.subscribers,
            "ids_in_order": all(s.order_ok for s in subscribers),
            **ended,
        }
    )
    return result


async def _idle(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    """``--idle`` subscribers held for ``--idle-hold`` seconds (past a heartbeat), then
    ended by the run's end."""
    traffic = Traffic()
    subscribers, memory = await _connect_idle(target, args.idle, traffic)
    await asyncio.sleep(args.idle_hold)
    lost = sum(s.lost or s.ended for s in subscribers)
    held_rss = rss_kib(target.server.process.pid)
    ended = await _end_streams(target, subscribers, traffic)
    return {
        "app": target.name,
        **memory,
        "hold_s": args.idle_hold,
        "lost_during_hold": lost,
        "rss_after_hold_kib": held_rss,
        "held": lost == 0,
        "ids_in_order": all(s.order_ok for s in subscribers),
        **ended,
    }


def round_label(number: int, first: str) -> str:
    """``2 (b)``: round 2, the bare app went first."""
    return f"{number} ({first[0]})"


def _show_fanout(result: dict[str, Any]) -> str:
    mem, emit = result["memory"], result["from_emit"]
    p99 = f"{emit['p99_ms']:.1f}" if emit else "-"
    return (
        f"  {result['app']:<7}  fan-out p99 {p99} ms (server CPU "
        f"{result['server_cpu_ms_per_event']:.0f} ms/event), "
        f"{mem['per_subscriber_kib']:.1f} KiB per idle stream, every event to every "
        f"subscriber: {result['every_subscriber_every_event'] and result['ids_in_order']}"
    )


def _show_idle(result: dict[str, Any]) -> str:
    return (
        f"  {result['app']:<7}  {result['subscribers']:,} idle streams, all ready in "
        f"{result['all_ready_s']:.1f} s, {result['per_subscriber_kib']:.1f} KiB each, "
        f"held {result['hold_s']:.0f} s: {result['held']}, ended with the final status: "
        f"{result['streams_ended_after_terminal_status']:,}"
    )


def bench_rounds(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """``--rounds`` rounds, each: the service and the bare app (alternating which goes
    first), fan-out and memory at ``--subscribers``, then ``--idle`` if asked for."""
    max_streams = max(args.subscribers, args.idle) + 100  # warm-up subscribers
    rounds = []
    for r in range(1, args.rounds + 1):
        order_of = APPS if r % 2 else APPS[::-1]
        print(f"[1+2] round {r}: fan-out to {args.subscribers} subscribers", flush=True)
        one: dict[str, Any] = {"round": r, "first": order_of[0], "fanout": {}, "idle": {}}
        for name in order_of:
            with serving(name, work, f"{name}-fanout-{r}", max_streams) as target:
                one["fanout"][name] = run_async(_fanout(args, target))
            print(_show_fanout(one["fanout"][name]), flush=True)
        if args.idle:
            print(f"[1+2] round {r}: {args.idle:,} idle subscribers", flush=True)
            for name in order_of:
                with serving(name, work, f"{name}-idle-{r}", max_streams) as target:
                    one["idle"][name] = run_async(_idle(args, target))
                print(_show_idle(one["idle"][name]), flush=True)
        rounds.append(one)
    return rounds


def compare(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per round, the service against the bare app (ratios); medians over the rounds."""
    rows = []
    for one in rounds:
        fan = one["fanout"]
        service, bare = fan["service"], fan["bare"]
        row = {
            "round": one["round"],
            "fanout_p99_ms": [service["from_emit"]["p99_ms"], bare["from_emit"]["p99_ms"]],
            "memory_kib": [
                service["memory"]["per_subscriber_kib"],
                bare["memory"]["per_subscriber_kib"],
            ],
        }
        if one["idle"]:
            row["idle_memory_kib"] = [
                one["idle"]["service"]["per_subscriber_kib"],
                one["idle"]["bare"]["per_subscriber_kib"],
            ]
        for key in list(row):
            if key != "round":
                service_value, bare_value = row[key]
                row[key.replace("_ms", "").replace("_kib", "") + "_ratio"] = round(
                    service_value / bare_value if bare_value > 0 else float("inf"), 3
                )
        rows.append(row)
    medians: dict[str, Any] = {}
    for key in rows[0]:
        if key == "round":
            continue
        if key.endswith("_ratio"):
            medians[key] = round(statistics.median(row[key] for row in rows), 3)
        else:
            medians[key] = [
                round(statistics.median(row[key][i] for row in rows), 2) for i in (0, 1)
            ]
    return {"rounds": rows, "medians": medians}


# ----------------------------------------------------------------------------- 3 + 4. latency


async def _series(
    port: int, run_id: str, run_dir: Path, orders: list[tuple[int, float, str]]
) -> tuple[list[dict[str, Any]], bool]:
    """One subscriber on ``port``; each order is (count, interval_s, kind), one go file each."""
    traffic = Traffic()
    (subscriber,) = await subscribe(port, events_path(run_id), 1, traffic)
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


def report(
    args: argparse.Namespace, machine: dict[str, Any], results: dict[str, Any]
) -> tuple[bool, list[str]]:
    rounds, compared = results["rounds"], results["compared"]
    medians = compared["medians"]
    local, cross = results["local"], results["cross"]
    fanouts = [one["fanout"][name] for one in rounds for name in APPS]
    idles = [one["idle"][name] for one in rounds for name in APPS if one["idle"]]
    checks = {
        "fanout_ratio": medians["fanout_p99_ratio"] <= TARGET_FANOUT_RATIO,
        "fanout_p99": medians["fanout_p99_ms"][0] < TARGET_FANOUT_P99_MS,
        "fanout_delivery": all(
            f["every_subscriber_every_event"] and f["ids_in_order"] and f["all_streams_ended"]
            for f in fanouts
        ),
        "memory_ratio": medians["memory_ratio"] <= TARGET_MEMORY_RATIO,
        "local_p99": local["progress"]["p99_ms"] < TARGET_LOCAL_P99_MS
        and local["progress"]["all_received"],
        "cross_p99": cross["progress"]["p99_ms"] < TARGET_CROSS_P99_MS
        and cross["progress"]["all_received"],
    }
    if idles:
        checks["idle_held"] = all(i["held"] and i["all_streams_ended"] for i in idles)
        checks["idle_memory_ratio"] = medians["idle_memory_ratio"] <= TARGET_MEMORY_RATIO
    results["checks"] = checks

    def verdict(name: str) -> str:
        return "PASS" if checks[name] else "FAIL"

    def dist(s: dict[str, Any]) -> str:
        return (
            f"p50 {s['p50_ms']:.1f}  p99 {s['p99_ms']:.1f}  max {s['max_ms']:.1f} ms (n={s['n']})"
        )

    def pair(values: list[float], ratio: float, unit: str) -> str:
        return f"{values[0]:>9.1f} {values[1]:>9.1f} {unit:<3} x{ratio:<6.2f}"

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
        f"{machine['nproc']} cores as the server(s); the same client for both apps",
        "",
        f"1+2. fan-out of one event to {args.subscribers:,} subscribers ({args.triggers} events "
        f"a round; p99 of pipeline emit -> received) and memory per idle stream (server VmRSS "
        f"with them minus without, / {args.subscribers:,}): the service against bare "
        f"sse-starlette ({BARE_APP}), {len(rounds)} rounds, each on fresh servers, "
        "alternating which goes first",
        f"   {'round':<8} {'fan-out p99: service':>20} {'bare':>9}     ratio   "
        f"{'KiB/stream: service':>20} {'bare':>9}     ratio",
    ]
    for row, one in zip(compared["rounds"], rounds, strict=True):
        lines.append(
            f"   {round_label(row['round'], one['first']):<8} "
            f"{pair(row['fanout_p99_ms'], row['fanout_p99_ratio'], 'ms')}    "
            f"{pair(row['memory_kib'], row['memory_ratio'], 'KiB')}"
        )
    lines.append(
        f"   {'median':<8} {pair(medians['fanout_p99_ms'], medians['fanout_p99_ratio'], 'ms')}"
        f"    {pair(medians['memory_kib'], medians['memory_ratio'], 'KiB')}"
    )
    for name in APPS:
        per_app = [one["fanout"][name] for one in rounds]
        lines.append(
            f"   {name}: emit -> received over all rounds: "
            f"p50 {statistics.median(f['from_emit']['p50_ms'] for f in per_app):.1f} ms "
            f"(median of rounds); server CPU per event "
            f"{statistics.median(f['server_cpu_ms_per_event'] for f in per_app):.0f} ms, "
            f"client CPU {statistics.median(f['client_cpu_ms_per_event'] for f in per_app):.0f} "
            f"ms; streams ended with the final status: "
            f"{min(f['streams_ended_after_terminal_status'] for f in per_app):,}/"
            f"{args.subscribers:,} (lowest round)"
        )
    if idles:
        lines += [
            "",
            f"2b. {args.idle:,} idle subscribers on one process, held {args.idle_hold:.0f} s, "
            "then ended by the run's end",
            f"   {'round':<8} {'KiB/stream: service':>20} {'bare':>9}     ratio   held "
            "(service, bare)   all ready in (service, bare)",
        ]
        for row, one in zip(compared["rounds"], rounds, strict=True):
            service, bare = one["idle"]["service"], one["idle"]["bare"]
            lines.append(
                f"   {round_label(row['round'], one['first']):<8} "
                f"{pair(row['idle_memory_kib'], row['idle_memory_ratio'], 'KiB')}  "
                f"{service['held']!s:>5} {bare['held']!s:>5}     "
                f"{service['all_ready_s']:.1f} s, {bare['all_ready_s']:.1f} s"
            )
        lines.append(
            f"   {'median':<8} "
            f"{pair(medians['idle_memory_kib'], medians['idle_memory_ratio'], 'KiB')}"
        )
    lines += [
        "",
        "3. one process, one subscriber, events ~25 ms apart",
        f"   progress:      {dist(local['progress'])}",
        f"   answer_delta:  {dist(local['answer_delta'])}  (no state file written)",
        "",
        "4. across processes (run on A, subscriber on B via the watchfiles watcher), "
        "events ~75 ms apart",
        f"   progress:      {dist(cross['progress'])}",
        "",
        f"{'target (medians of the rounds)':<52} {'result':>12}   verdict",
        f"{f'1. fan-out p99, service / bare <= {TARGET_FANOUT_RATIO}':<52} "
        f"{medians['fanout_p99_ratio']:>10.2f} x   {verdict('fanout_ratio')}",
        f"{'1. fan-out p99 < 250 ms (emit -> received)':<52} "
        f"{medians['fanout_p99_ms'][0]:>9.1f} ms   {verdict('fanout_p99')}",
        f"{'1. every subscriber gets every event, streams end':<52} "
        f"{checks['fanout_delivery']!s:>12}   {verdict('fanout_delivery')}",
        f"{f'2. memory per idle stream, service / bare <= {TARGET_MEMORY_RATIO}':<52} "
        f"{medians['memory_ratio']:>10.2f} x   {verdict('memory_ratio')}",
    ]
    if idles:
        lines += [
            f"{f'2b. {args.idle:,} idle streams held on one process':<52} "
            f"{checks['idle_held']!s:>12}   {verdict('idle_held')}",
            f"{f'2b. memory per idle stream at {args.idle:,}, service / bare':<52} "
            f"{medians['idle_memory_ratio']:>10.2f} x   {verdict('idle_memory_ratio')}",
        ]
    lines += [
        f"{'3. in-process p99 < 20 ms':<52} "
        f"{local['progress']['p99_ms']:>9.1f} ms   {verdict('local_p99')}",
        f"{'4. across processes p99 < 300 ms':<52} "
        f"{cross['progress']['p99_ms']:>9.1f} ms   {verdict('cross_p99')}",
        "",
        f"overall: {'PASS' if all(checks.values()) else 'FAIL'}",
    ]
    return all(checks.values()), lines


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=1000, help="fan-out subscribers")
    parser.add_argument("--triggers", type=int, default=5, help="fan-out events per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument(
        "--idle", type=int, default=0, help="also hold this many idle subscribers (10000)"
    )
    parser.add_argument(
        "--idle-hold", type=float, default=20.0, help="seconds the idle subscribers are held"
    )
    parser.add_argument("--events", type=int, default=200, help="events, one process")
    parser.add_argument("--cross-events", type=int, default=100, help="events, two processes")
    parser.add_argument("--verbose", action="store_true", help="print every fan-out trigger")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    counts = (args.subscribers, args.triggers, args.rounds, args.events, args.cross_events)
    if min(counts) < 1 or args.idle < 0 or not 0 <= args.idle_hold <= 120:
        parser.error("counts must be positive, --idle >= 0, 0 <= --idle-hold <= 120")
    if (
        args.subscribers > 5000
        or args.idle > MAX_IDLE
        or args.triggers > 50
        or args.rounds > 9
        or max(args.events, args.cross_events) > 2000
    ):
        parser.error(
            f"--subscribers <= 5000, --idle <= {MAX_IDLE}, --triggers <= 50, --rounds <= 9, "
            "--events/--cross-events <= 2000"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for key in list(os.environ):  # offline and default settings, whatever the shell says
        if key.startswith("APP_") or key == "OPENAI_API_KEY":
            del os.environ[key]
    nofile = raise_nofile()
    # This process holds one socket per subscriber; each server raises its own limit.
    wanted = max(args.subscribers, args.idle) + 200
    if nofile < wanted:
        print(f"open-files limit {nofile} is too low for {wanted - 200} subscribers")
        return 2
    machine = machine_info(nofile)
    print(
        f"Machine: nproc {machine['nproc']}, Python {machine['python']}, uvicorn "
        f"{machine['uvicorn']}, sse-starlette {machine['sse-starlette']}",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="bench-events-"))
    results: dict[str, Any] = {"machine": machine, "args": {**vars(args), "json": None}}
    ok = False
    try:
        results["rounds"] = bench_rounds(args, work)
        results["compared"] = compare(results["rounds"])
        results["local"] = bench_local(args, work)
        results["cross"] = bench_cross(args, work)
        ok, lines = report(args, machine, results)
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
