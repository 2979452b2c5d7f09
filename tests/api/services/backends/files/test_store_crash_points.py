"""A crash between any two writes of a run's change: the next start finishes or undoes it.

``app.api.services.faults`` names the points between writes; a hook raises ``Crash`` there
(the change stops as a kill would stop it), then a new store opens the same output/ as a
restarted server does (the old process counted as dead) and the folder must hold the truth:
no run lost or stuck active, no id burned, no temp or staging file, every finished run's
events.jsonl ending with its terminal status, matching api_state.json, completed_at kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.api.services import faults
from app.api.services.backends.files import store as run_store_module
from app.api.services.backends.files.event_bus import EventBus
from app.api.services.backends.files.event_log import EventLog
from app.api.services.backends.files.store import FileRunStore
from app.api.services.run_store import RunOptions
from app.config import AppConfig


class Crash(BaseException):
    """Stands for a kill: raised at a fault point, caught by the test only."""


def _crash_at(point: str) -> Callable[[str], None]:
    def hook(reached: str) -> None:
        if reached == point:
            raise Crash(point)

    return hook


@pytest.fixture
def config(tmp_path: Path) -> AppConfig:
    return AppConfig(base_dir=tmp_path, output_dir=tmp_path / "output", documents_roots=["."])


def _open(config: AppConfig) -> tuple[FileRunStore, EventLog]:
    store = FileRunStore(config)
    events = EventLog(store.root, EventBus())
    store.add_listener(events.listener)
    store.open()
    return store, events


@pytest.fixture
def restart(
    config: AppConfig, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], FileRunStore]]:
    """A new store over the same output/, as after a kill: the old owner counts as gone."""
    opened: list[FileRunStore] = []

    def start() -> FileRunStore:
        monkeypatch.setattr(run_store_module, "is_alive", lambda owner: False)
        monkeypatch.setattr(run_store_module, "_owner_alive", lambda tag: False)
        store, _ = _open(config)
        opened.append(store)
        return store

    yield start
    for store in opened:
        store.close()


def _events(root: Path, run_id: str) -> list[dict[str, Any]]:
    path = root / run_id / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_consistent(store: FileRunStore) -> None:
    """The invariants of the issue, for every run folder under output/."""
    root = store.root
    for entry in root.iterdir():
        assert not entry.name.startswith((".creating-", ".deleting-")), entry.name
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        names = {p.name for p in entry.iterdir()}
        assert not [n for n in names if n.endswith(".tmp")], names
        state = json.loads((entry / "api_state.json").read_text())
        assert state["status"] not in {"queued", "running"}, state
        assert store.get(entry.name).status == state["status"]
        events = _events(root, entry.name)
        assert events, entry.name
        last = events[-1]
        assert last["event"] == "status", events
        for key in ("status", "finish_reason", "completed_at"):
            assert last["data"][key] == state[key], (key, last, state)
        ids = [e["id"] for e in events]
        assert ids == sorted(set(ids)), ids


def test_a_create_cut_before_the_rename_leaves_the_id_free(
    config: AppConfig, restart: Callable[[], FileRunStore]
) -> None:
    store, _ = _open(config)
    with faults.installed(_crash_at("create:staged")), pytest.raises(Crash):
        store.create("r1", RunOptions(question="q?"))
    store.close()

    again = restart()
    assert_consistent(again)
    assert again.repairs["staging_removed"] == 1
    assert again.create("r1", RunOptions(question="q?")).status == "queued"  # not burned


def test_a_create_cut_before_its_event_is_finished_as_interrupted(
    config: AppConfig, restart: Callable[[], FileRunStore]
) -> None:
    store, _ = _open(config)
    with faults.installed(_crash_at("create:claimed")), pytest.raises(Crash):
        store.create("r1", RunOptions(question="q?"))
    store.close()

    again = restart()
    assert_consistent(again)
    assert again.get("r1").finish_reason == "interrupted"


@pytest.mark.parametrize(
    ("path", "point"),
    [
        (("running",), "transition:state"),  # a change that is not the end
        (("running", "completed"), "transition:event"),  # the end: event written, not state
        (("stopped",), "transition:event"),  # a cancel of a queued run
    ],
)
def test_a_transition_cut_between_its_writes(
    config: AppConfig, restart: Callable[[], FileRunStore], path: tuple[str, ...], point: str
) -> None:
    store, _ = _open(config)
    store.create("r1", RunOptions(question="q?"))
    reasons = {"completed": "answered", "stopped": "cancelled"}
    *before, last = path
    for status in before:
        store.transition("r1", status)
    with faults.installed(_crash_at(point)), pytest.raises(Crash):
        store.transition("r1", last, finish_reason=reasons.get(last))
    logged = _events(store.root, "r1")[-1]
    store.close()

    again = restart()
    assert_consistent(again)
    if point == "transition:event":
        # The end the subscribers saw is the end that stays, completed_at included.
        assert again.get("r1").status == last
        assert again.get("r1").completed_at == logged["data"]["completed_at"]


def test_a_recovery_cut_between_its_writes_is_finished_the_same_way(
    config: AppConfig, restart: Callable[[], FileRunStore]
) -> None:
    store, _ = _open(config)
    store.create("r1", RunOptions(question="q?"))
    store.transition("r1", "running")
    store.close()

    with faults.installed(_crash_at("reconcile:event")), pytest.raises(Crash):
        restart()
    ended = _events(store.root, "r1")[-1]["data"]

    again = restart()
    assert_consistent(again)
    assert again.get("r1").completed_at == ended["completed_at"]  # never moves
    assert again.repairs["state_from_log"] == 1
    third = restart()
    assert third.get("r1").completed_at == ended["completed_at"]
    assert [e["data"]["status"] for e in _events(store.root, "r1")].count("failed") == 1


@pytest.mark.parametrize("through_retention", [False, True])
def test_a_delete_cut_half_way_leaves_no_run_and_a_free_id(
    config: AppConfig, restart: Callable[[], FileRunStore], through_retention: bool
) -> None:
    from datetime import UTC, datetime, timedelta

    store, _ = _open(config)
    store.create("r1", RunOptions(question="q?"))
    store.transition("r1", "stopped", finish_reason="cancelled")

    def delete() -> None:
        if through_retention:
            store.remove_expired(older_than=datetime.now(UTC) + timedelta(days=1))
        else:
            store.delete("r1")

    with faults.installed(_crash_at("delete:renamed")), pytest.raises(Crash):
        delete()
    store.close()

    again = restart()
    assert_consistent(again)
    assert again.repairs["staging_removed"] == 1  # the hidden folder of the delete
    assert not (again.root / "r1").exists()
    assert again.create("r1", RunOptions(question="q?")).status == "queued"


def test_litter_of_dead_processes_is_removed_and_counted(
    config: AppConfig, restart: Callable[[], FileRunStore]
) -> None:
    store, _ = _open(config)
    store.create("r1", RunOptions(question="q?"))
    store.transition("r1", "running")  # killed mid-run, while writing a file
    store.close()
    dead_pid = 2**22 + 7  # above any pid the kernel hands out by default
    (store.root / "r1" / f".api_state.json.{dead_pid}-3.tmp").write_text("{")
    empty = store.root / "burned"
    empty.mkdir()  # an older version's create, cut short: a folder and nothing in it
    import os
    import time

    old = time.time() - 60
    os.utime(empty, (old, old))

    again = restart()
    assert_consistent(again)
    assert again.repairs["temp_files_removed"] == 1
    assert again.repairs["unfinished_removed"] == 1
    assert again.create("burned", RunOptions(question="q?")).status == "queued"
