"""How a run is executed, whatever executes it: the Executor interface, the pipeline a run
calls (``load_pipeline``), and ``JobRunner``, one run from start to end.

Two executors meet the interface: the thread pool of one server
(backends/files/executor.py) and the Celery workers (backends/redis/executor.py); both run
a job with ``JobRunner``. Whatever the pipeline raises ends the run as ``failed`` with a
code and a message a person can act on; the traceback goes to the log and to the run's
stored state only.
"""

from __future__ import annotations

import importlib
import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from app.api.services.run_store import RunOptions, RunState
from app.config import AppConfig
from app.modules.orchestrator.contract import (
    Pipeline,
    PipelineError,
    PipelineResult,
    RunCall,
    pipeline,
)

log = logging.getLogger(__name__)

DeltaListener = Callable[[str, str], None]

SHUTDOWN_ERROR = {
    "code": "server_shutdown",
    "message": "the server shut down while the run was active; start the run again",
}


class RunWriter(Protocol):
    """What running a job needs of a store (the file store and the Redis store both)."""

    @property
    def root(self) -> Path: ...

    def try_transition(
        self, run_id: str, status: str, *, expect: frozenset[str] | None = None, **changes: Any
    ) -> RunState | None: ...

    def progress(self, run_id: str, *, stage: str, message: str, step: int, total: int) -> None: ...


@dataclass(slots=True)
class Job:
    """A run on its way through an executor.

    Hundreds of thousands may wait in a queue, so a job is one small object: the stop request
    is a plain flag (set by one thread, polled by the run's ``should_stop``; nothing blocks on
    it), not a ``threading.Event``, whose condition, locks and bound methods made a queued run
    a dozen objects for the garbage collector to walk on every full pass.
    """

    run_id: str
    options: RunOptions  # what the client asked for: the question and the engine's options
    stop_requested: bool = False
    reason: str = "cancelled"  # why a stop was asked: cancelled | timeout | shutdown | lost
    deadline: float = 0.0
    waiting: bool = True  # holds a queue slot until it starts or is cancelled

    def request_stop(self, reason: str) -> None:
        self.reason = reason
        self.stop_requested = True


def run_config(config: AppConfig, options: RunOptions) -> AppConfig:
    """The configuration one run's pipeline sees: the server's, with the request's options.

    Made when the run starts, not when it is queued: a POST only queues.
    """
    return config.model_copy(
        update={
            "markdown_path": options.markdown_path,
            "enable_sql": options.enable_sql,
            "log_llm_payload": options.log_llm_payload,
        }
    )


class JobRunner:
    """Calls the pipeline for a started run and records how it ended."""

    def __init__(
        self, store: RunWriter, config: AppConfig, pipeline: Pipeline, on_delta: DeltaListener
    ) -> None:
        self.store = store
        self.config = config
        self.pipeline = pipeline
        self.on_delta = on_delta

    def run(self, job: Job, should_stop: Callable[[], bool]) -> None:
        """Run a job that is ``running`` already; it ends terminal whatever happens."""
        try:
            self._run(job, should_stop)
        except Exception:
            # Whatever went wrong after the pipeline (a malformed result from a custom
            # pipeline, a failed state write): the run must not stay "running".
            log.exception("run %s: could not record the outcome", job.run_id)
            self.fail(job, "internal_error", "the server could not record the run's outcome")

    def _run(self, job: Job, should_stop: Callable[[], bool]) -> None:
        def on_event(event: dict[str, Any]) -> None:
            if event.get("type") == "progress":
                self.store.progress(
                    job.run_id,
                    stage=str(event.get("stage")),
                    message=str(event.get("message")),
                    step=int(event.get("step", 0)),
                    total=int(event.get("total_steps", 0)),
                )
            elif event.get("type") == "answer_delta":
                self.on_delta(job.run_id, str(event.get("text", "")))

        config = run_config(self.config, job.options)
        try:
            result = self.pipeline(
                config, job.options.question, job.run_id, on_event=on_event, should_stop=should_stop
            )
        except PipelineError as exc:
            self.fail(job, exc.code, exc.message)
            return
        except Exception as exc:
            log.exception("run %s: the pipeline raised", job.run_id)
            self.fail(job, "pipeline_error", _readable(exc))
            return
        self._finish(job, result)

    def _finish(self, job: Job, result: PipelineResult) -> None:
        artifacts: dict[str, Any] = {
            "final_output_path": self._relative(result.final_output_path),
            "context_bundle_path": self._relative(result.context_bundle_path),
        }
        if result.status == "stopped":
            error = None
            if job.reason == "timeout":
                limit = f"{self.config.run_timeout_s:g}"
                error = {"code": "run_timeout", "message": f"the run exceeded its {limit} s limit"}
            elif job.reason == "shutdown":
                error = SHUTDOWN_ERROR
            self.store.try_transition(
                job.run_id,
                "stopped",
                finish_reason="timeout" if job.reason == "timeout" else "cancelled",
                error=error,
                **artifacts,
            )
            return
        if result.status not in {"completed", "completed_with_gaps"}:
            self.fail(job, "pipeline_error", f"the pipeline ended with status {result.status!r}")
            return
        self.store.try_transition(
            job.run_id, result.status, finish_reason=result.finish_reason, **artifacts
        )

    def fail(self, job: Job, code: str, message: str) -> None:
        log.warning("run %s failed: %s: %s", job.run_id, code, message)
        self.store.try_transition(
            job.run_id,
            "failed",
            finish_reason="error",
            error={"code": code, "message": message},
            traceback=traceback.format_exc(),
            final_output_path=self._existing(job.run_id, "final.md"),
            context_bundle_path=self._existing(job.run_id, "context_bundle.json"),
        )

    def _existing(self, run_id: str, name: str) -> str | None:
        path = self.store.root / run_id / name
        return self.config.relative(path) if path.exists() else None

    def _relative(self, path: Path | None) -> str | None:
        return self.config.relative(path) if path is not None and path.exists() else None


def _readable(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


@pipeline
def builtin_pipeline(call: RunCall) -> PipelineResult:
    """The engine's ``run_pipeline``, imported by the first run that needs it: the engine
    (numpy, wordfreq, the openai client) is most of the server's import time, and a server
    is ready before it is loaded (``warm_up_engine`` loads it off the event loop)."""
    from app.modules.orchestrator.module import run_pipeline  # noqa: PLC0415

    return run_pipeline(
        call.config, call.question, call.run_id, on_event=call.emit, should_stop=call.should_stop
    )


def warm_up_engine() -> None:
    """Import the engine in a daemon thread, so that the first run does not wait for it.

    An engine that cannot be imported (a broken install) is logged here; each run then
    fails with that error too, with its message in the run's status."""

    def load() -> None:
        try:
            importlib.import_module("app.modules.orchestrator.module")
        except Exception:
            log.exception("the answer engine cannot be imported: every run will fail")

    threading.Thread(target=load, name="engine-import", daemon=True).start()


def load_pipeline(spec: str | None) -> Pipeline:
    """The built-in engine, or ``package.module:function`` from APP_PIPELINE."""
    if not spec:
        return builtin_pipeline
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"APP_PIPELINE must look like 'package.module:function', not {spec!r}")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"APP_PIPELINE {spec!r} cannot be loaded: {exc}") from exc
    if not callable(target):
        raise ValueError(f"APP_PIPELINE {spec!r} is not callable")
    return target  # type: ignore[no-any-return]


class Executor(Protocol):
    def submit(self, run_id: str, options: RunOptions) -> RunState: ...

    async def asubmit(self, run_id: str, options: RunOptions) -> RunState: ...

    def cancel(self, run_id: str) -> tuple[RunState, bool]: ...

    @property
    def queued(self) -> int: ...

    @property
    def running(self) -> int: ...

    @property
    def accepting(self) -> bool: ...

    def shutdown(self) -> None: ...
