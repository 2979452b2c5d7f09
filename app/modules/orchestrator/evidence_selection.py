"""The evidence of a run: the best sections per part (round-robin), and the outline of the
best matching document for an overview question.
"""

from __future__ import annotations

import itertools
import posixpath
import re
from collections import defaultdict

from app.modules.evidence import Evidence, Part
from app.modules.llm.extractive import _ASKS_LIST, ASKS_DOCUMENTS, asked_sentence
from app.modules.retrieval.index import Hit, SectionIndex
from app.modules.retrieval.retriever import NAVIGATION_HEADING, Ranked, rank, says, section_stems
from app.modules.retrieval.specificity import specificity
from app.modules.retrieval.text import STOPWORDS, content_terms, stem, stems, words

MAX_EVIDENCE = 16
FOLLOW_EVIDENCE = 3  # passages of the part before that a part going on about it reads too


def retrieve_evidence(
    index: SectionIndex, parts: list[Part], idf: dict[str, float], *, k: int
) -> list[Evidence]:
    """Evidence for every part, numbered so that each part's best come first (round-robin)."""
    per_part = [rank(index, p.query, k=k, idf=_own_weights(p, idf)) for p in parts]
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
        listed = _collection(index, part, idf, ranked)
        part.collection = bool(listed)
        siblings = [] if part.broad or listed else _sibling_list(index, ranked, part)
        if part.broad or listed or siblings:
            for heading, hit in listed or siblings or _outline(index, ranked, part, idf):
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


BORROWED_WEIGHT = 0.5  # a word a part borrows from the one before, against its own words


def _own_weights(part: Part, idf: dict[str, float]) -> dict[str, float]:
    """The part's search weights, its borrowed words at half: "which one makes it print the
    plain standard traceback?" borrows "Rich" to know what "it" is, and must not find
    passages about Rich rather than about tracebacks."""
    if not part.follows:
        return idf
    borrowed = part.query.borrowed
    return {t: w * (BORROWED_WEIGHT if t in borrowed else 1.0) for t, w in idf.items()}


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


COLLECTION_K = 30  # sections searched for the documents of a list
COLLECTION_SHARE = 0.7  # a document is listed when it scores this share of the best
# Folders that hold a kind of document, not one subject: never the list asked for.
_GENERIC_FOLDERS = frozenset(
    "docs doc tutorial tutorials guide guides reference concepts learn advanced how to howto "
    "getting started commands using".split()
)


def _collection(
    index: SectionIndex, part: Part, idf: dict[str, float], found: list[Ranked]
) -> list[tuple[str, Hit]]:
    """For a question that asks for a list of documents: (title, section) per document.

    A folder the question names ("what parameter types ..." -> ``parameter-types/``) lists
    its files, when it is small enough to be the list; "which cheat sheets ..." lists the
    documents that match nearly as well as the best one.
    """
    asks_documents = bool(ASKS_DOCUMENTS.search(part.text))
    if not (asks_documents or _ASKS_LIST.search(part.text) or _ASKS_WHICH.search(part.text)):
        return []
    for r in found[:5]:
        folder = r.hit.section.path.rpartition("/")[0]
        name = words(folder.rpartition("/")[2].replace("-", " ").replace("_", " "))
        if (
            name
            and not set(name) <= _GENERIC_FOLDERS
            and any(specificity(w) >= FOLDER_SPECIFICITY for w in name)
            and _names_folder(part.text, name)
        ):
            # The folder's landing page first: it introduces the rest.
            files = sorted(index.folder_files(folder), key=lambda p: not _LANDING.search(p))
            if 2 <= len(files) <= MAX_LISTED:
                return _documents(index, files)
    if not asks_documents:
        return []
    labelled = _labelled(index, part)
    if labelled:
        return _documents(index, labelled)
    # More sections than a part's own evidence: a list may name a dozen documents.
    ranked = rank(index, part.query, k=COLLECTION_K, idf=idf)
    if not ranked:
        return []
    listed_by_hub = _hub_list(index, part, ranked)
    if listed_by_hub:
        return _documents(index, listed_by_hub)
    best: dict[str, Ranked] = {}
    for r in ranked:
        best.setdefault(r.hit.section.path, r)
    top = ranked[0].score
    listed = [r for r in best.values() if r.score >= COLLECTION_SHARE * top]
    # A document *about* the subject speaks of it throughout: PHP in most sections of the
    # Laravel cheat sheet, in one of the Authentication cheat sheet's 48.
    subject = _list_subject(part, idf)
    if subject:
        listed = [r for r in listed if _share_about(index, r.hit.section.path, subject) >= ABOUT]
    if len(listed) < 2:
        return []
    # Each document by what it opens with: what it is about, not the passage that matched.
    return _documents(index, [r.hit.section.path for r in listed[:MAX_LISTED]])


# A markdown link to another page of the folder: "[Bulkhead](../bulkhead.md)", "[x](./x)".
_PAGE_LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)\s#?]+)")
HUB_LINKS = 3  # links to other pages of the folder that make a page a list of pages


def _document_kind(part: Part) -> set[str]:
    """The stems of the kind of document a question asks for ("which cheat sheets ...")."""
    return set(stems(" ".join(m.group(0) for m in ASKS_DOCUMENTS.finditer(part.text))))


def _hub_list(index: SectionIndex, part: Part, ranked: list[Ranked]) -> list[str]:
    """The pages a hub page lists, when the question names it: "which patterns are about
    messaging?" is answered by the table of the "Messaging patterns" page, not by the pages
    that say "message" most. A hub is a page among those found whose title the question
    says in full and that links to at least HUB_LINKS other pages: the hub, then the pages
    it links to, in its order."""
    asked = set(part.query.terms)
    # The kind of document asked for is no subject: a page titled "Patterns" lists them all.
    kind = _document_kind(part)
    titles = {r.hit.section.path: r.hit.section.title for r in ranked}
    for path, title_text in titles.items():
        title = set(content_terms(title_text))
        if not title - kind or not title <= asked:
            continue
        sections = index.file_sections(path)
        # What else the question asks must be what the hub is about, as its introduction
        # says ("handle and recover from failures" for "Resiliency patterns"): "which
        # messaging patterns use a queue to prioritize requests?" asks for some of its list.
        intro = set(stems(f"{title_text} {_introduction(sections[0].section.text)}"))
        rest = {
            t
            for t in asked - title - kind - intro
            if part.query.specific.get(t, 0.0) > HUB_SUBJECT and t not in part.query.verbs
        }
        if rest:
            continue
        folder = posixpath.dirname(path)
        targets: list[str] = []
        for hit in sections:
            for link in _PAGE_LINK.findall(hit.section.text):
                target = posixpath.normpath(posixpath.join(folder, link)).lstrip("/")
                targets += [target, f"{target}.md", f"{target}/index.md", f"{target}/README.md"]
        known = index.known_files(list(dict.fromkeys(targets)))
        pages = [t for t in dict.fromkeys(targets) if t in known and t != path]
        if len(pages) >= HUB_LINKS:
            return [path, *pages[: MAX_LISTED - 1]]  # the hub first: it introduces its list
    return []


HUB_SUBJECT = 0.5  # above: a word of the question that names something the hub must cover


def _introduction(text: str) -> str:
    """A section's text before its first table or list: what a hub page says it is about."""
    lines = []
    for line in text.splitlines():
        if re.match(r"\s*(?:\||[-*+]\s|\d+[.)]\s)", line):
            break
        lines.append(line)
    return "\n".join(lines)


def _labelled(index: SectionIndex, part: Part) -> list[str]:
    """The files whose front matter files them under the category or tag the question names
    ("which patterns are in the Resilience category?"), when that is the whole question and a
    list: two or more files, at most MAX_LISTED, not nearly every labelled file. A label whose
    kind the question names too ("category") wins, then the one it names most fully ("Data
    access" over "Data"). Labels that differ only in case or kind are one label."""
    asked = set(part.query.terms)
    labelled = index.labelled()
    everywhere = len({p for files in labelled.values() for p in files}) * LABEL_EVERYWHERE
    # One label per kind and value however it is spelled ("Resilience", "resilience").
    groups: dict[tuple[str, frozenset[str]], set[str]] = defaultdict(set)
    for label, files in labelled.items():
        kind, _, value = label.partition(": ")
        value_stems = frozenset(stems(value))
        if value_stems and value_stems <= asked:
            groups[(stem(kind), value_stems)].update(files)
    # The kind of document asked for ("which guides ...") is no subject of its own.
    kind_words = _document_kind(part)
    named = [
        (kind in asked, len(value_stems), sorted(paths))
        for (kind, value_stems), paths in groups.items()
        if 2 <= len(paths) <= min(MAX_LISTED, everywhere)
        and not _more_asked(part, asked - value_stems - kind_words - {kind})
    ]
    return max(named)[2] if named else []


LABEL_EVERYWHERE = 0.8  # a label on nearly every labelled file sorts nothing out


def _more_asked(part: Part, rest: set[str]) -> bool:
    """Whether the question asks more than the label: "which guides cover failures?" names
    the label "Guides" and a subject of its own, so the label alone is not the list."""
    return any(
        part.query.specific.get(t, 0.0) > LABEL_SUBJECT and t not in part.query.verbs for t in rest
    )


LABEL_SUBJECT = 0.5  # at or below: phrasing ("file under", "fall under"), not a subject


ABOUT = 0.25  # share of a document's sections that name the subject of a list of documents


def _list_subject(part: Part, idf: dict[str, float]) -> str | None:
    """The most distinctive specific word of a list question ("php" in "which cheat sheets
    are about PHP or PHP frameworks?"), not the kind of document it asks for."""
    kind = _document_kind(part)
    candidates = [
        t
        for t in part.query.terms
        if t not in kind and part.query.specific.get(t, 0.0) >= SUBJECT_SPECIFICITY
    ]
    return max(candidates, key=lambda t: idf.get(t, 0.0)) if candidates else None


SUBJECT_SPECIFICITY = 0.7


def _share_about(index: SectionIndex, path: str, term: str) -> float:
    sections = index.file_sections(path)
    if not sections:
        return 0.0
    return sum(term in set(section_stems(h)) for h in sections) / len(sections)


FOLDER_SPECIFICITY = 0.5
_LANDING = re.compile(r"/(?:index|readme|_index)\.md$", re.IGNORECASE)
_ASKS_WHICH = re.compile(r"\b(?:which|what)\b", re.IGNORECASE)


def _names_folder(question: str, name: list[str]) -> bool:
    """Whether the question asks which of the things a folder holds: "what other special
    parameter types ..." names ``parameter-types/``."""
    if not name[-1].endswith("s"):
        return False  # a folder of one subject ("harbor/"), not of a kind of thing
    stemmed = [stem(w) for w in name]
    folded = [w.lower() for w in words(question)]
    tokens = [stem(w) for w in folded]
    for start in range(len(tokens)):
        if tokens[start : start + len(stemmed)] == stemmed:
            # Right after "which"/"what" and its modifiers, as the thing asked for: "what
            # other special parameter types", not "what contract value does Harbor ...".
            before = folded[max(0, start - 4) : start]
            if not any(w in {"which", "what"} for w in before):
                return False
            opening = max(i for i, w in enumerate(before) if w in {"which", "what"})
            return not set(before[opening + 1 :]) & _AUXILIARIES
    return False


_AUXILIARIES = frozenset(
    "do does did is are was were be can could should would will must may might has have had".split()
)


def _documents(index: SectionIndex, paths: list[str]) -> list[tuple[str, Hit]]:
    """Each document by its title and what it opens with: what it is about."""
    openings = [_opening(index, path) for path in paths]
    return [(hit.section.title, hit) for hit in openings if hit is not None]


def _opening(index: SectionIndex, path: str) -> Hit | None:
    """A file's first section with text: what the document is about."""
    return next((h for h in index.file_sections(path) if h.section.text.strip()), None)


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
SIBLING_TOP = 5  # the best passages among which a list question's items are looked for


def _sibling_list(index: SectionIndex, ranked: list[Ranked], part: Part) -> list[tuple[str, Hit]]:
    """For a list question: the sub-headings under one heading when several of the best
    passages are among them. "What cookie attributes ...?" finds "Cookies > HttpOnly
    Attribute" and "Cookies > Domain and Path Attributes": the list asked for is every
    heading under "Cookies", not the sentences of the two found."""
    asked = asked_sentence(part.text)
    nouns = _asked_nouns(asked)
    if not nouns or not _ASKS_LIST.search(asked) or ASKS_DOCUMENTS.search(asked):
        return []
    if _ASKS_MANNER.match(asked):
        return []  # "how can I see which of the packages ...?" asks for a way, not a list
    # (file, heading path above) -> the headings just below it among the best passages
    below: dict[tuple[str, tuple[str, ...]], set[str]] = defaultdict(set)
    first: dict[tuple[str, tuple[str, ...]], int] = {}
    for position, r in enumerate(ranked[:SIBLING_TOP]):
        headings = r.hit.section.headings
        for depth in range(len(headings) + 1):
            key = (r.hit.section.path, headings[:depth])
            # The passage under the heading itself ("Storage directories", before its
            # "Cache directory") counts as one found there, but lists nothing.
            below[key].add(headings[depth] if depth < len(headings) else "")
            first.setdefault(key, position)
    candidates = [
        key for key, names in below.items() if len(names) >= 2 and (key[1] or "" not in names)
    ]
    if not candidates:
        return []
    # The most of the best passages under one heading; then the closest heading above them.
    path, prefix = max(candidates, key=lambda c: (len(below[c]), len(c[1]), -first[c]))
    top = ranked[0].hit.section
    # "... alongside the Hero table model?" names one item to ask for the others.
    said = bool(top.headings) and says(asked, top.headings[-1]) and not _BESIDES.search(asked)
    if said and (path, prefix) != (top.path, top.headings):
        # "which scripts does npm publish run?": the list under "npm publish" answers, not
        # the headings beside it; "which storage directories ...?" is answered by the
        # headings under "Storage directories".
        return []
    sections = index.file_sections(path)
    listed = [
        (name, hit)
        for name, hit in _sub_headings(sections, prefix)
        if not NAVIGATION_HEADING.match(name)
    ][:MAX_LISTED]
    # The headings must be the things asked for: "which shells ...?" is not answered by the
    # sub-headings of the completion tutorial, though two of its passages were found.
    title = sections[0].section.title if listed else ""
    named = set(stems(" ".join((title, *prefix, *(name for name, _ in listed)))))
    return listed if len(listed) >= 2 and nouns & named else []


_BESIDES = re.compile(
    r"\b(?:alongside|besides|other than|apart from|in addition to|except for)\b", re.I
)
_ASKS_MANNER = re.compile(r"\s*(?:how|why|when|where)\b", re.IGNORECASE)
# Plurals that name the form of an answer, not what it lists.
_LIST_FORMS = frozenset("kinds types sorts ways things options examples".split())


def _asked_nouns(text: str) -> set[str]:
    """The stem of the thing a list question asks for: "attributes" in "what cookie
    attributes should I set for the session cookie?", "specs" in "what other kinds of package
    specs ...?"; not "scripts" in "which commands are there for approving install scripts?"."""
    folded = words(text)
    for start, word in enumerate(folded):
        if word not in {"which", "what"}:
            continue
        after = folded[start + 1 : start + 1 + ASKED_NOUN_REACH]
        for position, candidate in enumerate(after):
            if candidate in _AUXILIARIES:
                break
            if not _plural(candidate):
                continue
            if candidate not in _LIST_FORMS:
                return {stem(candidate)}
            # "kinds of package specs": what the kinds are of
            rest = folded[start + position + 2 :]
            if rest[:1] == ["of"]:
                nouns = [w for w in rest[1 : 1 + ASKED_NOUN_REACH] if _plural(w)]
                return {stem(nouns[0])} if nouns else set()
            return set()
    return set()


ASKED_NOUN_REACH = 4  # words between "which"/"what" and the noun it asks for


def _plural(word: str) -> bool:
    return (
        len(word) > 3
        and word.endswith("s")
        and not word.endswith(("ss", "us", "is"))
        and word not in STOPWORDS
    )


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


def _sub_headings(sections: list[Hit], prefix: tuple[str, ...]) -> list[tuple[str, Hit]]:
    """The headings right under ``prefix`` (in document order), each with its first section
    that has text; template headings ("Budget", "Examples") left out."""
    depth = len(prefix)
    groups: dict[str, Hit] = {}
    for hit in sections:
        own = hit.section.headings
        if len(own) > depth and own[:depth] == prefix and hit.section.text.strip():
            groups.setdefault(own[depth], hit)
    return [
        (name, hit)
        for name, hit in groups.items()
        if not set(words(name)) <= _TEMPLATE_HEADINGS | STOPWORDS
    ]


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
        distinctive = _sub_headings(sections, headings[:depth])
        if len(distinctive) < 2:
            continue
        first = first or distinctive[:MAX_OUTLINE]
        named = [(name, hit) for name, hit in distinctive if terms & set(stems(name))]
        if len(named) >= 2 and len(named) >= len(distinctive) / 2 and len(named) > len(listed):
            listed = named[:MAX_LISTED]
        if not terms:
            break
    return listed or first
