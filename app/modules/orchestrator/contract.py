"""What a pipeline is, as the API sees it: its call shape, its result and its error.

Apart from the engine (``module.py``) so that the API can name them without importing the
engine: retrieval, wordfreq and numpy load when the first run needs them, not before the
server can answer (``run_executor.load_pipeline``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from app.config import AppConfig
from app.modules.atomic_file import write_json_atomic, write_text_atomic

Event = dict[str, Any]
OnEvent = Callable[[Event], None]
ShouldStop = Callable[[], bool]


class Pipeline(Protocol):
    """What answers a run: ``run_pipeline`` below, or any ``APP_PIPELINE`` with its shape.

    Test and benchmark pipelines are checked against it by mypy (each module assigns its
    functions to a ``Pipeline`` name).
    """

    def __call__(
        self,
        config: AppConfig,
        question: str,
        run_id: str,
        *,
        on_event: OnEvent | None = ...,
        should_stop: ShouldStop | None = ...,
    ) -> PipelineResult: ...


class PipelineError(RuntimeError):
    """A run could not produce an answer; ``code`` is stable, the message is for a person."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class PipelineResult:
    run_id: str
    status: str  # completed | completed_with_gaps | stopped
    finish_reason: str  # answered | answered_with_gaps | cancelled
    final_output_path: Path | None = None
    context_bundle_path: Path | None = None
    run_log_path: Path | None = None
    gaps: list[str] = field(default_factory=list)
    evidence_count: int = 0
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class RunCall:
    """One call of a pipeline with its arguments in one value, the defaults filled in: what
    a pipeline written with ``@pipeline`` receives (the test and benchmark pipelines)."""

    config: AppConfig
    question: str
    run_id: str
    emit: OnEvent
    should_stop: ShouldStop

    @property
    def run_dir(self) -> Path:
        return self.config.output_root / self.run_id

    def save(
        self, answer: str, bundle: dict[str, Any], *, with_gaps: bool = False
    ) -> PipelineResult:
        """final.md and context_bundle.json written atomically; the finished run's result."""
        final, bundle_path = self.run_dir / "final.md", self.run_dir / "context_bundle.json"
        write_text_atomic(final, answer)
        write_json_atomic(bundle_path, bundle)
        status, reason = (
            ("completed_with_gaps", "answered_with_gaps")
            if with_gaps
            else ("completed", "answered")
        )
        return PipelineResult(
            self.run_id,
            status,
            reason,
            final_output_path=final,
            context_bundle_path=bundle_path,
            evidence_count=len(bundle.get("evidence", [])),
        )


def pipeline(body: Callable[[RunCall], PipelineResult]) -> Pipeline:
    """A ``Pipeline`` from a function of one ``RunCall``: the shape ``APP_PIPELINE`` loads,
    without writing out its signature again."""

    def run(
        config: AppConfig,
        question: str,
        run_id: str,
        *,
        on_event: OnEvent | None = None,
        should_stop: ShouldStop | None = None,
    ) -> PipelineResult:
        call = RunCall(config, question, run_id, on_event or _ignore, should_stop or _never)
        return body(call)

    run.__name__, run.__qualname__, run.__doc__ = body.__name__, body.__qualname__, body.__doc__
    return run


def _ignore(_event: Event) -> None:
    return None


def _never() -> bool:
    return False
