"""Start-up from the summary of finished runs (output/.runs-summary.json).

A start trusts the summary's state of a run only while the run's state file is the file the
summary was made from; whatever else it finds (a missing or damaged summary, a run changed,
deleted or created since, a run left active) it reads from the run's folder, as a start
without a summary does, and the summary is written again.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.api.services import faults
from app.api.services.backends.files import store as run_store_module
from app.api.services.backends.files.store import SUMMARY_FILE, FileRunStore
from app.api.services.run_store import STATE_FILE, RunOptions
from app.config import AppConfig


@pytest.fixture
def config(tmp_path: Path) -> AppConfig:
    return AppConfig(base_dir=tmp_path, output_dir=tmp_path / "output", documents_roots=["."])


@pytest.fixture
def start(config: AppConfig) -> Iterator[Callable[[], FileRunStore]]:
    """A store opened over output/ (a server's start); closed (its stop) at the end."""
    opened: list[FileRunStore] = []

    def open_store() -> FileRunStore:
        store = FileRunStore(config)
        store.open()
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


def _finished(store: FileRunStore, run_id: str, status: str = "completed") -> None:
    store.create(run_id, RunOptions(question=f"question of {run_id}?"))
    store.transition(run_id, "running")
    reason = {"completed": "answered", "failed": "error", "stopped": "cancelled"}[status]
    error = {"code": "x", "message": "it broke"} if status == "failed" else None
    store.transition(run_id, status, finish_reason=reason, error=error)


def _states(store: FileRunStore) -> dict[str, dict[str, object]]:
    runs, _ = store.list_runs(limit=1000)
    return {r.run_id: r.to_json() for r in runs}


def _summary(config: AppConfig) -> dict[str, object]:
    data = json.loads((config.output_root / SUMMARY_FILE).read_bytes())
    return {row[0]: row[3] for row in data["runs"]}


def test_a_stop_records_the_finished_runs_and_the_next_start_reads_no_folder(
    start: Callable[[], FileRunStore], config: AppConfig
) -> None:
    first = start()
    for i, status in enumerate(["completed", "failed", "stopped"]):
        _finished(first, f"r{i}", status)
    first.create("waiting", RunOptions(question="still queued?"))
    before = _states(first)
    first.close()

    assert set(_summary(config)) == {"r0", "r1", "r2"}  # finished runs only
    second = start()
    # The queued run is read from its folder (and, its process gone, would be reconciled).
    assert second.summary_reads == 1
    assert {k: v for k, v in _states(second).items() if k != "waiting"} == {
        k: v for k, v in before.items() if k != "waiting"
    }


def test_a_missing_summary_is_rebuilt_from_the_folders(
    start: Callable[[], FileRunStore], config: AppConfig
) -> None:
    first = start()
    for i in range(5):
        _finished(first, f"r{i}")
    before = _states(first)
    first.close()
    (config.output_root / SUMMARY_FILE).unlink()

    second = start()
    assert second.summary_reads == 5
    assert _states(second) == before
    second.close()  # the rebuilt summary is on disk when the store has closed
    assert set(_summary(config)) == set(before)
    assert start().summary_reads == 0


def test_a_damaged_summary_is_ignored_and_replaced(
    start: Callable[[], FileRunStore], config: AppConfig
) -> None:
    first = start()
    _finished(first, "r1")
    before = _states(first)
    first.close()
    (config.output_root / SUMMARY_FILE).write_bytes(b'{"version": 1, "runs": [["r1", 1')

    second = start()
    assert second.summary_reads == 1
    assert _states(second) == before
    second.close()
    assert set(_summary(config)) == {"r1"}


def test_a_state_file_changed_since_is_read_again(
    start: Callable[[], FileRunStore], config: AppConfig
) -> None:
    first = start()
    _finished(first, "replaced")
    _finished(first, "edited")
    _finished(first, "kept")
    first.close()
    # One file replaced as every write of ours replaces it, one edited in place by hand.
    for run_id in ("replaced", "edited"):
        path = config.output_root / run_id / STATE_FILE
        data = json.loads(path.read_bytes())
        data["question"] = f"changed: {run_id}"
        if run_id == "replaced":
            tmp = path.with_name("tmp.json")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, path)
        else:
            stat = path.stat()
            path.write_text(json.dumps(data))
            # Even when the edit keeps the old time, only the state file's own time and
            # inode count: here the inode is the same, so the time must differ.
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000))

    second = start()
    assert second.summary_reads == 2
    assert second.get("replaced").question == "changed: replaced"
    assert second.get("edited").question == "changed: edited"
    assert second.get("kept").question == "question of kept?"


def test_runs_deleted_or_created_since_the_summary_are_seen(
    start: Callable[[], FileRunStore], config: AppConfig
) -> None:
    first = start()
    _finished(first, "gone")
    _finished(first, "again")
    first.close()

    # Another process, after the summary was written, killed before it could write its own.
    other = FileRunStore(config)
    other.open()
    other.delete("gone")
    other.delete("again")
    _finished(other, "again", "failed")  # the same id, a new run
    _finished(other, "new")
    other._create_pool.shutdown()
    assert set(_summary(config)) == {"gone", "again"}

    second = start()
    assert set(_states(second)) == {"again", "new"}
    assert second.get("again").status == "failed"
    assert second.summary_reads == 2


def test_an_active_run_is_reconciled_even_with_a_summary(
    start: Callable[[], FileRunStore], config: AppConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = start()
    _finished(first, "done")
    first.create("cut", RunOptions(question="cut short?"))
    first.transition("cut", "running")
    first.save_summary()  # the running run is not in it
    # A kill: no close; the next start counts the old process as gone.
    monkeypatch.setattr(run_store_module, "is_alive", lambda owner: False)

    second = start()
    assert second.summary_reads == 1
    cut = second.get("cut")
    assert (cut.status, cut.finish_reason) == ("failed", "interrupted")
    assert second.get("done").status == "completed"


def test_a_summary_write_cut_short_leaves_nothing_behind(
    start: Callable[[], FileRunStore], config: AppConfig
) -> None:
    first = start()
    _finished(first, "r1")
    first.close()
    dead_pid = 2**22 + 7  # above any pid the kernel hands out by default
    litter = config.output_root / f".{SUMMARY_FILE}.{dead_pid}-0.tmp"
    litter.write_text('{"version": 1, "ru')

    second = start()
    assert not litter.exists()
    assert second.repairs["temp_files_removed"] == 1
    assert second.summary_reads == 0


def test_a_delete_during_a_runs_last_write_does_not_deadlock(
    start: Callable[[], FileRunStore],
) -> None:
    """A client that sees "completed" (memory changes first) may DELETE while the finished
    state is still being written: the delete waits for the write, and both end."""
    store = start()
    store.create("r1", RunOptions(question="q?"))
    store.transition("r1", "running")
    deleted = threading.Event()

    def delete() -> None:
        store.delete("r1")
        deleted.set()

    def during_the_last_write(point: str) -> None:
        if point != "transition:event":
            return
        threading.Thread(target=delete, daemon=True).start()
        # The delete holds the store lock and waits for this run's lock.
        deadline = time.monotonic() + 5
        while not store._lock.locked():
            assert time.monotonic() < deadline, "the delete never took the store lock"
            time.sleep(0.001)  # poll interval while waiting for the other thread's lock

    finisher = threading.Thread(
        target=lambda: store.transition("r1", "completed", finish_reason="answered"),
        daemon=True,
    )
    with faults.installed(during_the_last_write):
        finisher.start()
        finisher.join(10)
    assert not finisher.is_alive(), "the finishing run is stuck"
    assert deleted.wait(10), "the delete is stuck"
    assert not (store.root / "r1").exists()


def test_a_summary_never_pairs_an_old_state_with_a_newer_file(
    start: Callable[[], FileRunStore], config: AppConfig
) -> None:
    other = FileRunStore(config)  # another process sharing output/
    other.open()
    _finished(other, "r1")
    mine = start()
    assert mine.get("r1").status == "completed"
    # The other process deletes the run and a client creates the same id again.
    other.delete("r1")
    other.create("r1", RunOptions(question="again?"))
    other.transition("r1", "running")
    other._create_pool.shutdown()
    mine.save_summary()  # still holds the old, finished r1 in memory

    again = start()
    assert again.summary_reads == 1
    assert (again.get("r1").status, again.get("r1").question) == ("running", "again?")
