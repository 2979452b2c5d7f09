"""Runs on Celery workers (APP_EXECUTOR=celery, with APP_BACKEND=redis).

An API node records the run in Redis (queued), then sends one task naming the run id; the
task id is the run id. A worker (``celery -A app.worker worker``) moves the run to running,
calls the same ``run_pipeline`` as the thread pool (through run_job.JobRunner), and records
the terminal state; progress and answer pieces go straight to the run's Redis stream, where
any API node's event stream reads them.

Redis holds the truth about a run; the broker only rings the bell. What a fault leaves
behind is always defined:

- A message is acknowledged when a worker takes it, before the run starts: a worker that
  loses its broker connection while it runs a run holds no unacknowledged message, so it
  reconnects and the run goes on. (With late acknowledgements, kombu's Redis transport
  tries to put the held message back through the dead connection, ``AttributeError:
  'NoneType' object has no attribute 'hostname'``, and the worker never consumes again:
  celery/kombu#582, #970, still in kombu 5.7.0; tests/api/test_redis_faults.py.) A message
  a worker has reserved but not started (one per execution slot) is still exposed to it;
  ``worker_disable_prefetch`` would close that, but it cut runs/s through two workers from
  ~130 to 2.3 here, so it is not set: RabbitMQ, where the broker itself delivers such a
  message again, is the broker to use in production.
- A run whose message was lost (taken by a consumer that froze or died before it claimed
  the run, dropped by a broker) stays ``queued``: the sweeper on the API nodes sends it
  again (``Sweeper``). A delivery that finds its run running or finished does nothing, so a
  run is claimed, and executed, once.
- While a run is running its worker refreshes a heartbeat key every APP_HEARTBEAT_S; the
  sweeper records a run whose heartbeat has expired (3 intervals) as
  ``failed/interrupted`` (never a silent re-run), judging heartbeats only 3 intervals after
  Redis is reachable again, so an outage does not make a healthy run lost.

Cancelling a queued run moves it to stopped at once (the worker skips it); a running run
gets a cancel key that the worker's ``should_stop`` reads, at most every CANCEL_POLL_S.
The per-run time limit is the same deadline as with the thread pool.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from celery import Celery
from kombu.entity import Exchange, Queue

from app.api.logging_setup import run_context
from app.api.services.backends.redis.store import HEARTBEAT_LIVES, RedisRunStore
from app.api.services.errors import (
    RunAlreadyFinished,
    RunNotFound,
    ShuttingDown,
    StoreUnavailable,
)
from app.api.services.run_executor import Job, JobRunner, load_pipeline
from app.api.services.run_store import RunOptions, RunState
from app.api.services.threads import thread_limiter
from app.config import AppConfig
from app.modules.orchestrator.contract import Pipeline

log = logging.getLogger(__name__)

SUBMISSION_THREADS = 4  # POSTs talking to Redis and the broker at once (threads.py)

TASK_NAME = "answer.execute_run"
CANCEL_POLL_S = 0.25
QUEUED = frozenset({"queued"})
RUNNING = frozenset({"running"})
LOST_ERROR = {
    "code": "worker_lost",
    "message": "the worker running this run stopped (its heartbeat expired); start a new run",
}
BROKER_ERROR = {
    "code": "broker_unavailable",
    "message": "the run could not be handed to a worker; start it again",
}
# The Redis broker redelivers a message still unacknowledged after this long. Messages are
# acknowledged when taken, so only one restored after a lost connection waits this out.
VISIBILITY_MARGIN_S = 300


def make_celery(config: AppConfig) -> Celery:
    """The Celery application of this deployment: broker, queue and delivery guarantees."""
    broker = config.broker
    app = Celery("answer", broker=broker, set_as_current=False)
    queue = f"{config.redis_prefix}.runs"
    app.conf.update(
        task_default_queue=queue,
        task_acks_late=False,
        task_reject_on_worker_lost=False,
        task_ignore_result=True,
        # One run at a time per worker process: a prefetched run would wait behind a long one.
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # an outage is waited out, not given up on
        worker_hijack_root_logger=False,
    )
    if broker.startswith(("amqp://", "amqps://", "pyamqp://")):
        # RabbitMQ: a message whose consumer's connection dies is delivered again; the
        # queue is a quorum queue (replicated, durable), and a send returns only once the
        # broker has the message (publisher confirms).
        app.conf.update(
            task_queues=[
                Queue(  # type: ignore[no-untyped-call]
                    queue,
                    Exchange(queue, type="direct", durable=True),  # type: ignore[no-untyped-call]
                    routing_key=queue,
                    queue_arguments={"x-queue-type": "quorum"},
                    durable=True,
                )
            ],
            broker_transport_options={"confirm_publish": True},
            task_default_delivery_mode="persistent",
            worker_detect_quorum_queues=True,
        )
    else:
        app.conf.update(
            broker_transport_options={
                "visibility_timeout": int(config.run_timeout_s) + VISIBILITY_MARGIN_S,
                # The broker's keys share the deployment's prefix (several deployments, or
                # test runs, in one Redis).
                "global_keyprefix": f"{config.redis_prefix}:celery:",
            },
        )
    return app


def register_worker_task(app: Celery, config: AppConfig) -> None:
    """Register the task that runs a run; the runtime is built once per worker process."""
    # A pipeline that cannot be loaded stops the worker at start-up, with the reason,
    # rather than failing every run it receives.
    pipeline = load_pipeline(config.pipeline)
    runtime: list[WorkerRuntime] = []
    lock = threading.Lock()

    def execute_run(run_id: str) -> None:
        with lock:
            if not runtime:
                runtime.append(WorkerRuntime(config, pipeline))
        runtime[0].execute(run_id)

    app.task(
        name=TASK_NAME,
        # Taken means acknowledged: the run's own state, not the message, says whether it
        # has run (module docstring).
        acks_late=False,
        reject_on_worker_lost=False,
        # Redis unreachable before the run could start: the task comes back later instead
        # of being acknowledged as failed (which would leave the run queued for good).
        autoretry_for=(StoreUnavailable,),
        retry_backoff=True,
        retry_backoff_max=60,
        max_retries=30,
    )(execute_run)


class _Attempt:
    """The store as one attempt at a run sees it: it writes only while the run is its own.

    A worker that lost its run (the sweeper gave it up after missed heartbeats, or the run
    was deleted and its id used again) must not write into it any more.
    """

    def __init__(self, store: RedisRunStore, token: str) -> None:
        self.store = store
        self.token = token

    @property
    def root(self) -> Path:
        return self.store.root

    def try_transition(
        self, run_id: str, status: str, *, expect: frozenset[str] | None = None, **changes: Any
    ) -> RunState | None:
        return self.store.try_transition(
            run_id, status, expect=expect, attempt=self.token, **changes
        )

    def progress(self, run_id: str, *, stage: str, message: str, step: int, total: int) -> None:
        self.store.progress(
            run_id, stage=stage, message=message, step=step, total=total, attempt=self.token
        )

    def delta(self, run_id: str, text: str) -> None:
        self.store.append_delta(run_id, text, attempt=self.token)


class WorkerRuntime:
    """What a worker process needs to run runs: the store, the pipeline, the runner."""

    def __init__(self, config: AppConfig, pipeline: Pipeline) -> None:
        self.config = config
        self.pipeline = pipeline
        self.store = RedisRunStore(config)
        self.store.open()
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def execute(self, run_id: str) -> None:
        with run_context(run_id):
            try:
                state = self.store.get(run_id)
            except RunNotFound:
                log.warning("run %s: not in the store (deleted?); nothing to run", run_id)
                return
            if state.status != "queued":
                if state.status == "running":
                    log.warning(
                        "run %s: delivered again while running (its worker was lost); "
                        "the sweeper ends it once its heartbeat expires",
                        run_id,
                    )
                return  # cancelled while queued, or a delivery of a run already done
            attempt = _Attempt(self.store, uuid.uuid4().hex)
            owner = {
                "worker": self.name,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "attempt": attempt.token,
            }
            started = self.store.try_transition(run_id, "running", expect=QUEUED, owner=owner)
            if started is None:
                return  # cancelled between the read and the move
            job = Job(
                run_id=run_id,
                options=state.options(),
                deadline=time.monotonic() + self.config.run_timeout_s,
            )
            log.info("run %s started on %s", run_id, self.name)
            runner = JobRunner(attempt, self.config, self.pipeline, attempt.delta)
            stop_beating = threading.Event()
            beat = threading.Thread(
                target=self._beat, args=(job, attempt, stop_beating), daemon=True, name="heartbeat"
            )
            beat.start()
            try:
                runner.run(job, self._should_stop(job, attempt))
            finally:
                stop_beating.set()
                beat.join(timeout=5)
                log.info("run %s ended", run_id)

    def _beat(self, job: Job, attempt: _Attempt, stop: threading.Event) -> None:
        while not stop.wait(self.config.heartbeat_s):
            try:
                if not self.store.beat(job.run_id, attempt.token):
                    log.warning("run %s: no longer this worker's; stopping it", job.run_id)
                    job.request_stop("lost")
                    return
            except StoreUnavailable:
                log.warning("run %s: heartbeat missed (Redis unreachable)", job.run_id)

    def _should_stop(self, job: Job, attempt: _Attempt) -> Callable[[], bool]:
        checked = 0.0

        def should_stop() -> bool:
            nonlocal checked
            if job.stop_requested:
                return True
            now = time.monotonic()
            if now > job.deadline:
                job.reason = "timeout"
                return True
            if now - checked >= CANCEL_POLL_S:  # one Redis read per interval, not per call
                checked = now
                try:
                    reason = self.store.stop_requested(job.run_id, attempt.token)
                except StoreUnavailable:
                    log.warning("run %s: cannot read its state (Redis unreachable)", job.run_id)
                    reason = None
                if reason is not None:
                    job.request_stop(reason)
                    return True
            return False

        return should_stop


class CeleryExecutor:
    """The API node's side: queue runs for the workers, cancel them."""

    def __init__(self, store: RedisRunStore, config: AppConfig, app: Celery | None = None):
        self.store = store
        self.config = config
        self.celery = app or make_celery(config)
        self._closed = False

    @property
    def queued(self) -> int:
        return self.store.count_by_status()["queued"]

    @property
    def running(self) -> int:
        return self.store.count_by_status()["running"]

    @property
    def accepting(self) -> bool:
        return not self._closed

    def submit(self, run_id: str, options: RunOptions) -> RunState:
        """Record the run and send its task; QueueFull (nothing written) when the queue is full.

        The queue bound is checked in the transaction that records the run, so all the nodes
        together never queue more than APP_MAX_QUEUED.
        """
        if self._closed:
            raise ShuttingDown(retry_after_s=5)
        state = self.store.create(run_id, options, max_queued=self.config.max_queued)
        try:
            self.celery.send_task(TASK_NAME, args=[run_id], task_id=run_id)
        except Exception as exc:
            log.exception("run %s: the task could not be sent", run_id)
            self.store.try_transition(
                run_id, "failed", expect=QUEUED, finish_reason="error", error=BROKER_ERROR
            )
            raise StoreUnavailable(f"the broker refused the run: {exc}") from exc
        return state

    async def asubmit(self, run_id: str, options: RunOptions) -> RunState:
        """:meth:`submit` for the event loop: Redis and the broker are reached from a thread."""
        return await anyio.to_thread.run_sync(
            self.submit, run_id, options, limiter=thread_limiter("submission", SUBMISSION_THREADS)
        )

    def cancel(self, run_id: str) -> tuple[RunState, bool]:
        """Stop a run: a queued one at once, a running one through its cancel key."""
        state = self.store.get(run_id)
        if state.status == "stopped":
            return state, False
        if state.terminal:
            raise RunAlreadyFinished(run_id, state.status)
        if state.status == "queued":
            stopped = self.store.try_transition(
                run_id, "stopped", expect=QUEUED, finish_reason="cancelled"
            )
            if stopped is not None:
                return stopped, True
        # Running (or it started since we looked): its worker reads the key, which is set
        # only while the run is running.
        if self.store.request_cancel(run_id):
            return self.store.get(run_id), True
        state = self.store.get(run_id)  # it ended meanwhile
        if state.status == "stopped":
            return state, False
        raise RunAlreadyFinished(run_id, state.status)

    def shutdown(self) -> None:
        """Stop accepting runs; runs belong to the workers and go on."""
        self._closed = True
        self.celery.close()


class Sweeper:
    """What every API node checks each heartbeat interval, so that no run is left behind.

    - Lost runs: a running run whose worker's heartbeat expired is recorded
      failed/interrupted (``worker_lost``); it is never run again silently. Heartbeats are
      judged only ``HEARTBEAT_LIVES`` intervals after Redis became reachable again: an
      outage stops every heartbeat, and a healthy worker needs one interval to beat again.
    - Durations: runs end on the workers, so each pass takes the durations of runs that
      ended into this node's ``answer_run_duration_seconds``.
    - Stranded runs: a queued run whose message the broker lost (a consumer frozen or
      killed while holding it, a broker that dropped it) is sent again (see
      ``RedisRunStore.stranded_runs``). A delivery of a run that an attempt has already
      claimed does nothing (``WorkerRuntime.execute``), so a run runs at most once.
    """

    def __init__(
        self,
        store: RedisRunStore,
        celery: Celery,
        config: AppConfig,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        self.store = store
        self.celery = celery
        self.config = config
        self.observe = observe  # where ended runs' durations go (this node's metrics)
        # A node that starts (perhaps with Redis, after an outage) gives the workers the
        # same grace as one that saw Redis come back.
        self.judge_after = time.monotonic() + HEARTBEAT_LIVES * config.heartbeat_s
        self.reachable = True

    def sweep(self) -> None:
        """One pass (blocking: Redis and the broker are reached from a thread).

        Only a failed probe means Redis is away; a step that fails otherwise (an
        out-of-memory Redis refusing a write, a broker refusing a send) is logged and the
        other steps still run."""
        try:
            self.store.count()  # a read: fails only when Redis cannot be reached
        except StoreUnavailable:
            if self.reachable:
                log.warning("sweeper: Redis is unreachable; heartbeats are not judged")
            self.reachable = False
            raise
        if not self.reachable:
            self.reachable = True
            grace = HEARTBEAT_LIVES * self.config.heartbeat_s
            self.judge_after = time.monotonic() + grace
            log.info("sweeper: Redis is back; heartbeats are judged again in %.1f s", grace)
        for step in (self._lost, self._stranded, self._durations):
            try:
                step()
            except Exception:  # one failed step must not skip the others
                log.exception("sweeper: %s failed", step.__name__)

    def _lost(self) -> None:
        if time.monotonic() < self.judge_after:
            return
        for run_id in self.store.lost_runs():
            moved = self.store.try_transition(
                run_id, "failed", expect=RUNNING, finish_reason="interrupted", error=LOST_ERROR
            )
            if moved is not None:
                log.warning("run %s: its worker was lost; recorded failed/interrupted", run_id)

    def _stranded(self) -> None:
        for run_id in self.store.stranded_runs(grace_s=self.config.requeue_grace_s):
            try:
                self.celery.send_task(TASK_NAME, args=[run_id], task_id=run_id)
            except Exception:  # the broker is away: the next pass tries again
                log.exception("run %s: could not be sent again", run_id)
                continue
            times = self.store.mark_resent(run_id)
            log.warning("run %s: queued with no worker on it; sent again (%d)", run_id, times)

    def _durations(self) -> None:
        if self.observe is None:
            return
        for status, seconds in self.store.take_durations():
            try:
                self.observe(status, seconds)
            except Exception:
                log.exception("sweeper: a run duration could not be observed")


async def sweep(sweeper: Sweeper, *, interval_s: float, stop: anyio.Event) -> None:
    """Run ``sweeper`` every ``interval_s`` until ``stop``."""
    while not stop.is_set():
        try:
            await anyio.to_thread.run_sync(sweeper.sweep)
        except StoreUnavailable:
            pass  # said once by the sweeper; the next pass tries again
        except Exception:  # a failed pass must not take the server down; the next one retries
            log.exception("sweeper: the pass failed")
        with anyio.move_on_after(interval_s):
            await stop.wait()
