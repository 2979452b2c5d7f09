"""Measure the engine on a question set: retrieval, key facts, citations, gaps, latency.

Each line of the set is ``{"id", "question", "expected_sources": [paths], "key_facts": [...]}``
with two optional fields: ``kind`` (lookup, how_why, option, list, two_part, paraphrase,
unanswerable, ...) to report figures per kind, and ``split`` (``dev`` or ``test``) so that
the engine is tuned on one half and judged on the other. An empty ``expected_sources``
marks a question the documents cannot answer: the run should end ``completed_with_gaps``.

The figures (``summarise``):

- ``hit_at_1`` / ``hit_at_5`` / ``mrr``: where the first expected file sits among the files
  of the evidence, in evidence order;
- ``key_fact_recall``: the share of all key facts that appear in ``final.md`` (case, markdown
  emphasis and code ticks ignored); ``all_facts_rate``: questions with every fact present;
- ``citation_validity``: answers whose every ``[n]`` names an evidence item;
  ``citation_precision``: the share of cited items that hold a key fact or come from an
  expected file (a citation that points at an unrelated passage is not support);
- ``gap_on_unanswerable`` and ``false_gap_rate`` (answerable questions flagged as gaps);
- ``p50_seconds`` / ``p95_seconds``: the pipeline's time per question.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.config import AppConfig
from app.modules.evidence import cited_ids
from app.modules.orchestrator.module import run_pipeline

UNANSWERABLE = "unanswerable"


@dataclass(frozen=True, slots=True)
class EvalQuestion:
    id: str
    question: str
    expected_sources: list[str]
    key_facts: list[str]
    kind: str = ""
    split: str = ""

    @property
    def answerable(self) -> bool:
        return bool(self.expected_sources)


@dataclass(slots=True)
class EvalReport:
    results: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    by_kind: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary, "by_kind": self.by_kind, "results": self.results}


class EvalFileError(ValueError):
    """The question file is missing or a line is not a valid question."""


def load_questions(path: Path, *, split: str | None = None) -> list[EvalQuestion]:
    """The questions of a JSON-lines file; only those of ``split`` when one is given."""
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
            sources = [str(s) for s in data.get("expected_sources", [])]
            questions.append(
                EvalQuestion(
                    id=str(data["id"]),
                    question=str(data["question"]),
                    expected_sources=sources,
                    key_facts=[str(f) for f in data.get("key_facts", [])],
                    kind=str(data.get("kind") or ("" if sources else UNANSWERABLE)),
                    split=str(data.get("split") or ""),
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise EvalFileError(f"{path.name}, line {number}: not a question ({exc})") from exc
    if split:
        questions = [q for q in questions if q.split == split]
    return questions


def normalise(text: str) -> str:
    """Text as key facts are compared: no emphasis or code ticks, case and spacing folded."""
    text = re.sub(r"\*\*|__|`", "", text)
    return " ".join(text.replace("’", "'").casefold().split())


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
        report.results.append(score(item, final, bundle, result.status, seconds))
    report.summary = summarise(report.results)
    report.by_kind = {
        kind: summarise(rows) for kind, rows in sorted(_group(report.results).items())
    }
    return report


def score(
    item: EvalQuestion, final: str, bundle: dict[str, Any], status: str, seconds: float
) -> dict[str, Any]:
    """One question's figures from its answer and evidence bundle."""
    sections = [e for e in bundle.get("evidence", []) if e.get("kind") == "section"]
    files = list(dict.fromkeys(e["path"] for e in sections))
    expected = set(item.expected_sources)
    rank = next((i for i, f in enumerate(files, start=1) if f in expected), None)
    answer = normalise(final)
    found = [f for f in item.key_facts if normalise(f) in answer]
    evidence = {e["id"]: e for e in bundle.get("evidence", [])}
    citations = cited_ids(final)
    facts = [normalise(f) for f in item.key_facts]
    relevant = [
        c
        for c in citations
        if c in evidence
        and (
            evidence[c].get("path") in expected
            or any(f in normalise(str(evidence[c].get("text", ""))) for f in facts)
        )
    ]
    answerable = item.answerable
    gap = status == "completed_with_gaps"
    return {
        "id": item.id,
        "question": item.question,
        "kind": item.kind or (UNANSWERABLE if not answerable else "other"),
        "split": item.split,
        "answerable": answerable,
        "status": status,
        "top_files": files[:5],
        "rank": rank,
        "hit_at_1": rank == 1 if answerable else None,
        "hit_at_5": (rank is not None and rank <= 5) if answerable else None,
        "key_facts_found": found,
        "key_facts_missing": [f for f in item.key_facts if f not in found],
        "citations": len(citations),
        "citations_valid": all(c in evidence for c in citations),
        "citations_relevant": len(relevant),
        "gap_reported": gap,
        "correct": (len(found) == len(item.key_facts) and not gap) if answerable else gap,
        "seconds": round(seconds, 4),
    }


def _group(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in results:
        groups[row["kind"]].append(row)
    return groups


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    answerable = [r for r in results if r["answerable"]]
    unanswerable = [r for r in results if not r["answerable"]]
    with_facts = [r for r in answerable if r["key_facts_found"] or r["key_facts_missing"]]
    facts_total = sum(len(r["key_facts_found"]) + len(r["key_facts_missing"]) for r in answerable)
    facts_found = sum(len(r["key_facts_found"]) for r in answerable)
    cited = sum(r["citations"] for r in answerable)
    seconds = [r["seconds"] for r in results]

    def share(rows: list[dict[str, Any]], key: str) -> float | None:
        return round(sum(bool(r[key]) for r in rows) / len(rows), 3) if rows else None

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    return {
        "questions": len(results),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "correct": share(results, "correct"),
        "hit_at_1": share(answerable, "hit_at_1"),
        "hit_at_5": share(answerable, "hit_at_5"),
        "mrr": round(sum(1 / r["rank"] for r in answerable if r["rank"]) / len(answerable), 3)
        if answerable
        else None,
        "key_fact_recall": round(facts_found / facts_total, 3) if facts_total else None,
        "all_facts_rate": round(
            sum(not r["key_facts_missing"] for r in with_facts) / len(with_facts), 3
        )
        if with_facts
        else None,
        "citation_validity": share(results, "citations_valid"),
        "citation_precision": round(sum(r["citations_relevant"] for r in answerable) / cited, 3)
        if cited
        else None,
        "gap_on_unanswerable": share(unanswerable, "gap_reported"),
        "false_gap_rate": share(answerable, "gap_reported"),
        "p50_seconds": rounded(statistics.median(seconds)) if seconds else None,
        "p95_seconds": rounded(_percentile(seconds, 0.95)),
    }


def compare(
    results: list[dict[str, Any]], baseline: list[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Questions won and lost against an earlier report (by id).

    A question is won when it became correct, or kept its verdict and found more key facts
    or a better-placed source; lost the other way round.
    """
    before = {r["id"]: r for r in baseline}
    won: list[dict[str, Any]] = []
    lost: list[dict[str, Any]] = []
    for row in results:
        old = before.get(row["id"])
        if old is None:
            continue
        now_key = _merit(row)
        old_key = _merit(old)
        change = {"id": row["id"], "question": row["question"], "before": old_key, "after": now_key}
        if now_key > old_key:
            won.append(change)
        elif now_key < old_key:
            lost.append(change)
    return {"won": won, "lost": lost}


def _merit(row: dict[str, Any]) -> tuple[int, int, float]:
    correct = row.get("correct")
    if correct is None:  # a report written before "correct" existed
        gap, missing = row["gap_reported"], row["key_facts_missing"]
        correct = (not missing and not gap) if row["answerable"] else gap
    rank = row.get("rank")
    return (int(bool(correct)), len(row["key_facts_found"]), 1 / rank if rank else 0.0)
