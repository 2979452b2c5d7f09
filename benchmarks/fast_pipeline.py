"""A pipeline for bench_scale.py that finishes at once, so that the figure is the backend's.

``APP_PIPELINE=benchmarks.fast_pipeline:answer_at_once``: one progress event, one piece of
answer, final.md and context_bundle.json written atomically, ``completed``. No retrieval,
no model: what is left to measure is queueing, state changes and events.
"""

from __future__ import annotations

from app.config import AppConfig
from app.modules.atomic_file import write_json_atomic, write_text_atomic
from app.modules.orchestrator.module import OnEvent, Pipeline, PipelineResult, ShouldStop

ANSWER = "# Answer\n\nNorthwind ran 186 battery-electric trucks [1].\n"


def answer_at_once(
    config: AppConfig,
    question: str,
    run_id: str,
    *,
    on_event: OnEvent | None = None,
    should_stop: ShouldStop | None = None,
) -> PipelineResult:
    emit: OnEvent = on_event or (lambda _: None)
    emit({"type": "progress", "stage": "write", "message": "Writing", "step": 1, "total_steps": 1})
    emit({"type": "answer_delta", "text": ANSWER})
    run_dir = config.output_root / run_id
    final = run_dir / "final.md"
    write_text_atomic(final, ANSWER)
    bundle = run_dir / "context_bundle.json"
    write_json_atomic(bundle, {"run_id": run_id, "question": question, "evidence": []})
    return PipelineResult(
        run_id, "completed", "answered", final_output_path=final, context_bundle_path=bundle
    )


# Checked by mypy against the shape every pipeline has (app.modules.orchestrator.module).
_answer_at_once: Pipeline = answer_at_once
