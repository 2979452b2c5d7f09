"""A pipeline for bench_api.py that never finishes on its own, so that runs pile up queued.

``APP_PIPELINE=benchmarks.stall_pipeline:wait_until_stopped`` (uvicorn started with the
repository as its working directory, so that ``benchmarks`` is importable). It has
``run_pipeline``'s signature, writes nothing, and returns a ``stopped`` result as soon as
``should_stop()`` says so (cancel, timeout or server shutdown), or after ``MAX_WAIT_S``.
"""

from __future__ import annotations

import time

from app.modules.orchestrator.contract import PipelineResult, RunCall, pipeline

POLL_S = 0.05
MAX_WAIT_S = 3600.0  # a bound of its own, should nobody ever ask it to stop


@pipeline
def wait_until_stopped(call: RunCall) -> PipelineResult:
    began = time.monotonic()
    call.emit(
        {
            "type": "progress",
            "stage": "wait",
            "message": "Waiting to be stopped",
            "step": 1,
            "total_steps": 1,
        }
    )
    while time.monotonic() - began < MAX_WAIT_S and not call.should_stop():
        time.sleep(POLL_S)
    return PipelineResult(
        run_id=call.run_id,
        status="stopped",
        finish_reason="cancelled",
        seconds=round(time.monotonic() - began, 4),
    )
