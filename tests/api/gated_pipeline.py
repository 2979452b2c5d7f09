"""A deterministic stand-in for ``run_pipeline`` that API tests steer run by run.

Each run looks up its :class:`Gate` in a module-level registry (by run id): it reports a
progress event, sets ``started`` and then waits for the test to set ``release``, checking
``should_stop`` while it waits, exactly as the real engine checks between stages. What it does
once released is the gate's ``behaviour``. A run without a registered gate completes at once,
so tests only register gates for the runs they want to hold.

Select it with ``AppConfig(pipeline="tests.api.gated_pipeline:gated_pipeline")``, or
``APP_PIPELINE=tests.api.gated_pipeline:blocking_pipeline`` for a server in a subprocess
(the registry does not cross processes; that variant runs until it is asked to stop).
``APP_PIPELINE=tests.api.gated_pipeline:file_gated_pipeline`` is steered through files the
test creates in ``output/<run_id>/`` instead, so it works across processes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from app.config import AppConfig
from app.modules.atomic_file import write_json_atomic, write_text_atomic
from app.modules.orchestrator.module import (
    OnEvent,
    Pipeline,
    PipelineError,
    PipelineResult,
    ShouldStop,
)

Behaviour = Literal[
    "complete",  # write final.md and context_bundle.json, end completed
    "complete_with_gaps",  # the same, with a gap, end completed_with_gaps
    "pipeline_error",  # raise PipelineError(error_code, message) before writing anything
    "fail_after_writing",  # write final.md, then raise PipelineError
    "crash",  # raise a plain exception (a bug in the engine)
    "block",  # ignore release; run until should_stop() says stop
]

POLL_S = 0.01
CRASH_MESSAGE = "gated pipeline crashed on purpose"


@dataclass
class Gate:
    """What one run does, and the events a test waits on."""

    behaviour: Behaviour = "complete"
    error_code: str = "gated_failure"
    message: str = "the gated pipeline failed on purpose"
    started: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)  # saw should_stop()
    calls: int = 0
    config: AppConfig | None = None  # the configuration the executor passed in
    question: str | None = None


_lock = threading.Lock()
_gates: dict[str, Gate] = {}


def gate(run_id: str, behaviour: Behaviour = "complete", **options: Any) -> Gate:
    """Register (or replace) the gate of ``run_id``; it holds the run until released."""
    new = Gate(behaviour=behaviour, **options)
    with _lock:
        _gates[run_id] = new
    return new


def reset() -> None:
    """Release every gate and forget them (test teardown: no worker thread stays parked)."""
    with _lock:
        gates = list(_gates.values())
        _gates.clear()
    for each in gates:
        each.release.set()


def _gate_for(run_id: str) -> Gate:
    with _lock:
        found = _gates.get(run_id)
        if found is None:
            found = _gates[run_id] = Gate()
            found.release.set()
        return found


def _never() -> bool:
    return False


def gated_pipeline(
    config: AppConfig,
    question: str,
    run_id: str,
    *,
    on_event: OnEvent | None = None,
    should_stop: ShouldStop | None = None,
) -> PipelineResult:
    """run_pipeline's signature; behaves as the run's gate says."""
    g = _gate_for(run_id)
    stop = should_stop or _never
    emit = on_event or (lambda _event: None)
    with _lock:
        g.calls += 1
        g.config, g.question = config, question
    emit(_progress("gate", "Waiting for the test to release the run", 1))
    g.started.set()
    if g.behaviour == "block":
        while not stop():
            g.stopped.wait(POLL_S)  # never set here: a bounded pause between checks
        return _stopped(g, run_id)
    while not g.release.wait(POLL_S):
        if stop():
            return _stopped(g, run_id)

    run_dir = config.output_root / run_id
    if g.behaviour == "pipeline_error":
        raise PipelineError(g.error_code, g.message)
    if g.behaviour == "crash":
        raise RuntimeError(CRASH_MESSAGE)
    emit(_progress("save", "Saving the answer and its evidence", 2))
    final_path = run_dir / "final.md"
    write_text_atomic(final_path, f"# Answer\n\n{question} The answer is 42 [1].\n")
    if g.behaviour == "fail_after_writing":
        raise PipelineError(g.error_code, g.message)
    with_gaps = g.behaviour == "complete_with_gaps"
    bundle_path = run_dir / "context_bundle.json"
    write_json_atomic(
        bundle_path,
        {
            "run_id": run_id,
            "question": question,
            "evidence": [{"id": 1, "source": "documents/reports/fleet.md", "text": "42"}],
            "citations": [{"marker": "[1]", "evidence_id": 1}],
            "gaps": [{"part": 2, "text": "the unanswerable part"}] if with_gaps else [],
        },
    )
    status, reason = (
        ("completed_with_gaps", "answered_with_gaps") if with_gaps else ("completed", "answered")
    )
    return PipelineResult(
        run_id,
        status,
        reason,
        final_output_path=final_path,
        context_bundle_path=bundle_path,
        evidence_count=1,
    )


def blocking_pipeline(
    config: AppConfig,
    question: str,
    run_id: str,
    *,
    on_event: OnEvent | None = None,
    should_stop: ShouldStop | None = None,
) -> PipelineResult:
    """A run that never finishes on its own: it stops when should_stop() says so."""
    gate(run_id, "block")
    return gated_pipeline(config, question, run_id, on_event=on_event, should_stop=should_stop)


RELEASE_FILE = "release"
FILE_GATED_ANSWER = "The answer is 42 [1].\n"


def delta_file(number: int) -> str:
    """The file that lets a file-gated run write the ``number``-th piece of its answer."""
    return f"delta-{number}"


def delta_text(number: int) -> str:
    return f"Piece {number}. "


def file_gated_pipeline(
    config: AppConfig,
    question: str,
    run_id: str,
    *,
    on_event: OnEvent | None = None,
    should_stop: ShouldStop | None = None,
) -> PipelineResult:
    """A run steered through files in ``output/<run_id>/`` (works in a server subprocess).

    It reports progress ``gate`` and waits. Each file ``delta-<n>`` (n = 1, 2, ...) lets it
    emit the n-th answer_delta, in order; ``release`` lets it finish ``completed``, with a last
    delta, so that the deltas add up to final.md. It checks ``should_stop`` while it waits.
    """
    stop = should_stop or _never
    emit = on_event or (lambda _event: None)
    run_dir = config.output_root / run_id
    emit(_progress("gate", "Waiting for the test to release the run", 1))
    pieces: list[str] = []
    while True:
        while (run_dir / delta_file(len(pieces) + 1)).exists():
            pieces.append(delta_text(len(pieces) + 1))
            emit({"type": "answer_delta", "text": pieces[-1]})
        if (run_dir / RELEASE_FILE).exists():
            break
        if stop():
            return PipelineResult(run_id, "stopped", "cancelled")
        time.sleep(POLL_S)  # a bounded pause between looks at the files
    emit({"type": "answer_delta", "text": FILE_GATED_ANSWER})
    emit(_progress("save", "Saving the answer and its evidence", 2))
    final_path = run_dir / "final.md"
    write_text_atomic(final_path, "".join(pieces) + FILE_GATED_ANSWER)
    bundle_path = run_dir / "context_bundle.json"
    write_json_atomic(
        bundle_path,
        {
            "run_id": run_id,
            "question": question,
            "evidence": [{"id": 1, "source": "documents/reports/fleet.md", "text": "42"}],
            "citations": [{"marker": "[1]", "evidence_id": 1}],
            "gaps": [],
        },
    )
    return PipelineResult(
        run_id,
        "completed",
        "answered",
        final_output_path=final_path,
        context_bundle_path=bundle_path,
        evidence_count=1,
    )


def _stopped(g: Gate, run_id: str) -> PipelineResult:
    g.stopped.set()
    return PipelineResult(run_id, "stopped", "cancelled")


def _progress(stage: str, message: str, step: int) -> dict[str, Any]:
    return {
        "type": "progress",
        "stage": stage,
        "message": message,
        "step": step,
        "total_steps": 2,
    }


def malformed_pipeline(
    config: AppConfig,
    question: str,
    run_id: str,
    *,
    on_event: OnEvent | None = None,
    should_stop: ShouldStop | None = None,
) -> Any:
    """A broken custom pipeline (APP_PIPELINE): returns something that is no result."""
    return object()


# Checked by mypy against the shape every pipeline has (app.modules.orchestrator.module).
_gated_pipeline: Pipeline = gated_pipeline
_blocking_pipeline: Pipeline = blocking_pipeline
_file_gated_pipeline: Pipeline = file_gated_pipeline
_malformed_pipeline: Pipeline = malformed_pipeline
