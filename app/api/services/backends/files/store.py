"""The files backend's store: run state in memory and in ``output/<run_id>/api_state.json``.

Concurrency, in one process: one ``threading.Lock`` guards the dict and every transition, so
worker threads and the event loop see each state change whole. Across processes sharing
``output/``: a new run's folder is written under a hidden name and renamed into place (the
rename is the claim: exactly one of N concurrent creators wins), every state file is
replaced atomically, and a run owned by another process is read from its state file. On
start-up the store finishes what crashes left half done (ARCHITECTURE.md, Crash
consistency): a run left queued or running by a process that no longer exists is finished
from its event log, or from its ``run.json``, or becomes ``failed/interrupted``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import dataclasses
import errno
import fcntl
import gc
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic_core

from app.api.services.backends.files.event_log import last_event
from app.api.services.errors import (
    IllegalTransition,
    RunActive,
    RunAlreadyExists,
    RunNotFound,
    ShuttingDown,
)
from app.api.services.faults import fault
from app.api.services.keyed_locks import KeyedLocks
from app.api.services.run_status import ACTIVE, TERMINAL
from app.api.services.run_store import (
    EVENTS_FILE,
    STATE_FILE,
    Listener,
    RemovalListener,
    RunOptions,
    RunState,
    apply_transition,
    encode_status,
    is_terminal,
)
from app.api.services.threads import wait_to_the_end
from app.config import AppConfig
from app.modules.atomic_file import encode_json, write_bytes_atomic, write_json_atomic
from app.modules.process_identity import is_alive, process_start, this_process
from app.modules.run_ids import is_valid_run_id
from app.modules.run_logger import utc_now

log = logging.getLogger(__name__)

STAGING_PREFIX = ".creating-"  # + pid-start-n: a run being created, renamed into place
TRASH_PREFIX = ".deleting-"  # + pid-start-n: a deleted run, renamed away, being emptied
REPAIR_KINDS = (
    "staging_removed",
    "temp_files_removed",
    "unfinished_removed",
    "reconciled",
    "state_from_log",
)
# write_json_atomic's temp files: .<name>.<pid>-<n>.tmp
_TEMP_FILE = re.compile(r"\..+\.(\d+)-\d+\.tmp")
_staging_names = itertools.count()
# A folder younger than this may be another process's work in progress (a delete that has
# not finished emptying it): start-up leaves it for the next start.
SETTLE_S = 5.0
IDEMPOTENCY_DIR = ".idempotency"
# The finished runs as start-up last knew them, so that a start does not read and check
# every run's state file again (ARCHITECTURE.md, Start-up). An entry is trusted only while
# the run's state file is the same file, unchanged: same inode (every write of ours replaces
# the file) and modification time (an edit in place); any other run is read from its
# folder. Rebuilt when missing, unreadable or of another version.
SUMMARY_FILE = ".runs-summary.json"
FIELDS = tuple(f.name for f in dataclasses.fields(RunState))
SUMMARY_VERSION = 2  # 2: each state a list of values in FIELDS order
LOCK_FILE = ".lock"
# State files are created with the mode of write_json_atomic's temp files (owner only).
_STATE_MODE = 0o600
_STATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
# Create groups committed at once. Measured with 32 clients: 2 no better than 1 (the first
# takes the whole queue; the group's fsyncs are already in flight together).
COMMITTERS = 1
# fsyncs of one create group in flight at once (measured with 32 clients: 4, 8 and 16
# threads within noise of each other, all ~2x one thread; 32 no better).
SYNC_THREADS = 8


class FileRunStore:
    """Create, read, move and list runs. Thread-safe; safe to share ``output/`` across processes."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.root = config.output_root
        self._lock = threading.Lock()
        self._runs: dict[str, RunState] = {}
        self._write_locks = KeyedLocks()  # one run's writes reach the disk in order
        # acreate's group commit: one thread (started on first use, ended by close())
        # writes whatever creates wait, as one group; see acreate.
        self._create_pool = ThreadPoolExecutor(COMMITTERS, thread_name_prefix="run-create")
        self._sync_pool = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="run-fsync")
        self._pending_lock = threading.Lock()
        self._pending: list[_NewRun] = []
        self._committing = 0  # _commit_pending tasks queued or running
        self.commit_groups = 0  # groups committed by acreate (tests look at it)
        self._owned: set[str] = set()
        self._idempotency: dict[str, str] = {}  # Idempotency-Key -> run id
        self._listeners: list[Listener] = []
        self._removal_listeners: list[RemovalListener] = []
        self._me = this_process()
        self.claims = FileClaims(self.root)
        # What start-up found half done and finished or removed (logged; /metrics).
        self.repairs: dict[str, int] = dict.fromkeys(REPAIR_KINDS, 0)
        self.summary_reads = 0  # run folders start-up read because the summary lacked them
        self._summary_writer: threading.Thread | None = None
        # Finished runs whose state file says so, with that file's identity when it was
        # known to hold this state (what save_summary records): a run finished in memory
        # whose last write has not landed is not one of them, and a file looked at later
        # (perhaps another run's, under the same id) is never paired with an older state.
        self._finished_on_disk: dict[str, tuple[int, int]] = {}
        # The polling endpoint's bytes per run, made on first ask and dropped whenever the
        # run changes (StatusFastPath sends them without FastAPI's routing and validation).
        self._status_json: dict[str, bytes] = {}

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        """Create ``output/``, finish what crashes left half done, load every run.

        Removed: staging and trash folders of processes that are gone; run folders with
        neither a state nor a run log (a delete, or a create of an older version, cut short:
        the id is free again); temp files in the runs a crash interrupted (only those can
        have any: a finished run's last write replaced its temp file). Reconciled: active
        runs whose process is gone. One pass over output/; what was repaired is logged and
        counted (``repairs``, /metrics).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with _collector_paused():
            self._open()

    def _open(self) -> None:
        summary = self._read_summary()
        with os.scandir(self.root) as entries:
            names: list[str] = []
            files: list[str] = []
            for e in entries:
                (names if e.is_dir(follow_symlinks=False) else files).append(e.name)
        self._remove_temp_files_in(self.root, files)  # a summary write cut short
        read = 0
        for name in names:
            prefix = next((p for p in (STAGING_PREFIX, TRASH_PREFIX) if name.startswith(p)), None)
            if prefix is not None:
                if not _owner_alive(name.removeprefix(prefix)):
                    shutil.rmtree(self.root / name, ignore_errors=True)
                    self.repairs["staging_removed"] += 1
                continue
            if not is_valid_run_id(name):
                continue
            known = summary.get(name)
            if known is not None and known[0] == self._state_key(name):
                self._runs[name] = known[1]
                self._index(known[1])
                self._finished_on_disk[name] = known[0]
                continue
            read += 1
            state, key = self._load_confirmed(name, reconcile=True)
            if state is None:
                self._remove_unfinished(name)
                continue
            if state.finish_reason == "interrupted":  # a CLI run whose process died
                self._remove_temp_files(name)
            self._runs[name] = state
            self._index(state)
            self._note_if_finished(state, key)
        done = {kind: n for kind, n in self.repairs.items() if n}
        if done:
            log.warning("start-up repaired what crashes left: %s", done)
        self.summary_reads = read
        if read or len(summary) != sum(s.terminal for s in self._runs.values()):
            # Written off the start-up path: a crash before it costs the next start a read
            # of the runs it lacks, nothing more.
            self._summary_writer = threading.Thread(
                target=self.save_summary, name="runs-summary", daemon=True
            )
            self._summary_writer.start()

    def _state_key(self, run_id: str) -> tuple[int, int] | None:
        """The identity and last change of the run's state file; None if it has none."""
        try:
            info = os.stat(f"{self.root}/{run_id}/{STATE_FILE}")
        except OSError:
            return None
        return info.st_ino, info.st_mtime_ns

    def _read_summary(self) -> dict[str, tuple[tuple[int, int], RunState]]:
        """The summary file's runs by id, with the folder each was recorded from; empty when
        the file is missing, damaged or of another version (every run is then read)."""
        try:
            data = json.loads((self.root / SUMMARY_FILE).read_bytes())
            if data.get("version") != SUMMARY_VERSION or data.get("fields") != list(FIELDS):
                return {}
            # Written by save_summary from states this store had checked: rebuilt without
            # checking each field again (that check was most of a start-up's time).
            return {
                run_id: ((ino, mtime_ns), RunState(*values))
                for run_id, ino, mtime_ns, values in data["runs"]
            }
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("%s unreadable (%s): every run is read from its folder", SUMMARY_FILE, exc)
            return {}

    def save_summary(self) -> None:
        """Record the finished runs this store knows, each with the identity its state file
        had when it was known to hold that state.

        A finished run's state does not change again (only a delete removes it), so a state
        file that is the same at the next start holds the state recorded here; any other
        file under that id (deleted and created again, edited) differs: read again.
        """
        with self._lock:  # references only: a finished state is not changed in place
            finished = [
                (run_id, key, run)
                for run_id, key in self._finished_on_disk.items()
                if (run := self._runs.get(run_id)) is not None and run.terminal
            ]
        # Values in field order, not objects: the names were half the file.
        rows = [[run_id, *key, [getattr(run, n) for n in FIELDS]] for run_id, key, run in finished]
        try:
            if not rows:  # nothing to remember: output/ holds only runs
                (self.root / SUMMARY_FILE).unlink(missing_ok=True)
                return
            # Compact: read by machines only, and a tenth of the indented size.
            payload = pydantic_core.to_json(
                {"version": SUMMARY_VERSION, "fields": FIELDS, "runs": rows}
            )
            write_bytes_atomic(self.root / SUMMARY_FILE, payload)
        except OSError as exc:
            log.warning("%s not written (%s): the next start reads every run", SUMMARY_FILE, exc)

    def _remove_unfinished(self, run_id: str) -> None:
        """A folder with no state and no run log is not a run. A young one may be a
        `python -m app ask` about to write its log: it waits for the next start."""
        folder = self.root / run_id
        if not (folder / "run.json").exists() and _settled(folder):
            shutil.rmtree(folder, ignore_errors=True)
            self.repairs["unfinished_removed"] += 1

    def _remove_temp_files(self, run_id: str) -> None:
        """Temp files that processes now gone left in the run's folder."""
        folder = self.root / run_id
        try:
            files = os.listdir(folder)
        except OSError:
            return
        self._remove_temp_files_in(folder, files)

    def _remove_temp_files_in(self, folder: Path, files: list[str]) -> None:
        for file in files:
            match = _TEMP_FILE.fullmatch(file)
            if match and process_start(int(match.group(1))) is None:
                with contextlib.suppress(OSError):
                    (folder / file).unlink()
                self.repairs["temp_files_removed"] += 1

    def close(self) -> None:
        """Let the threads of :meth:`acreate` end (after any write in flight), then record
        the finished runs for the next start."""
        self._create_pool.shutdown(wait=True)
        self._sync_pool.shutdown(wait=True)
        if self._summary_writer is not None:
            self._summary_writer.join()
        self.save_summary()

    def is_writable(self) -> bool:
        probe = self.root / f".ready-{os.getpid()}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError:
            return False
        return True

    def add_listener(self, listener: Listener) -> None:
        """``listener(run_id, kind, payload)`` after each change (kind: status | progress)."""
        self._listeners.append(listener)

    def add_removal_listener(self, listener: RemovalListener) -> None:
        """``listener(run_id)`` after a run has been deleted (forget caches, end streams)."""
        self._removal_listeners.append(listener)

    # ------------------------------------------------------------------ writing
    def create(self, run_id: str, options: RunOptions) -> RunState:
        """Record ``run_id`` as queued: its folder appears whole, state inside, or not at all.

        The folder is made under a hidden staging name with ``api_state.json`` written and
        fsynced in it, then renamed into place: a crash at any instant leaves either no run
        (the id free; start-up removes the staging folder) or a queued run that start-up
        reconciles. The rename is also the claim: onto a run folder that exists it fails
        (409). The same steps as :meth:`acreate`'s group commit, for one run, here.
        """
        new = _NewRun(RunState.queued(run_id, options, owner=self._me))
        self._commit([new])
        if new.error is not None:
            raise new.error
        return new.result()

    async def acreate(self, run_id: str, options: RunOptions) -> RunState:
        """:meth:`create` for the event loop, by group commit on the store's create thread.

        The POSTs that arrive while a commit is under way wait for the next one, which
        writes all of them: every state file is fsynced (one after the other, while the
        folder's and inode table's blocks they share are written once), then every run is
        renamed into place, then the loop is woken once for the lot. Each create still
        answers only once its own run is on disk (its rename done, its fsync before it),
        and fails alone (a taken id, a full disk) without failing the others. Measured on
        POST with 32 clients: a thread per create (fsync, rename, wake-up each) held the
        throughput near 900/s.

        Off the loop, all of it, the mkdir and the small writes too: a write can wait for
        the disk (writeback throttling, a busy or network volume) and would then stall every
        request and stream, not just POSTs. Awaited to the end even when the caller is
        cancelled (threads.wait_to_the_end): the cancellation is raised after the outcome.
        """
        return await wait_to_the_end(self.begin_create(run_id, options))

    def begin_create(self, run_id: str, options: RunOptions) -> asyncio.Future[RunState]:
        """Queue ``run_id`` for the next group commit (see acreate); the future, of the
        running loop, gets its state or its error. For a caller that must act on the
        outcome even when cancelled (the executor queues a run that exists on disk)."""
        loop = asyncio.get_running_loop()
        new = _NewRun(RunState.queued(run_id, options, owner=self._me), loop.create_future())
        with self._pending_lock:
            self._pending.append(new)
            start = self._committing < COMMITTERS
            if start:
                self._committing += 1
        if start:
            try:
                self._create_pool.submit(self._commit_pending)
            except RuntimeError as exc:  # close() has begun: nothing is created any more
                with self._pending_lock:
                    self._pending.remove(new)
                    self._committing -= 1
                raise ShuttingDown() from exc
        return new.future  # type: ignore[return-value]

    def _commit_pending(self) -> None:
        """The create thread: commit what waits, as one group, until nothing does."""
        while True:
            with self._pending_lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._committing -= 1
                    return
            try:
                self._commit(batch)
            except BaseException as exc:  # told to each request of the group, then not re-raised
                for new in batch:
                    if new.error is None and new.accepted is None:
                        new.error = exc
            self.commit_groups += 1
            _resolve(batch)

    def _commit(self, batch: list[_NewRun]) -> None:
        """Write, fsync and claim each run of ``batch``; set each one's result or error.

        The order per run is create()'s: state file whole and fsynced in the staging
        folder, then the rename that makes it a run; only the order between runs changes
        (every fsync of the group before its first rename).

        Where a create's time goes, measured with perf under 32 posting clients (2-core VM,
        ext4 without a journal): ~75 % of the server's CPU is the kernel's inode allocator
        (``recently_deleted`` skips every inode freed in the last minutes, one by one) on
        the three inodes a create makes (staging folder, state file, events.jsonl); the
        group's fsyncs take ~2 ms, the event loop ~13 % of the CPU. Staging the group's runs
        on the sync threads at once was no faster (bench_api, same session).
        """
        staged: list[tuple[_NewRun, Path, int]] = []
        try:
            for new in batch:
                try:
                    folder = self._staging_folder()
                except Exception as exc:
                    new.error = exc
                    continue
                try:
                    fd = os.open(folder / STATE_FILE, _STATE_FLAGS, _STATE_MODE)
                except Exception as exc:
                    shutil.rmtree(folder, ignore_errors=True)
                    new.error = exc
                    continue
                staged.append((new, folder, fd))
                try:
                    _write_all(fd, encode_json(new.state.to_json()))
                except Exception as exc:
                    new.error = exc
            self._sync_group([(new, fd) for new, _, fd in staged if new.error is None])
            for new, folder, _ in staged:
                if new.error is None:
                    try:
                        fault("create:staged")
                        self._claim(folder, new.state.run_id)
                        continue
                    except Exception as exc:
                        new.error = exc
                # Not claimed: the staging folder goes (a kill, or a BaseException, leaves
                # it for start-up to remove).
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            for _, _, fd in staged:
                with contextlib.suppress(OSError):
                    os.close(fd)
        for new in batch:
            if new.error is None:
                fault("create:claimed")
                self._announce(new.state)
                new.accepted = copy.copy(new.state)

    def _sync_group(self, group: list[tuple[_NewRun, int]]) -> None:
        """fsync each state file of the group (the fsync of "temp file, fsync, rename"),
        all of them in flight at once: one after the other, each waited for its own writes
        (measured: ~1.5 ms each under load, 560 creates/s in groups of 30); together, the
        device takes them as one queue (3,000+ creates/s)."""
        if len(group) == 1:  # a create alone (sequential POSTs): no hand-over
            new, fd = group[0]
            try:
                _sync_file(fd)
            except Exception as exc:
                new.error = exc
            return
        syncs = [(new, self._sync_pool.submit(_sync_file, fd)) for new, fd in group]
        for new, sync in syncs:
            try:
                sync.result()
            except Exception as exc:
                new.error = exc

    def _announce(self, state: RunState) -> None:
        """A run just claimed on disk: into memory, then its queued event to the listeners."""
        run_id = state.run_id
        with self._lock:
            self._register(state)
            self._write_locks.acquire(run_id)
        try:
            self._notify(run_id, "status", state.status_payload())
        finally:
            self._write_locks.release(run_id)

    def _staging_folder(self) -> Path:
        name = f"{STAGING_PREFIX}{self._me['pid']}-{self._me['start']}-{next(_staging_names)}"
        folder = self.root / name
        try:
            folder.mkdir()
        except FileNotFoundError:
            # output/ itself was removed (a clean-up by hand): make it again, as open()
            # does, rather than failing every POST until a restart.
            self.root.mkdir(parents=True, exist_ok=True)
            folder.mkdir()
        return folder

    def _claim(self, staging: Path, run_id: str) -> None:
        """Rename the staged run into place; RunAlreadyExists when the id is taken."""
        try:
            os.rename(staging, self.root / run_id)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise RunAlreadyExists(run_id, f"/api/v1/runs/{run_id}/status") from None
            raise

    def _register(self, state: RunState) -> None:
        """Under the store lock. A copy read from disk meanwhile (a listing that found the
        folder) is replaced: memory is the truth for a run of this process."""
        self._runs[state.run_id] = state
        self._status_json.pop(state.run_id, None)
        self._finished_on_disk.pop(state.run_id, None)
        self._owned.add(state.run_id)
        self._index(state)

    def _unregister(self, state: RunState) -> None:
        """Under the store lock: not recorded, not accepted, so no queued ghost."""
        self._runs.pop(state.run_id, None)
        self._status_json.pop(state.run_id, None)
        self._owned.discard(state.run_id)
        self._unindex(state)

    def transition(
        self, run_id: str, status: str, *, expect: frozenset[str] | None = None, **changes: Any
    ) -> RunState:
        """Move a run to ``status``; raise IllegalTransition if its state does not allow it.

        ``expect`` narrows the states the move may start from, checked under the lock: a
        cancel that saw "queued" must not stop a run that has started meanwhile.
        """
        with self._lock:
            state = self._runs.get(run_id)
            if state is None:
                raise RunNotFound(run_id)
            apply_transition(state, status, expect=expect, changes=changes)
            self._status_json.pop(run_id, None)
            pending = self._pending_write(state)
            payload = state.status_payload()
            result = copy.copy(state)
        self._flush(pending, event=("status", payload))
        return result

    def try_transition(
        self, run_id: str, status: str, *, expect: frozenset[str] | None = None, **changes: Any
    ) -> RunState | None:
        """Like :meth:`transition`, but ``None`` when the run has moved on already."""
        try:
            return self.transition(run_id, status, expect=expect, **changes)
        except IllegalTransition:
            return None

    def progress(self, run_id: str, *, stage: str, message: str, step: int, total: int) -> None:
        """Record the stage a running run has reached."""
        with self._lock:
            state = self._runs.get(run_id)
            if state is None or state.status != "running":
                return
            state.stage, state.message, state.step, state.total_steps = stage, message, step, total
            pending = self._pending_write(state)
        self._flush(
            pending,
            event=(
                "progress",
                {
                    "run_id": run_id,
                    "stage": stage,
                    "message": message,
                    "step": step,
                    "total_steps": total,
                },
            ),
        )

    def append_delta(self, run_id: str, text: str) -> None:
        """A piece of a running run's answer, told to the listeners (events.jsonl, the bus)
        under the run's own lock, so it takes its place among the run's other events."""
        with self._lock:
            state = self._runs.get(run_id)
            if state is None or state.status != "running":
                return
            self._write_locks.acquire(run_id)
        try:
            self._notify(run_id, "answer_delta", {"run_id": run_id, "text": text})
        finally:
            self._write_locks.release(run_id)

    def delete(self, run_id: str) -> None:
        """Remove a terminal run: from memory first, then its folder; RunActive while active.

        Memory goes first so that no reader finds a run whose files are half gone; the run's
        own lock is taken before the folder goes, so the terminal transition's last write
        (state file and terminal event, made after the state changed in memory) has ended.
        """
        state = self.get(run_id)  # RunNotFound; a run of another process is read afresh
        with self._lock:
            current = self._runs.get(run_id)
            if current is None:  # deleted meanwhile
                raise RunNotFound(run_id)
            if not current.terminal:
                raise RunActive(run_id, current.status)
            del self._runs[run_id]
            self._status_json.pop(run_id, None)
            self._owned.discard(run_id)
            self._finished_on_disk.pop(run_id, None)
            self._unindex(current)
            # Lock order store -> run, as in _pending_write.
            with self._write_locks.hold(run_id):
                pass
        # Renamed out of the way first (one atomic step: the run is gone), then emptied: a
        # crash meanwhile leaves a hidden folder that start-up removes, never half a run.
        trash = (
            self.root
            / f"{TRASH_PREFIX}{self._me['pid']}-{self._me['start']}-{next(_staging_names)}"
        )
        try:
            os.rename(self.root / run_id, trash)
        except FileNotFoundError:
            pass  # removed by someone else (another process's retention)
        else:
            fault("delete:renamed")
            shutil.rmtree(trash, ignore_errors=True)
        if current.idempotency_key is not None:
            # The key is free again (a retry with it starts a new run), unless it names
            # another run by now.
            self.claims.release_if(current.idempotency_key, run_id)
        log.info("run %s deleted (%s)", run_id, state.status)
        for listener in self._removal_listeners:
            try:
                listener(run_id)
            except Exception:
                log.exception("run %s: removal listener failed", run_id)

    def remove_expired(self, *, older_than: datetime) -> list[str]:
        """Delete every terminal run whose completed_at is before ``older_than``."""
        self._discover()  # runs another process (or the CLI) wrote count too
        with self._lock:
            expired = [
                s.run_id
                for s in self._runs.values()
                if s.terminal and (done := _parse_time(s.completed_at)) and done < older_than
            ]
        removed = []
        for run_id in expired:
            try:
                self.delete(run_id)
            except (RunNotFound, RunActive):
                continue  # deleted by someone else meanwhile
            removed.append(run_id)
        if removed:
            log.info("retention: removed %d run(s) completed before %s", len(removed), older_than)
        return removed

    # ------------------------------------------------------------------ reading
    def get(self, run_id: str) -> RunState:
        """The run's state: from memory, or from disk when another process owns it."""
        if not is_valid_run_id(run_id):
            raise RunNotFound(run_id)
        with self._lock:
            state = self._runs.get(run_id)
            if state is not None and (state.terminal or run_id in self._owned):
                # A copy made under the lock: a worker thread may be moving the run on, and
                # a reader must never see half a transition.
                return copy.copy(state)
        fresh, key = self._load_confirmed(run_id, reconcile=False)
        with self._lock:
            if run_id in self._owned:  # created here while we read: memory is the truth
                return copy.copy(self._runs[run_id])
            if fresh is None:
                raise RunNotFound(run_id)
            self._runs[run_id] = fresh
            self._status_json.pop(run_id, None)
            self._note_if_finished(fresh, key)
            return copy.copy(fresh)

    async def aget(self, run_id: str) -> RunState:
        """``get`` for the event loop: this store answers from memory (a foreign run's state
        file is one small read)."""
        return self.get(run_id)

    async def astatus(self, run_id: str) -> dict[str, Any]:
        """The v1 status payload, for the polling endpoint: from memory without copying the
        whole state (the copy was a twentieth of a status request)."""
        if is_valid_run_id(run_id):
            with self._lock:
                state = self._runs.get(run_id)
                if state is not None and (state.terminal or run_id in self._owned):
                    return state.status_payload()
        return self.get(run_id).status_payload()

    def status_json(self, run_id: str) -> bytes | None:
        """The status endpoint's bytes from memory (a finished run, or one of this process);
        None for anything else (unknown, another process's active run): ask astatus."""
        with self._lock:
            cached = self._status_json.get(run_id)
            if cached is not None:
                return cached
            state = self._runs.get(run_id)
            if state is None or not (state.terminal or run_id in self._owned):
                return None
            try:
                data = self._status_json[run_id] = encode_status(state.status_payload())
            except (KeyError, TypeError):  # a damaged error: the route says what is wrong
                return None
            return data

    def run_for_key(self, key: str) -> str | None:
        """The run id recorded with Idempotency-Key ``key`` (this process's index)."""
        with self._lock:
            return self._idempotency.get(key)

    def is_owned(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._owned

    def list_runs(
        self, *, limit: int, cursor: str | None = None, status: str | None = None
    ) -> tuple[list[RunState], str | None]:
        """Runs newest first, ``limit`` at a time; the cursor continues after the last one."""
        self._discover()
        with self._lock:
            runs = list(self._runs.values())
        runs.sort(key=_newest_key, reverse=True)
        if status:
            runs = [r for r in runs if r.status == status]
        if cursor:
            after = _decode_cursor(cursor)
            runs = [r for r in runs if _newest_key(r) < after]
        page = runs[:limit]
        next_cursor = _encode_cursor(_newest_key(page[-1])) if len(runs) > limit else None
        return page, next_cursor

    def count(self) -> int:
        with self._lock:
            return len(self._runs)

    def count_by_status(self) -> dict[str, int]:
        """How many runs this process knows in each status (every status, zeros included)."""
        counts = dict.fromkeys(sorted(ACTIVE | TERMINAL), 0)
        with self._lock:
            for state in self._runs.values():
                counts[state.status] = counts.get(state.status, 0) + 1
        return counts

    def active_owned(self) -> list[RunState]:
        with self._lock:
            return [self._runs[r] for r in self._owned if self._runs[r].status in ACTIVE]

    # ------------------------------------------------------------------ internals
    def _run_dirs(self) -> list[str]:
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        return [e.name for e in entries if e.is_dir() and is_valid_run_id(e.name)]

    def _discover(self) -> None:
        """Pick up runs that other processes created since we last looked."""
        with self._lock:
            known = set(self._runs)
        for run_id in self._run_dirs():
            if run_id not in known:
                state, key = self._load_confirmed(run_id, reconcile=False)
                if state is not None:
                    with self._lock:
                        if run_id not in self._runs:
                            self._runs[run_id] = state
                            self._index(state)
                            self._note_if_finished(state, key)

    def _load_confirmed(
        self, run_id: str, *, reconcile: bool
    ) -> tuple[RunState | None, tuple[int, int] | None]:
        """``_load``, and the state file's identity if it was the same file before and after
        the read (None: no file, or it changed meanwhile, a reconcile's write included)."""
        before = self._state_key(run_id)
        state = self._load(run_id, reconcile=reconcile)
        return state, before if before is not None and self._state_key(run_id) == before else None

    def _note_if_finished(self, state: RunState, key: tuple[int, int] | None) -> None:
        """Under the store lock, for a state just read from the file ``key`` names: finished
        on disk, unless what was read is a stand-in for a file that could not be read."""
        if (
            key is not None
            and state.terminal
            and (state.error or {}).get("code") != "state_unreadable"
        ):
            self._finished_on_disk[state.run_id] = key

    def _index(self, state: RunState) -> None:
        """Called under the store lock (or before the store is shared)."""
        if state.idempotency_key is not None:
            self._idempotency.setdefault(state.idempotency_key, state.run_id)

    def _unindex(self, state: RunState) -> None:
        key = state.idempotency_key
        if key is not None and self._idempotency.get(key) == state.run_id:
            del self._idempotency[key]

    def _write(self, state: RunState) -> None:
        write_json_atomic(self.root / state.run_id / STATE_FILE, state.to_json())

    def _pending_write(self, state: RunState) -> dict[str, Any]:
        """Called under the store lock: a snapshot to write, and the run's own lock, taken.

        The file is written after the store lock is released (an fsync there would queue
        every other run behind this one), but the run's lock is taken first, while the store
        lock is still held, so one run's snapshots reach the disk in the order they were made.
        """
        self._write_locks.acquire(state.run_id)
        return state.to_json()

    def _flush(
        self,
        snapshot: dict[str, Any],
        *,
        event: tuple[str, dict[str, Any]],
    ) -> None:
        """Write the snapshot and tell the listeners, both before the run's lock is let go,
        so that listeners see one run's changes in the order they were made.

        A run's end is told first (its terminal event goes into events.jsonl), then written:
        the state that says "finished" is the last write, so a crash between the two leaves
        a run that start-up finishes from its log, never a finished run without its end.
        """
        run_id = snapshot["run_id"]
        written: tuple[int, int] | None = None
        try:
            if snapshot.get("status") in TERMINAL:
                self._notify(run_id, *event)
                fault("transition:event")
                write_json_atomic(self.root / run_id / STATE_FILE, snapshot)
                written = self._state_key(run_id)  # the file just written: nobody else writes it
            else:
                write_json_atomic(self.root / run_id / STATE_FILE, snapshot)
                fault("transition:state")
                self._notify(run_id, *event)
        finally:
            self._write_locks.release(run_id)
        if written is not None:
            # After the run's lock: the order everywhere else is store lock, then run lock.
            with self._lock:
                if run_id in self._runs:  # not deleted meanwhile
                    self._finished_on_disk[run_id] = written

    def _notify(self, run_id: str, kind: str, payload: dict[str, Any]) -> None:
        for listener in self._listeners:
            try:
                listener(run_id, kind, payload)
            except Exception:  # a broken listener must not break a run
                log.exception("run %s: listener failed on %s", run_id, kind)

    def _load(self, run_id: str, *, reconcile: bool) -> RunState | None:
        run_dir = self.root / run_id
        path = run_dir / STATE_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return self._from_run_log(run_id) if run_dir.is_dir() else None
        except OSError as exc:
            return self._unreadable(run_id, f"cannot be read ({exc.strerror})")
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            state = RunState.from_json(data)
            if state.run_id != run_id:
                raise ValueError(f"it names run {state.run_id!r}")
        except (ValueError, TypeError) as exc:
            return self._unreadable(run_id, f"is corrupt ({exc})")
        if reconcile and state.status in ACTIVE and not is_alive(state.owner):
            state = self._reconcile(state)
        return state

    def _unreadable(self, run_id: str, reason: str) -> RunState:
        log.error("run %s: %s %s", run_id, STATE_FILE, reason)
        return RunState(
            run_id=run_id,
            status="failed",
            question="",
            created_at=_mtime(self.root / run_id),
            finish_reason="error",
            error={
                "code": "state_unreadable",
                "message": f"the run's {STATE_FILE} {reason}; its other files are kept in "
                f"output/{run_id}/",
            },
        )

    def _run_log(self, run_id: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self.root / run_id / "run.json").read_bytes())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _from_run_log(self, run_id: str) -> RunState | None:
        """A run folder without API state (a CLI run): describe it from its run.json."""
        run = self._run_log(run_id)
        if run is None:
            return None
        outcome = run.get("outcome")
        outcome = outcome if isinstance(outcome, dict) else {}
        config = run.get("config")
        config = config if isinstance(config, dict) else {}
        status = outcome.get("status")
        owner = run.get("owner")
        if status not in TERMINAL and not is_alive(owner if isinstance(owner, dict) else None):
            # Its process (`python -m app ask`, say) ended without recording an outcome.
            status = "failed"
            outcome = {
                "finish_reason": "interrupted",
                "error": {
                    "code": "interrupted",
                    "message": "the process running this run stopped before it finished; "
                    "start a new run",
                },
            }
        try:
            state = RunState.from_json(
                {
                    "run_id": run_id,
                    "status": status if status in TERMINAL else "running",
                    "question": str(run.get("question", "")),
                    "markdown_path": str(config.get("markdown_path", "documents")),
                    "enable_sql": bool(config.get("enable_sql", False)),
                    "created_at": str(run.get("started_at") or _mtime(self.root / run_id)),
                    "started_at": run.get("started_at"),
                    "completed_at": run.get("completed_at"),
                    "finish_reason": outcome.get("finish_reason") if status in TERMINAL else None,
                    "error": outcome.get("error"),
                }
            )
        except (ValueError, TypeError, AttributeError) as exc:
            return self._unreadable(run_id, f"is missing and run.json is damaged ({exc})")
        self._set_artifacts(state)
        return state

    def _reconcile(self, state: RunState) -> RunState:
        """A run whose process is gone: finish it, once, the same for every process.

        Under an exclusive lock on the run's folder (workers of one server start together):
        the state is read again (another worker may have finished it); else an end already
        in events.jsonl (a crash after the event, before the state) is taken as it is; else
        the outcome run.json recorded, or interrupted. The terminal event is written before
        the state, so a crash here is finished by the next start, with the same end.
        """
        self._remove_temp_files(state.run_id)
        with _folder_lock(self.root / state.run_id):
            on_disk = self._read_state(state.run_id)
            if on_disk is not None and on_disk.status in TERMINAL:
                return on_disk
            logged = last_event(self.root / state.run_id / EVENTS_FILE)
            if logged is not None and is_terminal(logged):
                for key in ("status", "finish_reason", "error", "completed_at"):
                    setattr(state, key, logged.data.get(key))
                state.started_at = state.started_at or logged.data.get("started_at")
                self._set_artifacts(state)
                write_json_atomic(self.root / state.run_id / STATE_FILE, state.to_json())
                self.repairs["state_from_log"] += 1
                log.warning("run %s: finished from its log after a restart", state.run_id)
                return state
            outcome = (self._run_log(state.run_id) or {}).get("outcome") or {}
            if outcome.get("status") in TERMINAL and state.status == "running":
                state.status = outcome["status"]
                state.finish_reason = outcome.get("finish_reason")
                state.error = outcome.get("error")
            else:
                state.status = "failed"
                state.finish_reason = "interrupted"
                state.error = {
                    "code": "interrupted",
                    "message": "the server stopped while this run was active; start a new run",
                }
            state.completed_at = state.completed_at or utc_now()
            self._set_artifacts(state)
            self._notify(state.run_id, "status", state.status_payload())
            fault("reconcile:event")
            write_json_atomic(self.root / state.run_id / STATE_FILE, state.to_json())
            self.repairs["reconciled"] += 1
            log.warning("run %s: reconciled after restart as %s", state.run_id, state.status)
            return state

    def _read_state(self, run_id: str) -> RunState | None:
        try:
            data = json.loads((self.root / run_id / STATE_FILE).read_bytes())
            return RunState.from_json(data) if isinstance(data, dict) else None
        except (OSError, ValueError, TypeError):
            return None

    def _set_artifacts(self, state: RunState) -> None:
        for name, attr in (
            ("final.md", "final_output_path"),
            ("context_bundle.json", "context_bundle_path"),
        ):
            if (self.root / state.run_id / name).exists():
                setattr(state, attr, self.config.relative(self.root / state.run_id / name))


class _NewRun:
    """One create in a group commit: the state to write, and its outcome once committed."""

    __slots__ = ("accepted", "error", "future", "state")

    def __init__(self, state: RunState, future: asyncio.Future[RunState] | None = None) -> None:
        self.state = state
        self.future = future  # acreate's; None for create() on the caller's thread
        self.accepted: RunState | None = None  # a copy of the state, once the run is claimed
        self.error: BaseException | None = None

    def result(self) -> RunState:
        if self.accepted is None:
            raise self.error or RuntimeError("the run was not created")
        return self.accepted


def _resolve(batch: list[_NewRun]) -> None:
    """Wake each waiting loop once for the whole group (a wake-up per create was a GIL
    hand-over and a loop iteration each)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_NewRun]] = {}
    for new in batch:
        if new.future is not None:
            by_loop.setdefault(new.future.get_loop(), []).append(new)
    for loop, news in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(_settle, news)


def _settle(news: list[_NewRun]) -> None:
    for new in news:
        future = new.future
        if future is None or future.done():
            continue
        if new.accepted is not None:
            future.set_result(new.accepted)
        else:
            future.set_exception(new.error or RuntimeError("the run was not created"))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync_file(fd: int) -> None:
    """The fsync that makes a new state file durable before its run is renamed into place
    (a name of its own so that tests can make it fail or wait)."""
    os.fsync(fd)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collection while a start-up builds objects by the hundred thousand: each
    allocation burst set off another pass over everything built so far (1.4 s of 3 s with
    100,000 runs). Nothing is collectable meanwhile; start-up runs before any request."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _owner_alive(tag: str) -> bool:
    """Whether the process named by a staging tag ("<pid>-<start>-<n>") still runs."""
    pid, _, rest = tag.partition("-")
    start = rest.rpartition("-")[0]
    return pid.isdigit() and process_start(int(pid)) == start


def _settled(folder: Path) -> bool:
    try:
        return time.time() - folder.stat().st_mtime > SETTLE_S
    except OSError:
        return False


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on a run's folder, across processes (released when one dies)."""
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def idempotency_claim_path(root: Path, key: str) -> Path:
    """``output/.idempotency/<sha256(key)>``: the file whose exclusive creation claims a key."""
    return root / IDEMPOTENCY_DIR / hashlib.sha256(key.encode()).hexdigest()


def release_idempotency_claim(root: Path, key: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        idempotency_claim_path(root, key).unlink()


class FileClaim:
    """A claim file this request created; it keeps the descriptor it created it with, so
    that it writes into, or removes, that file and no later one at the same path (a claim
    removed as stale and made again by another request)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    def record(self, run_id: str) -> None:
        try:
            # One short newline-terminated write: a reader takes the id only once it is whole.
            os.write(self.fd, f"{run_id}\n".encode())
            os.fsync(self.fd)
        finally:
            os.close(self.fd)

    def abandon(self) -> None:
        try:
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                    self.path.unlink()
        finally:
            os.close(self.fd)


class FileClaims:
    """Idempotency-Key claims as files: ``output/.idempotency/<sha256(key)>``, created
    exclusively (one winner across processes), holding the run id once it is recorded."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def try_claim(self, key: str) -> FileClaim | None:
        path = idempotency_claim_path(self.root, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            return None
        return FileClaim(path, fd)

    def claimed_run(self, key: str) -> str | None:
        try:
            text = idempotency_claim_path(self.root, key).read_text(
                encoding="ascii", errors="replace"
            )
        except FileNotFoundError:
            return None
        # One short newline-terminated write: the id counts only once it is whole.
        return text[:-1] if text.endswith("\n") and len(text) > 1 else None

    def age_s(self, key: str) -> float:
        try:
            return time.time() - idempotency_claim_path(self.root, key).stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def release_if(self, key: str, run_id: str | None) -> None:
        if self.claimed_run(key) == run_id:
            release_idempotency_claim(self.root, key)


def _parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 timestamp as an aware datetime (UTC when it names no zone)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _mtime(path: Path) -> str:
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return utc_now()
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _newest_key(state: RunState) -> tuple[str, int, str]:
    return state.created_at, state.created_ns, state.run_id


def _encode_cursor(key: tuple[str, int, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[str, int, str]:
    try:
        created_at, created_ns, run_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(created_at), int(created_ns), str(run_id)
    except (ValueError, TypeError, OverflowError):  # int(1e400) is an OverflowError
        from app.api.services.errors import InvalidRequest  # noqa: PLC0415

        raise InvalidRequest(
            "cursor",
            "the query parameter cursor is not one this server gave out (use next_cursor as given)",
            source="query",
        ) from None
