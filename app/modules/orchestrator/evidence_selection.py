"""The evidence of a run: the best sections per part (round-robin), and the outline of the
best matching document for an overview question.
"""

from __future__ import annotations

import itertools

from app.modules.evidence import Evidence, Part
from app.modules.retrieval.index import Hit, SectionIndex
from app.modules.retrieval.retriever import Ranked, rank, section_stems
from app.modules.retrieval.text import STOPWORDS, stems, words

MAX_EVIDENCE = 16
FOLLOW_EVIDENCE = 3  # passages of the part before that a part going on about it reads too


def retrieve_evidence(
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
    for before, part in itertools.pairwise(parts):
        if part.follows:
            # "..., and how do I move them somewhere else?": the passages that answered the
            # part before are where its subject is documented; they are read for this part
            # too, after its own.
            for evidence_id in before.evidence_ids[:FOLLOW_EVIDENCE]:
                if evidence_id not in part.evidence_ids:
                    part.evidence_ids.append(evidence_id)
                    evidence[evidence_id - 1].parts.append(part.id)
    for part, ranked in zip(parts, per_part, strict=True):
        if part.broad:
            for heading, hit in _outline(index, ranked, part, idf):
                existing = by_section.get(hit.id)
                if existing is None:
                    existing = section_evidence(len(evidence) + 1, hit, score=0.0)
                    by_section[hit.id] = existing
                    evidence.append(existing)
                if part.id not in existing.parts:
                    existing.parts.append(part.id)
                    part.evidence_ids.append(existing.id)
                part.outline.append((existing.id, heading))
    return evidence


def section_evidence(number: int, hit: Hit, *, score: float) -> Evidence:
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
MAX_LISTED = 12  # headings that each name what is asked about: the list itself


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

    def named(r: Ranked) -> bool:
        return key is None or key in set(stems(f"{r.hit.section.path} {r.hit.section.title}"))

    # Of the best few passages, the one whose document lists what is asked about: "kinds of
    # leave" is outlined by the headings "Annual leave", "Sick leave", ... of the leave
    # policy, not by the onboarding checklist whose one item mentions leave. A document
    # named by the question's name ("Harbor") is preferred, unless another lists far more.
    terms = _subject_terms(part, idf)
    outlines = [(r, _outline_of(index, r, terms)) for r in ranked[:OUTLINE_CANDIDATES]]
    scored = [
        (
            _named_share(outline, part, idf)
            + (NAMED_DOCUMENT if named(r) else 0.0)
            - OUTLINE_RANK_COST * position,
            outline,
        )
        for position, (r, outline) in enumerate(outlines)
        if outline
    ]
    if not scored:
        return []
    return max(scored, key=lambda s: s[0])[1]


OUTLINE_CANDIDATES = 5
OUTLINE_RANK_COST = 0.05
NAMED_DOCUMENT = 0.5


def _named_share(outline: list[tuple[str, Hit]], part: Part, idf: dict[str, float]) -> float:
    """The share of an outline's headings that name a subject word of the question."""
    terms = _subject_terms(part, idf)
    named = sum(1 for heading, _ in outline if terms & set(stems(heading)))
    return named / len(outline)


def _subject_terms(part: Part, idf: dict[str, float]) -> set[str]:
    return {t for t in part.query.terms if idf.get(t, 0.0) > 0}


def _outline_of(
    index: SectionIndex, best: Ranked, terms: frozenset[str] | set[str] = frozenset()
) -> list[tuple[str, Hit]]:
    """The distinctive sub-headings around one passage: walk up from it until a level has
    at least two. A level further up whose headings name what is asked about more often
    ("Annual leave", "Sick leave", "Court leave" under "Types of leave") is the list asked
    for, rather than the two sub-headings next to the passage."""
    sections = index.file_sections(best.hit.section.path)
    headings = best.hit.section.headings
    first: list[tuple[str, Hit]] = []
    listed: list[tuple[str, Hit]] = []
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
        if len(distinctive) < 2:
            continue
        first = first or distinctive[:MAX_OUTLINE]
        named = [(name, hit) for name, hit in distinctive if terms & set(stems(name))]
        if len(named) >= 2 and len(named) >= len(distinctive) / 2 and len(named) > len(listed):
            listed = named[:MAX_LISTED]
        if not terms:
            break
    return listed or first
