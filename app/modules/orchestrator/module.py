"""run_pipeline(): plan -> retrieve -> (sql) -> write -> check -> save, for one run.

Plain synchronous code meant for a worker thread. It reports each stage and each piece of
the answer through ``on_event``, looks at ``should_stop`` between stages and while the answer
streams, and leaves ``final.md``, ``context_bundle.json`` and ``run.json`` in
``output/<run_id>/``. Real failures raise :class:`PipelineError` with a message a person can
act on; the traceback stays in the log and in run.json.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.config import AppConfig
from app.modules.atomic_file import write_json_atomic, write_text_atomic
from app.modules.evidence import AnswerBrief, Part, cited_ids
from app.modules.llm.base import LLMError, WriterStopped
from app.modules.llm.extractive import (
    ExtractiveWriter,
)
from app.modules.llm.factory import make_writer
from app.modules.llm.openai_provider import uncovered_statements
from app.modules.orchestrator.citations import (
    closing_sections,
    drop_invalid_citations,
    write_numbered,
)
from app.modules.orchestrator.contract import (
    Event,
    OnEvent,
    Pipeline,
    PipelineError,
    PipelineResult,
    RunCall,
    ShouldStop,
    pipeline,
)
from app.modules.orchestrator.evidence_selection import retrieve_evidence
from app.modules.orchestrator.gaps import assess_gaps, combine_model_gaps, gap_statement
from app.modules.orchestrator.planner import plan_parts
from app.modules.orchestrator.sql_stage import run_sql
from app.modules.retrieval.index import IndexUnavailable, SectionIndex, index_path_for
from app.modules.retrieval.retriever import Query, search_weights
from app.modules.run_logger import RunLogger, utc_now

__all__ = [
    "Event",
    "OnEvent",
    "Pipeline",
    "PipelineError",
    "PipelineResult",
    "RunCall",
    "ShouldStop",
    "pipeline",
    "run_pipeline",
]

NAME_WEIGHT = 1.6


class _Stopped(Exception):
    pass


class _Progress:
    def __init__(self, on_event: OnEvent | None, should_stop: ShouldStop | None, total: int):
        self._on_event = on_event
        self._should_stop = should_stop or (lambda: False)
        self.total = total
        self.step = 0

    def stage(self, stage: str, message: str) -> None:
        if self._should_stop():
            raise _Stopped
        self.step += 1
        self.emit(
            {
                "type": "progress",
                "stage": stage,
                "message": message,
                "step": self.step,
                "total_steps": self.total,
            }
        )

    def delta(self, text: str) -> None:
        self.emit({"type": "answer_delta", "text": text})

    def emit(self, event: Event) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def stop_requested(self) -> bool:
        return self._should_stop()


def _config_snapshot(config: AppConfig) -> dict[str, Any]:
    # No secrets, no absolute paths: run.json may be shared with whoever debugs a run.
    data = config.model_dump(mode="json", exclude={"llm_api_key", "api_keys", "base_dir"})
    data["llm_api_key_set"] = config.llm_api_key is not None
    return data


def run_pipeline(
    config: AppConfig,
    question: str,
    run_id: str,
    *,
    on_event: OnEvent | None = None,
    should_stop: ShouldStop | None = None,
) -> PipelineResult:
    """Answer ``question`` over ``config.markdown_path``; artifacts go to output/<run_id>/."""
    question = question.strip()
    if not question:
        raise PipelineError("invalid_question", "the question is empty")
    run_dir = config.output_root / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    logger = RunLogger(run_dir, run_id, config=_config_snapshot(config), question=question)
    progress = _Progress(on_event, should_stop, total=7 if config.enable_sql else 6)
    started = time.perf_counter()
    try:
        result = _run(config, question, run_id, run_dir, logger, progress)
    except _Stopped:
        logger.finish("stopped", "cancelled")
        return PipelineResult(
            run_id,
            "stopped",
            "cancelled",
            run_log_path=logger.path,
            seconds=time.perf_counter() - started,
        )
    except PipelineError as exc:
        logger.data["traceback"] = traceback.format_exc()
        logger.finish("failed", "error", {"code": exc.code, "message": exc.message})
        raise
    except Exception as exc:
        logger.data["traceback"] = traceback.format_exc()
        logger.finish("failed", "error", {"code": "pipeline_error", "message": str(exc)})
        raise
    result.seconds = time.perf_counter() - started
    return result


def _run(
    config: AppConfig,
    question: str,
    run_id: str,
    run_dir: Path,
    logger: RunLogger,
    progress: _Progress,
) -> PipelineResult:
    root = config.documents_path()
    if not root.is_dir():
        raise PipelineError(
            "markdown_path_missing", f"the documents folder '{config.markdown_path}' does not exist"
        )

    progress.stage("load_documents", f"Indexing markdown under {config.markdown_path}")
    with logger.step("load_documents") as details:
        try:
            index = SectionIndex.open(index_path_for(config.index_root, root))
        except IndexUnavailable as exc:
            raise PipelineError("index_unavailable", str(exc)) from exc
        try:
            report = index.sync(
                root, max_chars=config.chunk_max_chars, overlap_chars=config.chunk_overlap_chars
            )
        except sqlite3.OperationalError as exc:
            index.close()
            raise PipelineError(
                "index_unavailable", f"the search index could not be updated: {exc}"
            ) from exc
        details.update(
            files=report.files,
            indexed=report.indexed,
            removed=report.removed,
            sections=report.sections,
            seconds=round(report.seconds, 4),
        )
        for warning in report.warnings:
            logger.warn(warning)
    try:
        return _answer(config, question, run_id, run_dir, logger, progress, index, root)
    finally:
        index.close()


def _answer(
    config: AppConfig,
    question: str,
    run_id: str,
    run_dir: Path,
    logger: RunLogger,
    progress: _Progress,
    index: SectionIndex,
    root: Path,
) -> PipelineResult:
    if index.section_count() == 0:
        logger.warn(f"no markdown sections found under {config.markdown_path}")

    progress.stage("plan", "Splitting the question into its parts")
    with logger.step("plan") as details:
        planned = plan_parts(question)
        parts = [
            Part(
                id=i,
                text=p.text,
                query=Query.from_text(p.text, extra=p.context),
                broad=p.broad,
                scene=p.scene,
                follows=i > 1 and bool(p.context),
            )
            for i, p in enumerate(planned, start=1)
        ]
        details["parts"] = [p.text for p in parts]

    progress.stage("retrieve", f"Searching {index.section_count()} sections")
    with logger.step("retrieve") as details:
        idf = index.idf({t: f for p in parts for t, f in p.query.forms.items()})
        # A named thing ("Northwind", "Volt Haul") is what a question is about: evidence
        # about another organisation that shares the other words is not an answer.
        for name in {n for p in parts for n in p.query.names}:
            idf[name] = idf.get(name, 0.0) * NAME_WEIGHT
        specific = {t: max(p.query.specific.get(t, 0.0) for p in parts) for t in idf}
        evidence = retrieve_evidence(index, parts, search_weights(idf, specific), k=config.top_k)
        details["evidence"] = len(evidence)

    sql_runs: list[dict[str, Any]] = []
    if config.enable_sql:
        progress.stage("sql", "Querying the tables in the documents")
        with logger.step("sql") as details:
            sql_runs = run_sql(config, question, root, evidence, logger)
            details["queries"] = len(sql_runs)
            details["rows"] = sum(len(e.rows) for e in evidence if e.kind == "sql")

    unknown = set(index.unknown_terms({t: f for p in parts for t, f in p.query.forms.items()}))
    assess_gaps(parts, evidence, idf, unknown, index.mentions)

    writer = make_writer(config, payload_log=_payload_log(config, run_dir))
    logger.data["engine"] = {
        "provider": writer.name,
        "model": writer.model,
        "index": index.db_path.name,
        "retrieval": "sqlite-fts5-bm25+wordllama-rrf",
    }
    progress.stage("write", f"Writing the answer ({writer.name})")
    # What the writer weighs a question's words by: rare in the documents and specific in
    # English ("salary", "Northwind"), not everyday phrasing ("put", "right now").
    weights = {
        t: w * max((p.query.specific.get(t, 0.0) for p in parts), default=1.0)
        for t, w in idf.items()
    }
    brief = AnswerBrief(question=question, parts=parts, evidence=evidence, idf=weights)
    with logger.step("write") as details:
        try:
            if isinstance(writer, ExtractiveWriter):
                body = write_numbered(
                    writer,
                    brief,
                    sql_runs,
                    on_piece=progress.delta,
                    stop_requested=progress.stop_requested,
                )
            else:
                body = writer.write(
                    brief, on_delta=progress.delta, should_stop=progress.stop_requested
                )
        except WriterStopped as exc:
            raise _Stopped from exc
        except LLMError as exc:
            raise PipelineError("llm_error", str(exc)) from exc
        finally:
            close = getattr(writer, "close", None)
            if close:
                close()
        details["characters"] = len(body)

    progress.stage("check", "Checking citations and gaps")
    with logger.step("check") as details:
        valid = {e.id for e in evidence}
        body, invalid = drop_invalid_citations(body, valid)
        if isinstance(writer, ExtractiveWriter):
            for part in parts:
                part.gap_source = "detector" if part.gap else None
        else:
            combine_model_gaps(parts, uncovered_statements(body))
        tail = closing_sections(
            parts,
            evidence,
            body,
            several_or_model=(len(parts) > 1 or not isinstance(writer, ExtractiveWriter)),
        )
        final = body.rstrip() + ("\n\n" + tail if tail else "\n")
        # Stream exactly what completes the answer, so the pieces add up to final.md.
        progress.delta(final[len(body) :] if final.startswith(body) else tail)
        cited = [i for i in cited_ids(final) if i in valid]
        gaps = [p for p in parts if p.gap]
        details.update(cited=len(cited), invalid_citations=invalid, gaps=len(gaps))

    progress.stage("save", "Saving the answer and its evidence")
    with logger.step("save"):
        final_path = run_dir / "final.md"
        bundle_path = run_dir / "context_bundle.json"
        write_text_atomic(final_path, final)
        write_json_atomic(
            bundle_path,
            {
                "run_id": run_id,
                "question": question,
                "markdown_path": config.markdown_path,
                "created_at": utc_now(),
                "plan": [p.to_json() for p in parts],
                "evidence": [e.to_json() for e in evidence],
                "sql": sql_runs,
                "citations": [{"marker": f"[{i}]", "evidence_id": i} for i in cited],
                "invalid_citations": invalid,
                "gaps": [
                    {
                        "part": p.id,
                        "text": p.text,
                        "coverage": round(p.coverage, 3),
                        "missing_terms": p.missing,
                        "statement": gap_statement(p),
                        "source": p.gap_source,
                    }
                    for p in gaps
                ],
                "engine": logger.data["engine"],
                "timings": logger.timings(),
                "warnings": logger.data["warnings"],
            },
        )
    logger.data["counts"] = {
        "parts": len(parts),
        "evidence": len(evidence),
        "cited": len(cited),
        "gaps": len(gaps),
        "sql_queries": len(sql_runs),
    }
    status, reason = (
        ("completed_with_gaps", "answered_with_gaps") if gaps else ("completed", "answered")
    )
    logger.finish(status, reason)
    return PipelineResult(
        run_id,
        status,
        reason,
        final_output_path=final_path,
        context_bundle_path=bundle_path,
        run_log_path=logger.path,
        gaps=[p.text for p in gaps],
        evidence_count=len(evidence),
    )


def _payload_log(config: AppConfig, run_dir: Path) -> Callable[[str, dict[str, Any]], None] | None:
    if not config.log_llm_payload:
        return None
    path = run_dir / "llm_payloads.jsonl"
    secret = config.llm_api_key.get_secret_value() if config.llm_api_key else None
    lock = threading.Lock()

    def log(direction: str, payload: dict[str, Any]) -> None:
        line = json.dumps({"at": utc_now(), "direction": direction, **payload}, ensure_ascii=False)
        if secret:
            line = line.replace(secret, "[redacted]")
        with lock, path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    return log
