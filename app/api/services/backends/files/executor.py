"""The files backend's executor: runs ``run_pipeline`` off the event loop in this process.

A bounded pool, a bounded queue, cancel, timeout. A POST never waits for the engine: it
reserves a queue slot, claims the run in the store and hands the run to a thread pool. A
worker thread moves the run to ``running``, calls the pipeline with ``on_event`` (progress
and answer pieces, relayed to the store and to the listeners) and ``should_stop`` (cancel
flag, the cancel marker another process may have written, and the deadline), then records
the terminal state (run_executor.JobRunner).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app.api.logging_setup import run_context
from app.api.services.backends.files.store import FileRunStore
from app.api.services.errors import (
    QueueFull,
    RunAlreadyExists,
    RunAlreadyFinished,
    RunNotFound,
    ShuttingDown,
)
from app.api.services.run_executor import (
    SHUTDOWN_ERROR,
    Job,
    JobRunner,
    load_pipeline,
)
from app.api.services.run_status import ACTIVE
from app.api.services.run_store import RunOptions, RunState
from app.api.services.threads import wait_out
from app.config import AppConfig
from app.modules.orchestrator.contract import Pipeline

log = logging.getLogger(__name__)

CANCEL_MARKER = "cancel_requested"


class ThreadExecutor:
    """Bounded execution of runs in worker threads."""

    def __init__(self, store: FileRunStore, config: AppConfig, pipeline: Pipeline | None = None):
        self.store = store
        self.config = config
        self.pipeline = pipeline or load_pipeline(config.pipeline)
        self._pool = ThreadPoolExecutor(
            max_workers=config.max_workers, thread_name_prefix="run-worker"
        )
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}  # runs started here and not yet ended
        # Waiting runs are only (run id, ticket) pairs, in a deque of our own: the pool only
        # ever holds one task per worker, each of which takes pairs from here until none is
        # left, and a run gets its Job when it starts. A pool task per run kept a Future (a
        # condition, locks, bound methods) and a Job alive for every waiting run; with
        # thousands waiting, the collector's full passes walked them all: measured, pauses
        # of 90-180 ms in the middle of POSTs. The ticket tells a pair left behind by a run
        # cancelled while queued (then perhaps deleted, its id used again) from the run that
        # holds the slot now: only the pair whose ticket is in _waiting_ids starts anything.
        self._queue: deque[tuple[str, int]] = deque()
        self._waiting_ids: dict[str, int] = {}  # queued here and holding a slot -> ticket
        self._tickets = itertools.count()
        self._takers = 0  # pool tasks taking runs from the queue (<= max_workers)
        self._waiting = 0  # slots taken: reserved by a POST, or held by a queued run
        self._running = 0
        self._closed = False
        # Answer pieces go through the store, as state changes do (and as on Redis): one
        # writer orders a run's events, whatever their kind.
        self._runner = JobRunner(store, config, self.pipeline, store.append_delta)

    @property
    def queued(self) -> int:
        return self._waiting

    @property
    def running(self) -> int:
        return self._running

    @property
    def accepting(self) -> bool:
        return not self._closed

    # ------------------------------------------------------------------ submitting
    def submit(self, run_id: str, options: RunOptions) -> RunState:
        """Queue a run; QueueFull (nothing written) when APP_MAX_QUEUED runs already wait."""
        self._reserve(run_id)
        try:
            state = self.store.create(run_id, options)
        except BaseException:
            self._unreserve()
            raise
        self._enqueue(run_id)
        return state

    async def asubmit(self, run_id: str, options: RunOptions) -> RunState:
        """:meth:`submit` for the event loop (the state file's fsyncs go to a thread).

        A cancelled caller (uvicorn's graceful-shutdown timeout cancels requests) still
        queues a run its create put on disk, then gets the cancellation: otherwise the run
        would stay "queued" in memory and on disk with no worker ever taking it.
        """
        self._reserve(run_id)
        try:
            created = self.store.begin_create(run_id, options)
        except BaseException:
            self._unreserve()
            raise
        cancelled = await wait_out(created)
        try:
            state = created.result()
        except BaseException:
            self._unreserve()
            raise
        try:
            self._enqueue(run_id)
        finally:
            if cancelled is not None:
                raise cancelled
        return state

    def _reserve(self, run_id: str) -> None:
        """Take a queue slot before anything touches the disk, or refuse the run."""
        with self._lock:
            closed, full = self._closed, self._waiting >= self.config.max_queued
            if not (closed or full):
                self._waiting += 1
                return
        if (self.store.root / run_id).exists():
            # A taken id is a 409 even when the queue is full too (only looked at when
            # refusing: the exclusive mkdir in store.create is the check that counts).
            raise RunAlreadyExists(run_id, f"/api/v1/runs/{run_id}/status")
        if closed:
            raise ShuttingDown(retry_after_s=5)
        raise QueueFull(self.config.max_queued, retry_after_s=self._retry_after())

    def _unreserve(self) -> None:
        with self._lock:
            self._waiting -= 1

    def _enqueue(self, run_id: str) -> None:
        """Queue a recorded run, starting a worker task if fewer than max_workers run."""
        with self._lock:
            closed = self._closed
            if closed:  # shutdown began while the run was being recorded: it will not start
                self._waiting -= 1
            else:
                ticket = next(self._tickets)
                self._waiting_ids[run_id] = ticket
                self._queue.append((run_id, ticket))
                start_taker = self._takers < self.config.max_workers
                if start_taker:
                    self._takers += 1
        if not closed and start_taker:
            try:
                self._pool.submit(self._take_jobs)
            except RuntimeError:  # the pool shut down between our check and now
                with self._lock:
                    self._takers -= 1
                    with contextlib.suppress(ValueError):
                        self._queue.remove((run_id, ticket))
                    self._release_slot_locked(run_id)
                closed = True
        if closed:
            self.store.try_transition(
                run_id, "stopped", finish_reason="cancelled", error=SHUTDOWN_ERROR
            )
            raise ShuttingDown(retry_after_s=5)

    def _retry_after(self) -> int:
        # A rough figure: the queue drains at max_workers runs per typical run time.
        return max(1, min(60, self._waiting // max(1, self.config.max_workers)))

    # ------------------------------------------------------------------ cancelling
    def cancel(self, run_id: str) -> tuple[RunState, bool]:
        """Stop a run: a queued one at once, a running one cooperatively.

        Returns the state and whether this call asked for the stop (False when the run was
        already stopped: cancelling is retry-safe).
        """
        state = self.store.get(run_id)
        if state.status == "stopped":
            return state, False
        if state.terminal:
            raise RunAlreadyFinished(run_id, state.status)
        with self._lock:
            job = self._jobs.get(run_id)
            # Taking a queued run out of the waiting set here means no worker starts it,
            # even one that has already taken its id from the queue.
            waiting = self._release_slot_locked(run_id)
        if job is not None:
            job.request_stop("cancelled")
        if job is not None or waiting:
            if state.status == "queued":
                stopped = self.store.try_transition(
                    run_id, "stopped", expect=frozenset({"queued"}), finish_reason="cancelled"
                )
                return stopped or self.store.get(run_id), True
            return self.store.get(run_id), True
        # Another process owns the run: leave a marker that its should_stop looks for.
        (self.store.root / run_id / CANCEL_MARKER).touch()
        return state, True

    # ------------------------------------------------------------------ running
    def _release_slot_locked(self, run_id: str) -> bool:
        """Under the lock: free the slot of a queued run; False if it held none."""
        if self._waiting_ids.pop(run_id, None) is None:
            return False
        self._waiting -= 1
        return True

    def _take_jobs(self) -> None:
        """One pool task: start waiting runs, oldest first, until the queue is empty."""
        while True:
            with self._lock:
                if not self._queue or self._closed:
                    self._takers -= 1
                    return
                run_id, ticket = self._queue.popleft()
            try:
                self._start(run_id, ticket)
            except Exception:
                # A run whose outcome could not even be recorded (a disk that refuses the
                # state file): the runs behind it must still start, so this task carries on.
                log.exception("run %s: the executor could not finish it", run_id)
                with self._lock:
                    self._jobs.pop(run_id, None)

    def _start(self, run_id: str, ticket: int) -> None:
        try:
            state: RunState | None = self.store.get(run_id)
        except RunNotFound:  # cancelled while queued, then deleted
            state = None
        job = None
        with self._lock:
            if self._waiting_ids.get(run_id) != ticket:
                # Cancelled while queued (the cancel recorded it), or the pair of an earlier
                # run with this id: whatever run holds the id now is not this pair's to touch.
                return
            self._release_slot_locked(run_id)
            if state is not None:
                job = Job(run_id=run_id, options=state.options())
                self._jobs[run_id] = job  # from here on, a cancel stops the job itself
        if job is None:
            return
        # Worker threads start with an empty context: set the run id here, in the thread,
        # so that every line logged for this run (engine included) carries it.
        with run_context(run_id):
            self._execute_in_context(job)

    def _execute_in_context(self, job: Job) -> None:
        if job.stop_requested or self._marker(job.run_id).exists():
            # Cancelled while queued: the cancel call has (or will have) recorded it.
            self.store.try_transition(job.run_id, "stopped", finish_reason="cancelled")
            self._forget(job)
            return
        try:
            started = self.store.try_transition(job.run_id, "running")
        except Exception:
            log.exception("run %s: could not be started", job.run_id)
            started = None
            self.store.try_transition(
                job.run_id,
                "failed",
                finish_reason="error",
                error={"code": "internal_error", "message": "the run could not be started"},
            )
        if started is None:
            self._forget(job)
            return
        with self._lock:
            self._running += 1
        job.deadline = time.monotonic() + self.config.run_timeout_s
        log.info("run %s started", job.run_id)
        try:
            self._runner.run(job, self._should_stop(job))
        finally:
            with self._lock:
                self._running -= 1
            self._forget(job)
            log.info("run %s ended", job.run_id)

    def _should_stop(self, job: Job) -> Callable[[], bool]:
        marker = self._marker(job.run_id)

        def should_stop() -> bool:
            if job.stop_requested:
                return True
            if time.monotonic() > job.deadline:
                job.reason = "timeout"
                return True
            if marker.exists():
                job.reason = "cancelled"
                return True
            return False

        return should_stop

    def _marker(self, run_id: str) -> Path:
        return self.store.root / run_id / CANCEL_MARKER

    def _forget(self, job: Job) -> None:
        with self._lock:
            self._jobs.pop(job.run_id, None)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self, *, wait_s: float = 10.0) -> None:
        """Stop accepting runs, ask running ones to stop, record every active run as stopped."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
            self._queue.clear()  # never to start; the takers end after their current run
            self._waiting -= len(self._waiting_ids)
            self._waiting_ids.clear()
        for job in jobs:
            job.request_stop("shutdown")
        # Queued runs will never start: record them now.
        for state in self.store.active_owned():
            if state.status == "queued":
                self._record_shutdown(state.run_id, "stopped")
        done = threading.Event()

        def drain() -> None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            done.set()

        threading.Thread(target=drain, daemon=True, name="run-pool-drain").start()
        if not done.wait(wait_s):
            log.warning("shutdown: runs still busy after %.0f s; recording them stopped", wait_s)
        for state in self.store.active_owned():
            self._record_shutdown(
                state.run_id, "stopped" if state.status in ACTIVE else state.status
            )

    def _record_shutdown(self, run_id: str, status: str) -> None:
        try:
            self.store.try_transition(
                run_id, status, finish_reason="cancelled", error=SHUTDOWN_ERROR
            )
        except Exception:
            # One run whose state cannot be written (a full disk) must not leave every
            # other run unrecorded; the next start reconciles this one as interrupted.
            log.exception("shutdown: run %s could not be recorded as stopped", run_id)
