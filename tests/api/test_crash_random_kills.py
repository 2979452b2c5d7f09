"""Random SIGKILLs of real servers (one or two workers) while clients post and follow runs.

After every restart the output/ folder, /status, the event logs and the list must agree:
no accepted run lost, none stuck queued/running, no id burned (a POST whose 202 never came
leaves the id a run or free), every finished run's events.jsonl ending with the terminal
status that api_state.json and /status give, completed_at never moving once written, no
temp or staging file left, and every event a client saw still in the log with its id and
data. Some kills hit a server while it starts, that is during recovery. Bounded: a fixed
seed, KILLS cycles, every wait with a deadline.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from app.modules.process_identity import process_start
from tests.support.processes import (
    REPO,
    SERVICE_APP,
    ProcessFailed,
    Service,
    clean_env,
    start_uvicorn,
    wait_http,
)

pytestmark = pytest.mark.slow

RUNS = "/api/v1/runs"
KILLS = 14
POSTERS = 4
SEED = 20261207
TERMINAL = {"completed", "completed_with_gaps", "failed", "stopped"}


class Cluster:
    """What the clients did, across every server the test starts and kills."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempted: set[str] = set()
        self.accepted: set[str] = set()
        self.completed_at: dict[str, str] = {}
        self.seen: dict[str, dict[int, tuple[str, Any]]] = {}  # run -> id -> (event, data)


@contextmanager
def _server(output: Path, log: Path, *, workers: int) -> Iterator[Service]:
    env = clean_env(
        APP_BASE_DIR=str(REPO),
        APP_OUTPUT_DIR=str(output),
        APP_PIPELINE="benchmarks.fast_pipeline:answer_at_once",
        APP_MAX_QUEUED="10000",
    )
    server = start_uvicorn(SERVICE_APP, env, log, workers=workers, new_session=True)
    try:
        yield server
    finally:
        server.kill_group()


def _wait_healthy(server: Service) -> None:
    try:
        wait_http(server, "/readyz", timeout=30)
    except ProcessFailed as exc:
        pytest.fail(str(exc))


def _wait_for_log(log: Path, text: str, before: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace")[before:]:
            return
        time.sleep(0.005)  # poll interval: the line the kill waits for
    pytest.fail(f"{text!r} never logged")


def _post_until(base_url: str, cluster: Cluster, prefix: str, stop: threading.Event) -> None:
    with httpx.Client(base_url=base_url, timeout=5) as client:
        for n in range(100_000):
            if stop.is_set():
                return
            run_id = f"{prefix}-{n}"
            with cluster.lock:
                cluster.attempted.add(run_id)
            try:
                response = client.post(RUNS, json={"question": "q?", "run_id": run_id})
            except httpx.HTTPError:
                return  # the server is gone
            if response.status_code == 202:
                with cluster.lock:
                    cluster.accepted.add(run_id)


def _follow(base_url: str, cluster: Cluster, stop: threading.Event) -> None:
    """Follow accepted runs over SSE and remember every event seen."""
    with httpx.Client(base_url=base_url, timeout=5) as client:
        while not stop.is_set():
            with cluster.lock:
                choices = sorted(cluster.accepted)
            if not choices:
                time.sleep(0.01)  # poll interval: nothing to follow yet
                continue
            run_id = random.Random(len(choices)).choice(choices)
            try:
                with connect_sse(client, "GET", f"{RUNS}/{run_id}/events") as source:
                    if source.response.status_code != 200:
                        continue
                    for sse in source.iter_sse():
                        data = json.loads(sse.data)
                        with cluster.lock:
                            cluster.seen.setdefault(run_id, {})[int(sse.id)] = (sse.event, data)
                        if stop.is_set():
                            return
            except httpx.HTTPError:
                return


# write_json_atomic's temp files: .<name>.<pid>-<n>.tmp
_TEMP_FILE = re.compile(r"\..+\.(\d+)-\d+\.tmp")


def _written_now(name: str) -> bool:
    match = _TEMP_FILE.fullmatch(name)
    return match is not None and process_start(int(match.group(1))) is not None


def _check(output: Path, base_url: str, cluster: Cluster) -> None:
    """Every invariant, after a restart and before any new POST."""
    # A temp file of a live process is a write in progress (the restarted server saves its
    # run summary in the background right after start-up), not a leftover; one whose
    # process is gone is what a kill left and start-up must have removed.
    leftovers = [
        p.name for p in output.rglob("*") if p.name.endswith(".tmp") and not _written_now(p.name)
    ]
    leftovers += [
        p.name for p in output.iterdir() if p.name.startswith((".creating-", ".deleting-"))
    ]
    assert leftovers == [], leftovers
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for active in ("queued", "running"):
            stuck = client.get(RUNS, params={"status": active, "limit": 200}).json()["items"]
            assert stuck == [], stuck
        with cluster.lock:
            accepted, attempted = set(cluster.accepted), set(cluster.attempted)
        for run_id in sorted(accepted):
            status = client.get(f"{RUNS}/{run_id}/status")
            assert status.status_code == 200, (run_id, status.text)  # not lost
            body = status.json()
            assert body["status"] in TERMINAL, body
            state = json.loads((output / run_id / "api_state.json").read_text())
            lines = (output / run_id / "events.jsonl").read_text().splitlines()
            events = [json.loads(line) for line in lines if line.strip()]
            last = events[-1]
            assert last["event"] == "status", (run_id, events[-3:])
            for key in ("status", "finish_reason", "completed_at"):
                assert last["data"][key] == state[key] == body[key], (run_id, key, last, state)
            first = cluster.completed_at.setdefault(run_id, body["completed_at"])
            assert body["completed_at"] == first, (run_id, first, body)  # never moves
            logged = {e["id"]: (e["event"], e["data"]) for e in events}
            for number, seen in cluster.seen.get(run_id, {}).items():
                assert logged.get(number) == seen, (run_id, number, seen, logged.get(number))
        for run_id in sorted(attempted - accepted)[:30]:
            # A POST whose 202 never came: a run, or a free id a new POST can take.
            if client.get(f"{RUNS}/{run_id}/status").status_code == 404:
                again = client.post(RUNS, json={"question": "q?", "run_id": run_id})
                assert again.status_code == 202, (run_id, again.text)  # not burned
                with cluster.lock:
                    cluster.accepted.add(run_id)


def test_random_kills_leave_every_run_true(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    output = tmp_path / "output"
    log = tmp_path / "servers.log"
    cluster = Cluster()
    for cycle in range(KILLS):
        workers = 2 if cycle % 3 == 2 else 1
        before = log.stat().st_size if log.exists() else 0
        with _server(output, log, workers=workers) as server:
            base_url = server.base_url
            if cycle % 4 == 3:
                # Killed while it starts: during the recovery of what the last kill left.
                _wait_for_log(log, "Waiting for application startup", before)
                continue
            _wait_healthy(server)
            _check(output, base_url, cluster)
            stop = threading.Event()
            clients = [
                threading.Thread(
                    target=_post_until, args=(base_url, cluster, f"c{cycle}-{i}", stop)
                )
                for i in range(POSTERS)
            ]
            clients.append(threading.Thread(target=_follow, args=(base_url, cluster, stop)))
            for thread in clients:
                thread.start()
            target = len(cluster.accepted) + rng.randint(5, 80)
            deadline = time.monotonic() + 20
            while len(cluster.accepted) < target and time.monotonic() < deadline:
                time.sleep(0.002)  # poll interval: the kill comes after `target` accepts
            server.kill_group()
            stop.set()
            for thread in clients:
                thread.join(timeout=20)
    with _server(output, log, workers=2) as server:
        _wait_healthy(server)
        _check(output, server.base_url, cluster)
    assert len(cluster.accepted) > 200
