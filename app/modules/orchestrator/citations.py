"""Citations: the offline answer renumbered 1..n in order of first use, invalid numbers
dropped and recorded, and the closing sections (what is not covered, Sources).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from app.modules.evidence import CITATION, AnswerBrief, Evidence, Part, cited_ids
from app.modules.llm.base import WriterStopped
from app.modules.llm.extractive import (
    ExtractiveWriter,
)
from app.modules.orchestrator.gaps import gap_statement


def write_numbered(
    writer: ExtractiveWriter,
    brief: AnswerBrief,
    sql_runs: list[dict[str, Any]],
    *,
    on_piece: Callable[[str], None],
    stop_requested: Callable[[], bool],
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
        if stop_requested():
            raise WriterStopped
        numbered = CITATION.sub(lambda m: _renumbered(m, mapping), piece)
        on_piece(numbered)
        body += numbered
    return body


def _renumbered(match: re.Match[str], mapping: dict[int, int]) -> str:
    numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
    return "".join(f"[{mapping.get(n, n)}]" for n in numbers)


def drop_invalid_citations(text: str, valid: set[int]) -> tuple[str, list[int]]:
    """Remove citation numbers that name no evidence; return the text and what was removed."""
    invalid: list[int] = []

    def keep(match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        good = [n for n in numbers if n in valid]
        invalid.extend(n for n in numbers if n not in valid and n not in invalid)
        return "".join(f"[{n}]" for n in good)

    return CITATION.sub(keep, text), invalid


def closing_sections(
    parts: list[Part], evidence: list[Evidence], body: str, *, several_or_model: bool
) -> str:
    """The gaps summary (where the body alone may not make it plain) and the Sources list."""
    lines: list[str] = []
    gaps = [p for p in parts if p.gap]
    if gaps and several_or_model:
        lines.append("## What the documents do not cover\n")
        lines.extend(f"- {gap_statement(p)}" for p in gaps)
        lines.append("")
    cited = set(cited_ids(body))
    sources = [e for e in evidence if e.id in cited]
    if sources:
        lines.append("## Sources\n")
        lines.extend(f"- [{e.id}] {e.label}" for e in sources)
        lines.append("")
    return "\n".join(lines)
