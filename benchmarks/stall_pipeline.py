"""A pipeline for bench_api.py that never finishes on its own, so that runs pile up queued.

``APP_PIPELINE=benchmarks.stall_pipeline:wait_until_stopped`` (uvicorn started with the
repository as its working directory, so that ``benchmarks`` is importable). It has
``run_pipeline``'s signature, writes nothing, and returns a ``stopped`` result as soon as
``should_stop()`` says so (cancel, timeout or server shutdown), or after ``MAX_WAIT_S``.
"""

from __future__ import annotations

import time

from app.config import AppConfig
from app.modules.orchestrator.module import OnEvent, Pipeline, PipelineResult, ShouldStop

POLL_S = 0.05
MAX_WAIT_S = 3600.0  # a bound of its own, should nobody ever ask it to stop


def wait_until_stopped(
    config: AppConfig,
    question: str,
    run_id: str,
    *,
    on_event: OnEvent | None = None,
    should_stop: ShouldStop | None = None,
) -> PipelineResult:
    began = time.monotonic()
    if on_event is not None:
        on_event(
            {
                "type": "progress",
                "stage": "wait",
                "message": "Waiting to be stopped",
                "step": 1,
                "total_steps": 1,
            }
        )
    while time.monotonic() - began < MAX_WAIT_S:
        if should_stop is not None and should_stop():
            break
        time.sleep(POLL_S)
    return PipelineResult(
        run_id=run_id,
        status="stopped",
        finish_reason="cancelled",
        seconds=round(time.monotonic() - began, 4),
    )


# Checked by mypy against the shape every pipeline has (app.modules.orchestrator.module).
_wait_until_stopped: Pipeline = wait_until_stopped
