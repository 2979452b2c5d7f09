"""Measure the engine on a question set: retrieval hits, key facts, citations, gap reporting.

Each line of the set is ``{"id", "question", "expected_sources": [paths], "key_facts": [...]}``;
an empty ``expected_sources`` marks a question the corpus cannot answer, which should end
``completed_with_gaps``.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.config import AppConfig
from app.modules.evidence import cited_ids
from app.modules.orchestrator.module import run_pipeline


@dataclass(frozen=True, slots=True)
class EvalQuestion:
    id: str
    question: str
    expected_sources: list[str]
    key_facts: list[str]


@dataclass(slots=True)
class EvalReport:
    results: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


class EvalFileError(ValueError):
    """The question file is missing or a line is not a valid question."""


def load_questions(path: Path) -> list[EvalQuestion]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvalFileError(f"cannot read {path}: {exc.strerror}") from exc
    questions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            questions.append(
                EvalQuestion(
                    id=str(data["id"]),
                    question=str(data["question"]),
                    expected_sources=[str(s) for s in data.get("expected_sources", [])],
                    key_facts=[str(f) for f in data.get("key_facts", [])],
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise EvalFileError(f"{path.name}, line {number}: not a question ({exc})") from exc
    return questions


def _normalise(text: str) -> str:
    text = re.sub(r"\*\*|__|`", "", text)
    return " ".join(text.casefold().split())


def evaluate(config: AppConfig, questions: list[EvalQuestion], *, run_prefix: str) -> EvalReport:
    """Run every question through the pipeline and score what came back."""
    report = EvalReport()
    for item in questions:
        started = time.perf_counter()
        result = run_pipeline(config, item.question, f"{run_prefix}-{item.id}")
        seconds = time.perf_counter() - started
        final = result.final_output_path.read_text() if result.final_output_path else ""
        bundle: dict[str, Any] = (
            json.loads(result.context_bundle_path.read_text())
            if result.context_bundle_path
            else {"evidence": []}
        )
        files = list(
            dict.fromkeys(e["path"] for e in bundle["evidence"] if e.get("kind") == "section")
        )
        evidence_ids = {e["id"] for e in bundle["evidence"]}
        citations = cited_ids(final)
        answerable = bool(item.expected_sources)
        expected = set(item.expected_sources)
        found_facts = [f for f in item.key_facts if _normalise(f) in _normalise(final)]
        report.results.append(
            {
                "id": item.id,
                "question": item.question,
                "answerable": answerable,
                "status": result.status,
                "top_files": files[:5],
                "hit_at_1": bool(files[:1] and files[0] in expected) if answerable else None,
                "hit_at_5": bool(expected & set(files[:5])) if answerable else None,
                "key_facts_found": found_facts,
                "key_facts_missing": [f for f in item.key_facts if f not in found_facts],
                "citations": len(citations),
                "citations_valid": all(c in evidence_ids for c in citations),
                "gap_reported": result.status == "completed_with_gaps",
                "seconds": round(seconds, 4),
            }
        )
    report.summary = summarise(report.results)
    return report


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    answerable = [r for r in results if r["answerable"]]
    unanswerable = [r for r in results if not r["answerable"]]
    facts_total = sum(len(r["key_facts_found"]) + len(r["key_facts_missing"]) for r in answerable)
    facts_found = sum(len(r["key_facts_found"]) for r in answerable)

    def share(rows: list[dict[str, Any]], key: str) -> float | None:
        return round(sum(bool(r[key]) for r in rows) / len(rows), 3) if rows else None

    return {
        "questions": len(results),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "hit_at_1": share(answerable, "hit_at_1"),
        "hit_at_5": share(answerable, "hit_at_5"),
        "key_fact_recall": round(facts_found / facts_total, 3) if facts_total else None,
        "citation_validity": share(results, "citations_valid"),
        "gaps_reported_on_unanswerable": share(unanswerable, "gap_reported"),
        "false_gaps_on_answerable": share(answerable, "gap_reported"),
        "median_seconds": round(statistics.median(r["seconds"] for r in results), 4)
        if results
        else None,
    }
