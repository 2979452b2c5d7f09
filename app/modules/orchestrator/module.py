"""run_pipeline(): plan -> retrieve -> (sql) -> write -> check -> save, for one run.

Plain synchronous code meant for a worker thread. It reports each stage and each piece of
the answer through ``on_event``, looks at ``should_stop`` between stages and while the answer
streams, and leaves ``final.md``, ``context_bundle.json`` and ``run.json`` in
``output/<run_id>/``. Real failures raise :class:`PipelineError` with a message a person can
act on; the traceback stays in the log and in run.json.
"""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from app.config import AppConfig
from app.modules.atomic_file import write_json_atomic, write_text_atomic
from app.modules.evidence import CITATION, AnswerBrief, Evidence, Part, cited_ids
from app.modules.llm.base import LLMError, WriterStopped
from app.modules.llm.extractive import (
    ExtractiveWriter,
    _answers,
    answer_pattern,
    gap_sentence,
    split_units,
)
from app.modules.llm.factory import make_writer
from app.modules.llm.openai_provider import uncovered_statements
from app.modules.orchestrator.planner import plan_parts
from app.modules.retrieval.index import Hit, IndexUnavailable, SectionIndex, index_path_for
from app.modules.retrieval.retriever import Query, Ranked, coverage, rank, section_stems
from app.modules.retrieval.text import STOPWORDS, stem, stems, words
from app.modules.run_logger import RunLogger, utc_now
from app.modules.sql.database import QueryRefused, ReadOnlyDatabase, build_table_database
from app.modules.sql.planner import plan_queries

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


# A part is a gap when its best passage covers less than this share of its weighted terms
# (IDF x specificity: a coverage threshold works across corpora, where a BM25 cut-off
# does not), or when a specific word of it (a name, a rare noun) is in no passage found.
GAP_COVERAGE = 0.5
GAP_PASSAGES = 6
KEY_SPECIFICITY = 0.7
PAIR_DISCOUNT = 0.9  # two sections of one file together: good, not as good as one
# Covered at least this much and no specific word absent: answered in part, not missed.
PARTIAL_COVERAGE = 0.4
# A question that asks for a value (an amount, a date, a number) needs a few sentences that
# hold such a value and cover this much of the question.
GAP_TYPED = 0.5
WINDOW_UNITS = 3
MAX_EVIDENCE = 16
NAME_WEIGHT = 1.6
SQL_TABLE_ROWS_SHOWN = 25


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
            Part(id=i, text=p.text, query=Query.from_text(p.text, extra=p.context), broad=p.broad)
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
        evidence = _retrieve(index, parts, idf, k=config.top_k)
        details["evidence"] = len(evidence)

    sql_runs: list[dict[str, Any]] = []
    if config.enable_sql:
        progress.stage("sql", "Querying the tables in the documents")
        with logger.step("sql") as details:
            sql_runs = _run_sql(config, question, root, evidence, logger)
            details["queries"] = len(sql_runs)
            details["rows"] = sum(len(e.rows) for e in evidence if e.kind == "sql")

    unknown = set(index.unknown_terms({t: f for p in parts for t, f in p.query.forms.items()}))
    _assess_gaps(parts, evidence, idf, unknown)

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
                body = _write_numbered(writer, brief, sql_runs, progress)
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
        body, invalid = _drop_invalid_citations(body, valid)
        if isinstance(writer, ExtractiveWriter):
            for part in parts:
                part.gap_source = "detector" if part.gap else None
        else:
            combine_model_gaps(parts, uncovered_statements(body))
        tail = _closing_sections(
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
                        "statement": _gap_statement(p),
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


def _write_numbered(
    writer: ExtractiveWriter,
    brief: AnswerBrief,
    sql_runs: list[dict[str, Any]],
    progress: _Progress,
) -> str:
    """The offline answer with its evidence renumbered 1..n in order of first citation.

    A reader follows [1], [2], [3] down the page; numbers that skip (1, 2, 7) look like
    missing sources. The offline writer composes in milliseconds, so the whole answer is
    composed, renumbered, and then streamed.
    """
    pieces = list(writer.compose(brief))
    order = list(dict.fromkeys(n for piece in pieces for n in cited_ids(piece)))
    known = {e.id for e in brief.evidence}
    order = [n for n in order if n in known]
    order += [e.id for e in brief.evidence if e.id not in order]
    mapping = {old: new for new, old in enumerate(order, start=1)}
    for item in brief.evidence:
        item.id = mapping[item.id]
    brief.evidence.sort(key=lambda e: e.id)
    for part in brief.parts:
        part.evidence_ids = [mapping[i] for i in part.evidence_ids]
        part.outline = [(mapping[i], heading) for i, heading in part.outline]
    for run in sql_runs:
        if "evidence_id" in run:
            run["evidence_id"] = mapping[run["evidence_id"]]
    body = ""
    for piece in pieces:
        if progress.stop_requested():
            raise _Stopped
        numbered = CITATION.sub(lambda m: _renumbered(m, mapping), piece)
        progress.delta(numbered)
        body += numbered
    return body


def _renumbered(match: re.Match[str], mapping: dict[int, int]) -> str:
    numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
    return "".join(f"[{mapping.get(n, n)}]" for n in numbers)


def _retrieve(
    index: SectionIndex, parts: list[Part], idf: dict[str, float], *, k: int
) -> list[Evidence]:
    """Evidence for every part, numbered so that each part's best come first (round-robin)."""
    per_part = [rank(index, p.query, k=k, idf=idf) for p in parts]
    evidence: list[Evidence] = []
    by_section: dict[int, Evidence] = {}
    limit = max(MAX_EVIDENCE, k)
    for position in range(max((len(r) for r in per_part), default=0)):
        for part, ranked in zip(parts, per_part, strict=True):
            if position >= len(ranked):
                continue
            item = ranked[position]
            existing = by_section.get(item.hit.id)
            if existing is None:
                if len(evidence) >= limit:
                    continue
                section = item.hit.section
                existing = Evidence(
                    id=len(evidence) + 1,
                    kind="section",
                    text=section.text,
                    score=item.score,
                    path=section.path,
                    title=section.title,
                    heading_path=section.heading_path,
                    line_start=section.line_start,
                    line_end=section.line_end,
                    stems=frozenset(section_stems(item.hit)),
                )
                by_section[item.hit.id] = existing
                evidence.append(existing)
            if part.id not in existing.parts:
                existing.parts.append(part.id)
                part.evidence_ids.append(existing.id)
    for part, ranked in zip(parts, per_part, strict=True):
        if part.broad:
            for heading, hit in _outline(index, ranked, part, idf):
                existing = by_section.get(hit.id)
                if existing is None:
                    existing = _section_evidence(len(evidence) + 1, hit, score=0.0)
                    by_section[hit.id] = existing
                    evidence.append(existing)
                if part.id not in existing.parts:
                    existing.parts.append(part.id)
                    part.evidence_ids.append(existing.id)
                part.outline.append((existing.id, heading))
    return evidence


def _section_evidence(number: int, hit: Hit, *, score: float) -> Evidence:
    section = hit.section
    return Evidence(
        id=number,
        kind="section",
        text=section.text,
        score=score,
        path=section.path,
        title=section.title,
        heading_path=section.heading_path,
        line_start=section.line_start,
        line_end=section.line_end,
        stems=frozenset(section_stems(hit)),
    )


# Sub-headings that repeat on every page of a template say nothing about what a page covers.
_TEMPLATE_HEADINGS = frozenset(
    """
    overview introduction background summary budget budgets timeline timelines schedule risk
    risks result results description considerations contact contacts references reference
    appendix notes note faq related details status scope purpose owner owners next steps
    see also further reading history changelog examples example usage
    """.split()
)
MAX_OUTLINE = 8


def _outline(
    index: SectionIndex, ranked: list[Ranked], part: Part, idf: dict[str, float]
) -> list[tuple[str, Hit]]:
    """For an overview question: the parts of the best matching document or section.

    "What are the main programmes of X?" is answered by the headings under the passage
    about X's programmes, each with its opening sentence: walk up from the best section
    until a level has at least two distinctive sub-headings (template sub-headings such as
    "Budget" or "Risks" do not count).
    """
    names = set(part.query.names)
    key = max(names, key=lambda n: idf.get(n, 0.0)) if names else None
    best = next(
        (
            r
            for r in ranked
            if key is None or key in set(stems(f"{r.hit.section.path} {r.hit.section.title}"))
        ),
        None,
    )
    if best is None:
        return []
    sections = index.file_sections(best.hit.section.path)
    headings = best.hit.section.headings
    for depth in range(len(headings), -1, -1):
        prefix = headings[:depth]
        groups: dict[str, Hit] = {}
        for hit in sections:
            own = hit.section.headings
            if len(own) > depth and own[:depth] == prefix and hit.section.text.strip():
                groups.setdefault(own[depth], hit)
        distinctive = [
            (name, hit)
            for name, hit in groups.items()
            if not set(words(name)) <= _TEMPLATE_HEADINGS | STOPWORDS
        ]
        if len(distinctive) >= 2:
            return distinctive[:MAX_OUTLINE]
    return []


def _assess_gaps(
    parts: list[Part], evidence: list[Evidence], idf: dict[str, float], unknown: set[str]
) -> None:
    """Mark each part whose subject the best passages leave uncovered.

    A term weighs its corpus IDF times its specificity, so a question's everyday words
    ("put", "right now", "roughly") cannot make a gap while its nouns and names can.
    Coverage is judged on the best passages (one section, or two sections of one file), not
    on a whole file: a huge changelog holds almost every word. A specific word that no
    document contains ("ferries", "kubernetes"), or a code name no passage found has
    ("--older-than"), is a gap on its own.
    """
    by_id = {e.id: e for e in evidence}
    sql = [e for e in evidence if e.kind == "sql"]
    for part in parts:
        terms = list(part.query.terms)
        if not terms:
            part.coverage, part.gap = 0.0, True
            continue
        weights = {t: idf.get(t, 0.0) * part.query.specific.get(t, 1.0) for t in terms}
        passages = [by_id[i] for i in part.evidence_ids[:GAP_PASSAGES]]
        views = [_passage_stems(e) for e in passages] + [set(e.stems) for e in sql]
        anywhere = set().union(*views) if views else set()
        best = max((coverage(terms, v, weights) for v in views), default=0.0)
        for first, second in itertools.combinations(range(len(passages)), 2):
            if passages[first].path == passages[second].path:
                pair = views[first] | views[second]
                best = max(best, PAIR_DISCOUNT * coverage(terms, pair, weights))
        # The words must also meet: a few sentences under their headings, not one word
        # in each corner of a long section.
        # Held to a value (an amount, a date), not to an identifier: "which setting" is often
        # answered by a sentence that names it in words.
        wanted = answer_pattern(part.text, identifiers=False)
        windows = [_window_coverage(terms, e, weights, wanted, part.text) for e in passages]
        near = max(
            [w[0] for w in windows] + [coverage(terms, set(e.stems), weights) for e in sql],
            default=0.0,
        )
        # Only a question that asks for a value is held to holding one.
        typed = (
            max([w[1] for w in windows] + [1.0 for _ in sql], default=0.0)
            if wanted is not None
            else 1.0
        )
        absent = [t for t in terms if t not in anywhere]
        key_absent = [
            t for t in absent if t in unknown and part.query.specific.get(t, 1.0) >= KEY_SPECIFICITY
        ]
        texts = " ".join(e.text.lower() for e in passages)
        unknown_names = [
            i for i in part.query.identifiers if _code_token(i) and _code_token(i) not in texts
        ]
        part.coverage = round(best, 3)
        part.section_coverage = round(near, 3)
        part.typed_coverage = round(typed, 3)
        # Name what matters most first: the specific words no passage mentions.
        missing = sorted(absent, key=lambda t: weights[t], reverse=True)
        part.missing = unknown_names + _words_for(
            part, [t for t in missing if t in key_absent] or missing[:2]
        )
        part.decisive = unknown_names + _words_for(part, key_absent)
        part.absent = [
            (part.query.words.get(t, t), part.query.specific.get(t, 1.0), t in unknown)
            for t in absent
        ]
        part.gap = best < GAP_COVERAGE or typed < GAP_TYPED or bool(part.decisive)
        part.partial = part.gap and not (key_absent or unknown_names) and best >= PARTIAL_COVERAGE


def _code_token(identifier: str) -> str:
    """The most specific token of a code span: the flag of "npm install --legacy-peer-deps"."""
    tokens = identifier.split()
    flags = [t for t in tokens if t.startswith("-") or "." in t or "_" in t]
    return max(flags or tokens[-1:], key=len) if len(tokens) > 1 else identifier


def _window_coverage(
    terms: list[str],
    item: Evidence,
    weights: dict[str, float],
    wanted: re.Pattern[str] | None,
    question: str,
) -> tuple[float, float]:
    """The best coverage of a few consecutive sentences, list items or rows in context,
    and the best among windows that hold the kind of value asked for (1.0 if none is asked).
    """
    context = set(stems(f"{item.path} {item.heading_path}"))
    pieces = [text for text, _, _ in split_units(item.text)] or [""]
    units = [set(stems(text)) for text in pieces]
    best = typed = 0.0
    for start in range(len(units)):
        value = coverage(terms, context.union(*units[start : start + WINDOW_UNITS]), weights)
        best = max(best, value)
        if wanted is None or _answers(
            wanted, " ".join(pieces[start : start + WINDOW_UNITS]), question
        ):
            typed = max(typed, value)
    return best, typed


def _passage_stems(item: Evidence) -> set[str]:
    return set(item.stems) | set(stems(item.path or ""))


def _words_for(part: Part, missing_stems: list[str]) -> list[str]:
    """The question's own words for the stems nothing covered."""
    original: dict[str, str] = {}
    for word in words(part.text + " " + " ".join(part.query.match_words)):
        if word not in STOPWORDS:
            original.setdefault(stem(word), word)
    return [original.get(s, s) for s in missing_stems]


def _run_sql(
    config: AppConfig, question: str, root: Path, evidence: list[Evidence], logger: RunLogger
) -> list[dict[str, Any]]:
    """Run the planned read-only queries; each result with rows becomes evidence."""
    db_path, warnings = build_table_database(root, config.index_root)
    for warning in warnings:
        logger.warn(warning)
    if db_path is None:
        return []
    runs: list[dict[str, Any]] = []
    with ReadOnlyDatabase(
        db_path, timeout_s=config.sql_timeout_s, row_cap=config.sql_row_cap
    ) as db:
        for planned in plan_queries(db, question, row_limit=config.sql_row_cap):
            record: dict[str, Any] = {
                "table": planned.table,
                "sql": planned.sql,
                "reason": planned.reason,
            }
            try:
                result = db.query(planned.sql)
            except QueryRefused as exc:
                record["error"] = str(exc)
                logger.warn(f"SQL on {planned.table} failed: {exc}")
                runs.append(record)
                continue
            record.update(
                columns=result.columns,
                row_count=len(result.rows),
                truncated=result.truncated,
                seconds=round(result.seconds, 4),
            )
            if result.rows:
                item = Evidence(
                    id=len(evidence) + 1,
                    kind="sql",
                    text=_markdown_table(result.columns, result.rows),
                    score=1.0,
                    table=planned.table,
                    sql=result.sql,
                    columns=result.columns,
                    rows=result.rows,
                    truncated=result.truncated,
                    stems=frozenset(
                        stems(
                            " ".join(
                                [
                                    planned.table.replace("_", " "),
                                    *result.columns,
                                    *(str(v) for r in result.rows for v in r),
                                ]
                            )
                        )
                    ),
                )
                evidence.append(item)
                record["evidence_id"] = item.id
            runs.append(record)
    return runs


def _markdown_table(columns: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        text = (
            ""
            if value is None
            else (
                f"{value:,}"
                if isinstance(value, int) and not (1900 <= value <= 2100)
                else str(value)
            )
        )
        return text.replace("|", "\\|").replace("\n", " ")

    shown = rows[:SQL_TABLE_ROWS_SHOWN]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown]
    if len(rows) > len(shown):
        lines.append(f"\n_First {len(shown)} of {len(rows)} rows._")
    return "\n".join(lines)


def combine_model_gaps(parts: list[Part], statements: list[str]) -> None:
    """The model path's gap decision, from the detector's and the model's own.

    The model has read the evidence, so its "the documents do not cover ..." makes a gap and
    its silence lifts the detector's doubt about a part whose words the passages only partly
    hold (the detector's commonest mistake). A name or code token found in no document
    (``part.decisive``) stays a gap whatever the model wrote: an answer to it can only be
    about something else. Each statement goes to the part whose terms it shares most.
    """
    said: dict[int, list[str]] = {p.id: [] for p in parts}
    for statement in statements:
        found = set(stems(statement))
        target = max(parts, key=lambda p: len(found & set(p.query.terms)))
        said[target.id].append(statement)
    for part in parts:
        part.model_statements = said[part.id]
        by_model, by_detector = bool(said[part.id]), bool(part.decisive)
        part.gap = by_model or by_detector
        part.partial = part.partial and part.gap
        part.gap_source = (
            "detector+model"
            if by_model and by_detector
            else "model"
            if by_model
            else "detector"
            if by_detector
            else None
        )


def _gap_statement(part: Part) -> str:
    """What the documents do not cover, in the model's words when the model said it."""
    if part.model_statements:
        return CITATION.sub("", part.model_statements[0]).strip()
    return gap_sentence(part)


def _drop_invalid_citations(text: str, valid: set[int]) -> tuple[str, list[int]]:
    """Remove citation numbers that name no evidence; return the text and what was removed."""
    invalid: list[int] = []

    def keep(match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        good = [n for n in numbers if n in valid]
        invalid.extend(n for n in numbers if n not in valid and n not in invalid)
        return "".join(f"[{n}]" for n in good)

    return CITATION.sub(keep, text), invalid


def _closing_sections(
    parts: list[Part], evidence: list[Evidence], body: str, *, several_or_model: bool
) -> str:
    """The gaps summary (where the body alone may not make it plain) and the Sources list."""
    lines: list[str] = []
    gaps = [p for p in parts if p.gap]
    if gaps and several_or_model:
        lines.append("## What the documents do not cover\n")
        lines.extend(f"- {_gap_statement(p)}" for p in gaps)
        lines.append("")
    cited = set(cited_ids(body))
    sources = [e for e in evidence if e.id in cited]
    if sources:
        lines.append("## Sources\n")
        lines.extend(f"- [{e.id}] {e.label}" for e in sources)
        lines.append("")
    return "\n".join(lines)


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
