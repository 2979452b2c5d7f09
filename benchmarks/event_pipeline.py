"""A pipeline for bench_events.py that emits events when the benchmark asks for them.

``APP_PIPELINE=benchmarks.event_pipeline:emit_on_demand`` (uvicorn started with the
repository as its working directory, so that ``benchmarks`` is importable). It has
``run_pipeline``'s signature and writes nothing but what the server writes for it.

1. It emits one progress event whose message is ``ready``: a subscriber that has received
   it is subscribed to the live events (the server subscribes before it replays the log).
2. It then waits for ``output/<run_id>/go-1``, ``go-2``, ... (the benchmark writes each one
   under a temporary name and renames it, so a file that exists is complete). A go file
   holds ``<count> <interval_s> <kind>`` (empty means ``1 0 progress``); the pipeline then
   emits ``count`` events of ``kind`` (``progress`` or ``answer_delta``), about
   ``interval_s`` apart (0.5x to 1.5x at random, so that nothing locks onto a period).
   Each event carries ``time.time()`` taken just before ``on_event`` is called: the
   progress message, or the delta text, is ``tick <n>.<k> <unix time>``.
3. A file named ``done`` ends the run as ``completed``; ``should_stop()`` (cancel, time
   limit, server shutdown) ends it as ``stopped``; ``MAX_WAIT_S`` bounds it regardless.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from app.modules.orchestrator.contract import PipelineResult, RunCall, pipeline

POLL_S = 0.005
MAX_WAIT_S = 900.0  # a bound of its own, should nobody ever end the run
MAX_COUNT = 10_000
KINDS = ("progress", "answer_delta")


def _order(path: Path) -> tuple[int, float, str]:
    """What a go file asks for: (count, interval in seconds, kind)."""
    words = path.read_text(encoding="utf-8").split()
    count = max(1, min(MAX_COUNT, int(words[0]))) if words else 1
    interval = max(0.0, min(10.0, float(words[1]))) if len(words) > 1 else 0.0
    kind = words[2] if len(words) > 2 and words[2] in KINDS else "progress"
    return count, interval, kind


@pipeline
def emit_on_demand(call: RunCall) -> PipelineResult:
    began = time.monotonic()
    run_dir, emit, stop = call.run_dir, call.emit, call.should_stop

    def progress(message: str, step: int) -> None:
        emit(
            {
                "type": "progress",
                "stage": "bench",
                "message": message,
                "step": step,
                "total_steps": 0,
            }
        )

    progress("ready", 0)
    status, reason = "stopped", "cancelled"
    n = 1
    while time.monotonic() - began < MAX_WAIT_S:
        if stop():
            break
        if (run_dir / "done").exists():
            status, reason = "completed", "answered"
            break
        go = run_dir / f"go-{n}"
        if not go.exists():
            time.sleep(POLL_S)
            continue
        count, interval, kind = _order(go)
        for k in range(1, count + 1):
            if k > 1 and interval:
                time.sleep(interval * random.uniform(0.5, 1.5))
            if stop():
                break
            label = f"tick {n}.{k} {time.time():.6f}"
            if kind == "progress":
                progress(label, n)
            else:
                emit({"type": "answer_delta", "text": label})
        n += 1
    return PipelineResult(
        run_id=call.run_id,
        status=status,
        finish_reason=reason,
        seconds=round(time.monotonic() - began, 4),
    )
