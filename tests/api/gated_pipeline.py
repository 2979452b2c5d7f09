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

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from app.config import AppConfig
from app.modules.atomic_file import write_text_atomic
from app.modules.orchestrator.contract import PipelineError, PipelineResult, RunCall, pipeline

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


@pipeline
def gated_pipeline(call: RunCall) -> PipelineResult:
    """Behaves as the run's gate says."""
    g = _gate_for(call.run_id)
    with _lock:
        g.calls += 1
        g.config, g.question = call.config, call.question
    call.emit(_progress("gate", "Waiting for the test to release the run", 1))
    g.started.set()
    if g.behaviour == "block":
        while not call.should_stop():
            g.stopped.wait(POLL_S)  # never set here: a bounded pause between checks
        return _stopped(g, call.run_id)
    while not g.release.wait(POLL_S):
        if call.should_stop():
            return _stopped(g, call.run_id)

    if g.behaviour == "pipeline_error":
        raise PipelineError(g.error_code, g.message)
    if g.behaviour == "crash":
        raise RuntimeError(CRASH_MESSAGE)
    call.emit(_progress("save", "Saving the answer and its evidence", 2))
    answer = f"# Answer\n\n{call.question} The answer is 42 [1].\n"
    if g.behaviour == "fail_after_writing":
        write_text_atomic(call.run_dir / "final.md", answer)
        raise PipelineError(g.error_code, g.message)
    with_gaps = g.behaviour == "complete_with_gaps"
    gaps = [{"part": 2, "text": "the unanswerable part"}] if with_gaps else []
    return call.save(answer, _bundle(call, gaps), with_gaps=with_gaps)


def _bundle(call: RunCall, gaps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "run_id": call.run_id,
        "question": call.question,
        "evidence": [{"id": 1, "source": "documents/reports/fleet.md", "text": "42"}],
        "citations": [{"marker": "[1]", "evidence_id": 1}],
        "gaps": gaps,
    }


@pipeline
def blocking_pipeline(call: RunCall) -> PipelineResult:
    """A run that never finishes on its own: it stops when should_stop() says so."""
    gate(call.run_id, "block")
    return gated_pipeline(
        call.config, call.question, call.run_id, on_event=call.emit, should_stop=call.should_stop
    )


RELEASE_FILE = "release"
CALLS_FILE = "calls"  # a file-gated run appends a line each time it is executed
FILE_GATED_ANSWER = "The answer is 42 [1].\n"


def delta_file(number: int) -> str:
    """The file that lets a file-gated run write the ``number``-th piece of its answer."""
    return f"delta-{number}"


def delta_text(number: int) -> str:
    return f"Piece {number}. "


@pipeline
def file_gated_pipeline(call: RunCall) -> PipelineResult:
    """A run steered through files in ``output/<run_id>/`` (works in a server subprocess).

    It reports progress ``gate`` and waits. Each file ``delta-<n>`` (n = 1, 2, ...) lets it
    emit the n-th answer_delta, in order; ``release`` lets it finish ``completed``, with a last
    delta, so that the deltas add up to final.md. It checks ``should_stop`` while it waits.
    """
    run_dir = call.run_dir
    with (run_dir / CALLS_FILE).open("a") as calls:  # one line per execution of the run
        calls.write(f"{os.getpid()}\n")
    call.emit(_progress("gate", "Waiting for the test to release the run", 1))
    pieces: list[str] = []
    while True:
        while (run_dir / delta_file(len(pieces) + 1)).exists():
            pieces.append(delta_text(len(pieces) + 1))
            call.emit({"type": "answer_delta", "text": pieces[-1]})
        if (run_dir / RELEASE_FILE).exists():
            break
        if call.should_stop():
            return PipelineResult(call.run_id, "stopped", "cancelled")
        time.sleep(POLL_S)  # a bounded pause between looks at the files
    call.emit({"type": "answer_delta", "text": FILE_GATED_ANSWER})
    call.emit(_progress("save", "Saving the answer and its evidence", 2))
    return call.save("".join(pieces) + FILE_GATED_ANSWER, _bundle(call, []))


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


def malformed_pipeline(config: AppConfig, question: str, run_id: str, **_: object) -> Any:
    """A broken custom pipeline (APP_PIPELINE): returns something that is no result."""
    return object()
