"""What the writers work from: the parts of a question and the numbered evidence for them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from app.modules.retrieval.retriever import Query

# "[3]", "[3, 5]", "[3][5]" and "[3-5]" all cite evidence by number.
CITATION = re.compile(r"\[(\d+(?:\s*[,;–-]\s*\d+)*)\]")


@dataclass(slots=True)
class Evidence:
    """One numbered piece of evidence: a document section or an SQL result."""

    id: int
    kind: Literal["section", "sql"]
    text: str  # a section's markdown, or an SQL result rendered as a markdown table
    score: float
    parts: list[int] = field(default_factory=list)
    path: str | None = None
    title: str | None = None
    heading_path: str | None = None
    line_start: int | None = None
    line_end: int | None = None
    table: str | None = None
    sql: str | None = None
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    truncated: bool = False
    stems: frozenset[str] = frozenset()  # what the gap check compares with (not serialised)

    @property
    def label(self) -> str:
        """How the Sources list names it."""
        if self.kind == "sql":
            return f"table `{self.table}` (SQL query)"
        if not self.line_start:
            lines = ""
        elif self.line_start == self.line_end:
            lines = f", line {self.line_start}"
        else:
            lines = f", lines {self.line_start}-{self.line_end}"

        return f"{self.path} — {self.heading_path}{lines}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "score": round(self.score, 4),
            "parts": self.parts,
        }
        if self.kind == "section":
            data |= {
                "path": self.path,
                "title": self.title,
                "heading_path": self.heading_path,
                "line_start": self.line_start,
                "line_end": self.line_end,
                "text": self.text,
            }
        else:
            data |= {
                "table": self.table,
                "sql": self.sql,
                "columns": self.columns,
                "rows": self.rows,
                "row_count": len(self.rows),
                "truncated": self.truncated,
            }
        return data


@dataclass(slots=True)
class Part:
    """One thing the question asks, with what was found for it."""

    id: int
    text: str
    query: Query
    evidence_ids: list[int] = field(default_factory=list)
    coverage: float = 0.0  # best file's IDF-weighted coverage of the part's terms
    section_coverage: float = 0.0  # best few consecutive sentences' coverage
    typed_coverage: float = 0.0  # the same, among sentences that hold the kind of value asked
    missing: list[str] = field(default_factory=list)  # the question's words nothing covers
    gap: bool = False
    partial: bool = False  # a gap, but the passages found answer part of it
    decisive: list[str] = field(default_factory=list)  # absent names that make a gap alone
    # Each term no passage contains: (the question's word, specificity, in no document).
    absent: list[tuple[str, float, bool]] = field(default_factory=list)
    broad: bool = False
    # Who called the gap: "detector", "model" or "detector+model" (model path only).
    gap_source: str | None = None
    model_statements: list[str] = field(default_factory=list)  # the model's "not covered"
    # An overview's items, in order: (evidence id, the heading that names the item).
    outline: list[tuple[int, str]] = field(default_factory=list)
    # The outline lists documents ("which cheat sheets cover PHP?"), one item per file.
    collection: bool = False
    scene: str = ""  # the statements before the question (planner.PlannedPart.scene)
    # Says "it"/"them" or names nothing of its own: it goes on about the part before, so the
    # file that answered that part is where its answer is most likely to be.
    follows: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "terms": list(self.query.terms),
            "evidence_ids": self.evidence_ids,
            "coverage": round(self.coverage, 3),
            "section_coverage": round(self.section_coverage, 3),
            "typed_coverage": round(self.typed_coverage, 3),
            "missing_terms": self.missing,
            "gap": self.gap,
            "partial": self.partial,
            "decisive": self.decisive,
            "absent": [
                {"word": w, "specificity": round(s, 3), "in_no_document": u}
                for w, s, u in self.absent
            ],
            "broad": self.broad,
            "gap_source": self.gap_source,
            "model_statements": self.model_statements,
            "outline": [{"evidence_id": i, "heading": h} for i, h in self.outline],
            "collection": self.collection,
        }


@dataclass(slots=True)
class AnswerBrief:
    """Everything a writer needs: the question, its parts, the evidence, term weights."""

    question: str
    parts: list[Part]
    evidence: list[Evidence]
    idf: dict[str, float]

    def by_id(self) -> dict[int, Evidence]:
        return {e.id: e for e in self.evidence}


def cited_ids(markdown: str) -> list[int]:
    """Evidence numbers cited in ``markdown``, in order of first appearance."""
    found: dict[int, None] = {}
    for match in CITATION.finditer(markdown):
        for number in _expand(match.group(1)):
            found.setdefault(number, None)
    return list(found)


def _expand(spec: str) -> list[int]:
    numbers: list[int] = []
    for piece in re.split(r"\s*[,;]\s*", spec):
        bounds = re.split(r"\s*[–-]\s*", piece)
        if len(bounds) == 2 and bounds[0].isdigit() and bounds[1].isdigit():
            low, high = int(bounds[0]), int(bounds[1])
            numbers.extend(range(low, min(high, low + 50) + 1))
        elif piece.isdigit():
            numbers.append(int(piece))
    return numbers
