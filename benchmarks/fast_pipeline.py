"""A pipeline for bench_scale.py that finishes at once, so that the figure is the backend's.

``APP_PIPELINE=benchmarks.fast_pipeline:answer_at_once``: one progress event, one piece of
answer, final.md and context_bundle.json written atomically, ``completed``. No retrieval,
no model: what is left to measure is queueing, state changes and events.
"""

from __future__ import annotations

from app.modules.orchestrator.contract import PipelineResult, RunCall, pipeline

ANSWER = "# Answer\n\nNorthwind ran 186 battery-electric trucks [1].\n"


@pipeline
def answer_at_once(call: RunCall) -> PipelineResult:
    call.emit(
        {"type": "progress", "stage": "write", "message": "Writing", "step": 1, "total_steps": 1}
    )
    call.emit({"type": "answer_delta", "text": ANSWER})
    return call.save(ANSWER, {"run_id": call.run_id, "question": call.question, "evidence": []})
