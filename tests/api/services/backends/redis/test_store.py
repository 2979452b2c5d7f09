"""RedisRunStore against the real Redis: atomic claims and transitions, events, list, delete."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
import redis

from app.api.services.backends.redis.store import RedisRunStore
from app.api.services.backends.redis.stream import RedisRunStream
from app.api.services.errors import (
    IllegalTransition,
    InvalidRequest,
    QueueFull,
    RunActive,
    RunAlreadyExists,
    RunNotFound,
    StoreUnavailable,
)
from app.api.services.idempotency import submit_once
from app.api.services.run_store import RunOptions, RunState
from app.config import AppConfig
from tests.api.redis_support import new_prefix

pytestmark = pytest.mark.anyio


def options(question: str = "How many trucks?") -> RunOptions:
    return RunOptions(question=question)


def finish(store: RedisRunStore, run_id: str) -> None:
    store.transition(run_id, "running")
    store.transition(run_id, "completed", finish_reason="answered")


def test_twenty_concurrent_creates_of_one_id_accept_exactly_one(store: RedisRunStore) -> None:
    # Each thread has its own store (its own connections), as two API nodes would.
    stores = [RedisRunStore(store.config) for _ in range(20)]
    barrier = threading.Barrier(20)

    def create(each: RedisRunStore) -> str:
        barrier.wait(timeout=10)
        try:
            each.create("dup", options())
        except RunAlreadyExists:
            return "409"
        return "202"

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(create, stores))
    assert sorted(outcomes).count("202") == 1
    assert outcomes.count("409") == 19
    assert store.count() == 1
    assert store.count_by_status()["queued"] == 1
    assert [e.id for e in store.read_events("dup")] == [1]


def test_competing_transitions_move_a_run_once(store: RedisRunStore) -> None:
    store.create("r", options())
    store.transition("r", "running")
    stores = [RedisRunStore(store.config) for _ in range(10)]
    barrier = threading.Barrier(10)

    def end(pair: tuple[int, RedisRunStore]) -> str | None:
        index, each = pair
        barrier.wait(timeout=10)
        target = ("completed", "answered") if index % 2 else ("stopped", "cancelled")
        moved = each.try_transition("r", target[0], finish_reason=target[1])
        return moved.status if moved else None

    with ThreadPoolExecutor(10) as pool:
        results = [r for r in pool.map(end, enumerate(stores)) if r is not None]
    assert len(results) == 1
    assert store.get("r").status == results[0]
    statuses = [e.data["status"] for e in store.read_events("r")]
    assert statuses == ["queued", "running", results[0]]
    counts = store.count_by_status()
    assert counts[results[0]] == 1
    assert sum(counts.values()) == 1


def test_illegal_and_unknown_transitions_raise(store: RedisRunStore) -> None:
    store.create("r", options())
    with pytest.raises(IllegalTransition):
        store.transition("r", "completed", finish_reason="answered")  # not from queued
    with pytest.raises(IllegalTransition):
        store.transition("r", "running", expect=frozenset({"running"}))
    with pytest.raises(RunNotFound):
        store.transition("nope", "running")
    assert store.get("r").status == "queued"


def test_events_are_numbered_without_gaps_whoever_appends(store: RedisRunStore) -> None:
    running(store, "r", "a")
    others = [RedisRunStore(store.config) for _ in range(4)]

    def write(pair: tuple[int, RedisRunStore]) -> None:
        index, each = pair
        for step in range(25):
            if index % 2:
                each.append_delta("r", f"{index}-{step} ", attempt="a")
            else:
                each.progress("r", stage=f"s{index}", message="m", step=step, total=25)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, enumerate(others)))
    store.transition("r", "completed", finish_reason="answered")
    events = store.read_events("r")
    assert [e.id for e in events] == list(range(1, 104))  # queued, running, 100, completed
    assert events[-1].data["status"] == "completed"
    # Per writer, its events keep their order.
    deltas = [e.data["text"] for e in events if e.event == "answer_delta"]
    assert [d for d in deltas if d.startswith("1-")] == [f"1-{s} " for s in range(25)]
    # After the end, nothing more is appended.
    store.append_delta("r", "late", attempt="a")
    store.progress("r", stage="late", message="m", step=1, total=1)
    assert len(store.read_events("r")) == 103
    assert [e.id for e in store.read_events("r", after=100)] == [101, 102, 103]


def test_a_finished_run_keeps_its_events_and_state_on_disk(store: RedisRunStore) -> None:
    running(store, "r", "a")
    store.append_delta("r", "Hello", attempt="a")
    store.transition("r", "completed", finish_reason="answered")
    run_dir = store.root / "r"
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [1, 2, 3, 4]
    saved = json.loads((run_dir / "api_state.json").read_text())
    assert saved["status"] == "completed"
    assert saved["run_id"] == "r"


def test_list_pages_newest_first_with_a_status_filter(store: RedisRunStore) -> None:
    ids = [f"run-{n:03d}" for n in range(450)]
    for run_id in ids:
        store.create(run_id, options())
    for run_id in ids[::3]:
        finish(store, run_id)
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = store.list_runs(limit=100, cursor=cursor)
        seen += [s.run_id for s in page]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    done, cursor = store.list_runs(limit=200, status="completed")
    assert [s.run_id for s in done] == list(reversed(ids[::3]))
    assert cursor is None
    with pytest.raises(InvalidRequest):
        store.list_runs(limit=10, cursor="not-a-cursor")


def test_delete_removes_a_finished_run_and_refuses_an_active_one(
    store: RedisRunStore, client: redis.Redis
) -> None:
    store.create("active", options())
    with pytest.raises(RunActive):
        store.delete("active")
    store.create("done", options())
    finish(store, "done")
    assert (store.root / "done").is_dir()
    store.delete("done")
    with pytest.raises(RunNotFound):
        store.get("done")
    with pytest.raises(RunNotFound):
        store.delete("done")
    assert not (store.root / "done").exists()
    assert list(client.scan_iter(match=f"{store.prefix}:*:done")) == []
    assert store.count() == 1
    assert store.count_by_status()["completed"] == 0


def test_retention_removes_only_old_finished_runs(store: RedisRunStore) -> None:
    store.create("old", options())
    finish(store, "old")
    store.create("active", options())
    later = datetime.now(UTC) + timedelta(days=1)
    assert store.remove_expired(older_than=later) == ["old"]
    assert store.get("active").status == "queued"


def test_a_damaged_hash_fails_only_its_own_run(store: RedisRunStore, client: redis.Redis) -> None:
    store.create("good", options())
    store.create("bad", options())
    client.hset(f"{store.prefix}:run:bad", "status", '"exploded"')
    bad = store.get("bad")
    assert bad.status == "failed"
    assert bad.error is not None
    assert bad.error["code"] == "state_unreadable"
    assert store.get("good").status == "queued"
    assert {s.run_id for s in store.list_runs(limit=10)[0]} == {"good", "bad"}


def running(store: RedisRunStore, run_id: str, attempt: str) -> None:
    store.create(run_id, options())
    store.transition(run_id, "running", owner={"worker": "w", "attempt": attempt})


def test_a_run_whose_heartbeat_expired_is_lost(store: RedisRunStore) -> None:
    running(store, "alive", "a1")
    running(store, "gone", "g1")
    store.redis.delete(store.key("hb", "gone"))  # its worker stopped beating
    assert store.lost_runs() == ["gone"]
    assert store.beat("alive", "a1")
    finished = store.try_transition("alive", "completed", finish_reason="answered")
    assert finished is not None
    assert store.lost_runs() == ["gone"]
    assert not store.redis.exists(store.key("hb", "alive"))
    assert not store.beat("alive", "a1")  # a finished run gets no heartbeat back


def test_a_worker_that_lost_its_run_cannot_write_into_it(store: RedisRunStore) -> None:
    running(store, "r", "first")
    # The sweeper gives the run up; the same id is used again after a delete.
    store.transition(
        "r", "failed", finish_reason="interrupted", error={"code": "c", "message": "m"}
    )
    assert store.stop_requested("r", "first") == "lost"
    assert not store.beat("r", "first")
    store.delete("r")
    running(store, "r", "second")
    before = [e.id for e in store.read_events("r")]
    # The old attempt writes nothing into the new run...
    store.append_delta("r", "stale", attempt="first")
    store.progress("r", stage="old", message="m", step=1, total=1, attempt="first")
    assert store.try_transition("r", "completed", attempt="first", finish_reason="answered") is None
    assert [e.id for e in store.read_events("r")] == before
    assert store.stop_requested("r", "first") == "lost"
    # ...while the new one does.
    assert store.stop_requested("r", "second") is None
    store.append_delta("r", "fresh", attempt="second")
    assert store.read_events("r")[-1].data["text"] == "fresh"
    assert store.try_transition("r", "completed", attempt="second", finish_reason="answered")


def test_a_cancel_request_is_kept_only_for_a_running_run(store: RedisRunStore) -> None:
    store.create("queued", options())
    assert not store.request_cancel("queued")
    running(store, "r", "a")
    assert store.request_cancel("r")
    assert store.stop_requested("r", "a") == "cancelled"
    store.transition("r", "stopped", finish_reason="cancelled")
    assert not store.redis.exists(store.key("cancel", "r"))  # gone with the run's end
    assert not store.request_cancel("r")
    assert not store.redis.exists(store.key("cancel", "r"))


def test_an_id_whose_folder_exists_is_taken(store: RedisRunStore) -> None:
    (store.root / "cli-run").mkdir()
    (store.root / "cli-run" / "final.md").write_text("an older answer")
    with pytest.raises(RunAlreadyExists):
        store.create("cli-run", options())
    with pytest.raises(RunNotFound):
        store.get("cli-run")
    assert (store.root / "cli-run" / "final.md").read_text() == "an older answer"


def test_deleting_a_run_keeps_a_claim_that_names_another(store: RedisRunStore) -> None:
    keyed = RunOptions(question="q", idempotency_key="K", request_hash="h")
    store.create("first", keyed)
    finish(store, "first")
    store.redis.set(store.claims._key("K"), "second")  # the key now names a later run
    store.delete("first")
    assert store.claims.claimed_run("K") == "second"


async def test_the_stream_reader_waits_for_the_next_event(store: RedisRunStore) -> None:
    store.create("r", options())
    assert await store.alast_event_id("r") == 1
    assert await store.aread_events("r", after=1, block_ms=50) == []
    store.transition("r", "running")
    events = await store.aread_events("r", after=1, block_ms=1000)
    assert [(e.id, e.data["status"]) for e in events] == [(2, "running")]
    await store.aclose()


def test_an_idempotency_key_gives_one_run_across_stores(store: RedisRunStore) -> None:
    stores = [RedisRunStore(store.config) for _ in range(8)]
    barrier = threading.Barrier(8)
    created: list[str] = []
    lock = threading.Lock()

    def post(pair: tuple[int, RedisRunStore]) -> str:
        index, each = pair
        barrier.wait(timeout=10)

        def submit() -> RunState:
            keyed = RunOptions(question="q", idempotency_key="k-1", request_hash="same")
            state = each.create(f"idem-{index}", keyed)
            with lock:
                created.append(state.run_id)
            return state

        return submit_once(each, key="k-1", request_digest="same", submit=submit).run_id

    with ThreadPoolExecutor(8) as pool:
        run_ids = set(pool.map(post, enumerate(stores)))
    assert len(created) == 1
    assert run_ids == set(created)


def test_backend_and_executor_must_pair(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="APP_BACKEND=redis goes with APP_EXECUTOR=celery"):
        AppConfig(base_dir=tmp_path, backend="redis")
    with pytest.raises(ValueError, match="APP_BACKEND=redis goes with APP_EXECUTOR=celery"):
        AppConfig(base_dir=tmp_path, executor="celery")


def test_an_unreachable_redis_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = AppConfig(
        base_dir=tmp_path,
        backend="redis",
        executor="celery",
        redis_url=f"redis://127.0.0.1:{port}/0",
        redis_prefix=new_prefix(),
    )
    store = RedisRunStore(config)
    with pytest.raises(
        RuntimeError, match=f"Redis at redis://127.0.0.1:{port}/0 cannot be reached"
    ):
        store.open()  # at start-up: the server does not come up half-working
    with pytest.raises(StoreUnavailable) as raised:
        store.get("some-run")  # later: a 503 with Retry-After, not a 500
    assert raised.value.status_code == 503
    assert raised.value.headers["Retry-After"]
    assert not store.is_writable()  # /readyz says not ready


async def _collect(stream: RedisRunStream, run_id: str, after: int) -> list[tuple[int, str]]:
    with anyio.fail_after(10):
        return [(e.id, e.event) async for e in stream.follow(run_id, after)]


async def test_a_run_ending_between_two_reads_loses_no_event(store: RedisRunStore) -> None:
    running(store, "r", "a")
    stream = RedisRunStream(store, block_ms=20)
    real_aget = store.aget
    ended = False

    async def aget_after_the_end(run_id: str) -> RunState:
        # The read has just timed out with nothing new; now the worker saves and ends.
        nonlocal ended
        if not ended:
            ended = True
            store.progress("r", stage="save", message="m", step=2, total=2, attempt="a")
            store.transition("r", "completed", finish_reason="answered", attempt="a")
        return await real_aget(run_id)

    store.aget = aget_after_the_end  # type: ignore[method-assign]
    events = await _collect(stream, "r", after=2)
    assert events == [(3, "progress"), (4, "status")]
    assert stream.open_streams() == 0
    await store.aclose()


async def test_a_last_event_id_beyond_redis_ids_still_gets_the_end(store: RedisRunStore) -> None:
    # Past the end of an active run, as docs/api.md says; only larger than a Redis stream
    # id (64 bits), which Redis refuses as it would a malformed one.
    running(store, "r", "a")
    stream = RedisRunStream(store, block_ms=20, outage_hold_s=0.2)
    async with anyio.create_task_group() as tasks:
        followed: list[list[tuple[int, str]]] = []

        async def follow() -> None:
            followed.append(await _collect(stream, "r", after=10**20))

        tasks.start_soon(follow)
        with anyio.fail_after(10):
            while stream.open_streams() < 1:
                await anyio.sleep(0.01)  # poll interval of a bounded wait: it is following
        store.transition("r", "completed", finish_reason="answered", attempt="a")
    assert [event for _, event in followed[0]] == ["status"]
    await store.aclose()


async def test_open_streams_do_not_starve_status_reads(config: AppConfig) -> None:
    many = config.model_copy(update={"max_sse_streams": 150})
    store = RedisRunStore(many)
    store.open()
    running(store, "r", "a")
    stream = RedisRunStream(store, block_ms=5000)
    followers = 120  # more than redis-py's default pool of 100 connections
    try:
        async with anyio.create_task_group() as tasks:
            for _ in range(followers):
                tasks.start_soon(_collect, stream, "r", 2)
            with anyio.fail_after(10):
                # Until every follower holds a connection in XREAD BLOCK (Redis counts them).
                while int(store.redis.info("clients")["blocked_clients"]) < followers:
                    await anyio.sleep(0.01)  # poll interval of a bounded wait
                assert (await store.aget("r")).status == "running"
                store.transition("r", "completed", finish_reason="answered", attempt="a")
    finally:
        await store.aclose()
    assert stream.open_streams() == 0


def test_a_worker_with_a_pipeline_it_cannot_load_does_not_start(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "APP_BACKEND": "redis",
        "APP_EXECUTOR": "celery",
        "APP_BASE_DIR": str(tmp_path),
        "APP_PIPELINE": "no_such_package.engine:run",
    }
    started = subprocess.run(
        [sys.executable, "-c", "import app.worker"],
        cwd=Path(__file__).resolve().parents[5],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode != 0
    assert "APP_PIPELINE 'no_such_package.engine:run' cannot be loaded" in started.stderr


def test_a_redis_claim_touches_only_its_own_pending_value(store: RedisRunStore) -> None:
    claims = store.claims
    mine = claims.try_claim("K")
    assert mine is not None
    assert claims.try_claim("K") is None
    assert claims.claimed_run("K") is None  # pending
    store.redis.delete(claims._key("K"))  # expired while its request stalled
    theirs = claims.try_claim("K")
    assert theirs is not None
    mine.record("late")  # does not overwrite the newer claim
    mine.abandon()  # nor remove it
    assert claims.try_claim("K") is None
    theirs.record("run-b")
    assert claims.claimed_run("K") == "run-b"
    assert store.redis.ttl(claims._key("K")) == -1  # recorded claims do not expire


def test_concurrent_creates_from_many_nodes_never_exceed_the_queue_bound(
    store: RedisRunStore,
) -> None:
    # Twenty "nodes" (each its own store and connections) post at once into a queue of 5.
    stores = [RedisRunStore(store.config) for _ in range(20)]
    barrier = threading.Barrier(20)

    def create(index: int) -> str:
        barrier.wait(timeout=10)
        try:
            stores[index].create(f"bound-{index}", options(), max_queued=5)
        except QueueFull:
            return "full"
        return "queued"

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(create, range(20)))
    for each in stores:
        each.close()
    assert outcomes.count("queued") == 5, outcomes
    assert store.count_by_status()["queued"] == 5
    # Refused runs leave nothing behind: no key, no folder.
    assert store.count() == 5
    assert len([p for p in store.root.iterdir() if p.name.startswith("bound-")]) == 5


def test_a_status_list_pages_through_that_status_alone_and_survives_an_upgrade(
    store: RedisRunStore, client: redis.Redis
) -> None:
    for n in range(7):
        store.create(f"s{n}", options())
        if n % 2:
            finish(store, f"s{n}")
    store.delete("s5")

    def completed() -> list[str]:
        found, cursor = store.list_runs(limit=2, status="completed")
        ids = [s.run_id for s in found]
        while cursor:
            found, cursor = store.list_runs(limit=2, cursor=cursor, status="completed")
            ids += [s.run_id for s in found]
        return ids

    assert completed() == ["s3", "s1"]
    assert [s.run_id for s in store.list_runs(limit=10, status="queued")[0]] == [
        "s6", "s4", "s2", "s0",
    ]  # fmt: skip
    # Runs recorded before the per-status indexes existed: the next start builds them.
    for key in client.scan_iter(match=store.key("by-status", "*")):
        client.delete(key)
    client.delete(store.key("indexed"))
    assert completed() == []
    reopened = RedisRunStore(store.config)
    reopened.open()
    assert completed() == ["s3", "s1"]
    reopened.close()
