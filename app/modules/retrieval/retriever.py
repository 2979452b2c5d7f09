"""Rank sections for one part of a question: BM25 candidates, re-scored and diversified.

BM25 alone favours short sections that repeat one query word. The re-score adds how much of
the question's IDF-weighted vocabulary a section covers, whether query words appear next to
each other as in the question, and how strongly the section's file matches as a whole (a
file whose several sections match is usually the right one). A per-file damping then keeps
one page from filling every slot on broad questions.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from app.modules.retrieval.embedding import Vectors, embed
from app.modules.retrieval.index import Hit, SectionIndex
from app.modules.retrieval.specificity import MINIMUM, idiom_words, specificity, used_as_verbs
from app.modules.retrieval.text import (
    LINK_TARGET,
    QUESTION_SCAFFOLD,
    STOPWORDS,
    fold,
    identifiers,
    index_forms,
    stem,
    stems,
    variants,
    words,
)

CANDIDATES = 80
DENSE_CANDIDATES = 40
EXPAND_FILES = 2  # the best files whose every section is weighed against its siblings
EXPAND_MARGIN = 0.9  # a sibling joins when it is nearly as good as the file's best found
RRF_K = 60  # tuned on the dev halves (benchmarks/corpora), as is DENSE_WEIGHT
DENSE_WEIGHT = 0.7  # below 1: exact terms decide in reference docs; meaning breaks ties
_CAPITALISED = re.compile(r"(?<!^)(?<![.?!]\s)\b[A-Z][\w'’-]*")
# The asker's example URL ("have it go to https://api.example.com/users"): its words are
# example data, not what to search for.
# A match only starts where a word starts ("(?<!\S)"): every match does anyway, and without
# the lookbehind a long token with no URL in it ("aaaa...") is rescanned from each of its
# characters, in time quadratic in its length (0.8 s for 10,000 characters).
ASKERS_URL = re.compile(r"(?<!\S)\S*(?:://|\.example\.|example\.(?:com|org|net))\S*", re.IGNORECASE)


def _url_only_words(text: str) -> set[str]:
    """Folded words that the question uses only inside URLs and example hosts."""
    inside = {w for m in ASKERS_URL.finditer(text) for w in words(m.group(0))}
    return inside - set(words(ASKERS_URL.sub(" ", text))) if inside else set()


# "user IDs", "the URLs": a plural acronym is a kind of thing, not the one thing asked about.
_PLURAL_ACRONYM = re.compile(r"[A-Z]{2,}s")
SAME_FILE_DAMPING = 0.72
NEAR_TOP = 0.95


@dataclass(frozen=True, slots=True)
class Query:
    """What to look for: the words to match and the weighted stems to cover."""

    text: str
    match_words: tuple[str, ...]
    terms: tuple[str, ...]  # stems that define the subject (no stop words, no scaffolding)
    bigrams: tuple[tuple[str, str], ...]  # adjacent subject stems in the question
    names: tuple[str, ...] = ()  # stems of capitalised words: organisations, programmes, places
    identifiers: tuple[str, ...] = ()  # code-like names, matched verbatim ("--require-hashes")
    forms: dict[str, frozenset[str]] = field(default_factory=dict)  # term -> stems in the index
    # term -> how much it says about the subject (0.1 phrasing .. 1.0 a name); see specificity
    specific: dict[str, float] = field(default_factory=dict)
    words: dict[str, str] = field(default_factory=dict)  # term -> the question's own word
    # terms the question uses as verbs ("boots" in "my container boots up"): see used_as_verbs
    verbs: frozenset[str] = frozenset()
    # terms only the borrowed ``extra`` words give ("rich" for "which one makes it print
    # ...?"): they say what the part is about, not what it asks
    borrowed: frozenset[str] = frozenset()

    @classmethod
    def from_text(cls, text: str, *, extra: Sequence[str] = ()) -> Query:
        folded = words(text)
        tokens = [w for w in folded if w not in STOPWORDS]
        said = len(tokens)  # the text's own tokens come first, then the borrowed ones
        tokens += [w for w in extra if w not in tokens]
        subject = [w for w in tokens if w not in QUESTION_SCAFFOLD and (len(w) > 1 or w.isdigit())]
        own_terms = set(stems(" ".join(w for w in tokens[:said] if w in subject)))
        ordered = stems(" ".join(subject))
        terms = tuple(dict.fromkeys(ordered))
        bigrams = tuple(dict.fromkeys(itertools.pairwise(ordered)))
        # "Annotated-style": the capitalised part is the name, not the word it is joined to.
        capitalised = [
            part
            for w in _CAPITALISED.findall(text)
            for part in w.split("-")
            if part[:1].isupper()
            and fold(part) not in STOPWORDS
            and not _PLURAL_ACRONYM.fullmatch(part)
        ]
        # Borrowed context ("it" -> the organisation named before) helps find passages,
        # but the part's own names say what it is about.
        names = tuple(dict.fromkeys(stems(" ".join(capitalised))))
        own: dict[str, str] = {}
        specific: dict[str, float] = {}
        idioms = idiom_words(text) | _url_only_words(text)
        for word in subject:
            term = stem(word)
            own.setdefault(term, word)
            weight = MINIMUM if word in idioms else specificity(word)
            specific[term] = max(specific.get(term, 0.0), weight)
        for name in names:
            specific[name] = 1.0  # a capitalised name is what the question is about
        return cls(
            text=text,
            match_words=tuple(dict.fromkeys(v for t in tokens for v in variants(t))),
            terms=terms,
            bigrams=bigrams,
            names=tuple(n for n in names if n in terms),
            identifiers=tuple(identifiers(text)),
            forms={
                term: frozenset(found)
                for term, found in index_forms(subject).items()
                if term in terms
            },
            specific={t: specific.get(t, 1.0) for t in terms},
            words={t: own.get(t, t) for t in terms},
            verbs=frozenset(stem(w) for w in used_as_verbs(folded)) & frozenset(terms),
            borrowed=frozenset(terms) - own_terms,
        )


@dataclass(frozen=True, slots=True)
class Ranked:
    hit: Hit
    score: float  # 0..~1, comparable within one query
    coverage: float  # IDF-weighted share of the query's terms found in the section
    matched: frozenset[str]


def section_stems(hit: Hit) -> list[str]:
    """What a section says, read under its title, headings and its page's own labels."""
    section = hit.section
    return stems(
        f"{section.title} {' '.join(section.labels)} {' '.join(section.headings)} {section.text}"
    )


SEARCH_SPECIFICITY = 0.7  # share of a term's search weight that its specificity scales


def search_weights(idf: dict[str, float], specific: dict[str, float]) -> dict[str, float]:
    """What a passage must match, weighed by what each word says about the subject as well as
    by its rarity here: "free" in "which ports need to be free" is rare in HTTPX's docs and
    says nothing; "ports" decides. Tuned on the dev halves (0.7 of 0, 0.3 .. 1.0)."""
    return {
        t: w * (1 - SEARCH_SPECIFICITY + SEARCH_SPECIFICITY * specific.get(t, 1.0))
        for t, w in idf.items()
    }


def coverage(
    terms: Sequence[str], found: set[str] | frozenset[str], idf: dict[str, float]
) -> float:
    total = sum(idf.get(t, 0.0) for t in terms)
    if total <= 0:
        return 0.0
    return sum(idf.get(t, 0.0) for t in terms if t in found) / total


def _adjacent(bigrams: Sequence[tuple[str, str]], tokens: Sequence[str]) -> float:
    if not bigrams:
        return 0.0
    positions: dict[str, list[int]] = defaultdict(list)
    for position, token in enumerate(tokens):
        positions[token].append(position)
    near = 0
    for first, second in bigrams:
        seconds = positions.get(second, [])
        if any(0 < s - f <= 3 for f in positions.get(first, []) for s in seconds):
            near += 1
    return near / len(bigrams)


def _local(query: Query, idf: dict[str, float], hit: Hit, similarity: float) -> float:
    """How well one section of a file answers, judged against the file's other sections."""
    found = set(section_stems(hit))
    return 0.5 * coverage(query.terms, found, idf) + 0.5 * max(similarity, 0.0)


def _best_files(file_strength: dict[str, float]) -> list[str]:
    return sorted(file_strength, key=lambda p: file_strength[p], reverse=True)[:EXPAND_FILES]


def _within_best_files(
    index: SectionIndex,
    query: Query,
    idf: dict[str, float],
    vector: Vectors,
    ranked: list[Ranked],
    file_strength: dict[str, float],
    facets: Sequence[re.Pattern[str]] = (),
) -> list[Ranked]:
    """Sections of the best matching files that the first rankings missed or placed low.

    The right page is usually found; its key section may still be missing when other
    pages share more words with the question ("Slack records" for "why can't I delete my
    Slack messages"). Every section of the best files is scored against its siblings, and
    one that beats the file's best-placed section takes a place next to it (``ranked`` is
    updated in place; new sections are returned).
    """
    position = {r.hit.id: i for i, r in enumerate(ranked)}
    extra: list[Ranked] = []
    for path in _best_files(file_strength):
        siblings = index.file_sections(path)
        if len(siblings) < 2:
            continue
        similarity = index.similarities(vector, [h.id for h in siblings])
        local = {h.id: _local(query, idf, h, similarity[h.id]) for h in siblings}
        found_here = [r for r in ranked if r.hit.section.path == path]
        anchor = max(found_here, key=lambda r: r.score)
        anchor_local = local.get(anchor.hit.id, 0.0) or 1.0
        for hit in siblings:
            ratio = local[hit.id] / anchor_local
            if _of_a_kind_asked(hit, facets):
                # Under the heading of what is asked ("Trade-offs"), in words of its own.
                ratio = max(ratio, 1.0)
            elif ratio <= EXPAND_MARGIN:
                continue
            if hit.id == anchor.hit.id:
                continue
            score = anchor.score * min(ratio, 1.05)
            if hit.id in position:
                old = ranked[position[hit.id]]
                if score > old.score:
                    ranked[position[hit.id]] = Ranked(old.hit, score, old.coverage, old.matched)
                continue
            tokens = set(section_stems(hit))
            found = frozenset(t for t in query.terms if t in tokens)
            extra.append(Ranked(hit, score, coverage(query.terms, found, idf), found))
    return extra


# "See Also", "Next steps": a list of links to other pages, which shares the page's words and
# says nothing. It stays findable (a question about it still reaches it), far below content.
NAVIGATION_PRIOR = 0.4
NAVIGATION_HEADING = re.compile(
    r"^(see also|related( pages| topics| links| reading)?|next steps|further reading|"
    r"learn more|more information|references)$",
    re.IGNORECASE,
)


def _navigation(hit: Hit) -> bool:
    headings = hit.section.headings
    return bool(headings) and bool(NAVIGATION_HEADING.match(headings[-1].strip(" #:*")))


HEADING_MATCH = 1.25


def _heading_prior(
    hit: Hit, query: Query, idf: dict[str, float], facets: Sequence[re.Pattern[str]] = ()
) -> float:
    """What a section's own heading says of its place: a link list far below content; a
    heading the question names in full ("npm publish" under "Life Cycle Operation Order")
    documents exactly that, so its place is with the best; so does a heading of the kind the
    question asks for ("Trade-offs" for "what can go wrong with it?"), on the best pages."""
    prior = NAVIGATION_PRIOR if _navigation(hit) else 1.0
    named = _of_a_kind_asked(hit, facets) or _heading_named(hit, query, idf)
    return prior * HEADING_MATCH if named else prior


def _of_a_kind_asked(hit: Hit, facets: Sequence[re.Pattern[str]]) -> bool:
    headings = hit.section.headings
    return bool(headings) and of_the_kind(headings[-1], facets)


def of_the_kind(heading: str, facets: Sequence[re.Pattern[str]]) -> bool:
    """Whether a section's own heading (not its page's title or parents) is of a kind asked."""
    return any(f.search(heading) for f in facets)


# What a question asks for, and the headings documentation conventionally puts it under
# (a pattern catalogue's "Also known as", "Trade-offs", "When to use"; a guide's
# "Pitfalls", "Considerations"): the words differ, so neither BM25 nor word vectors match
# them.
_FACETS: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = tuple(
    (re.compile(asked, re.IGNORECASE), re.compile(heading, re.IGNORECASE))
    for asked, heading in (
        (
            r"\b(?:other|another|alternative|different)\s+names?\b|\balso\s+(?:called|known)\b"
            r"|\balias(?:es)?\b|\baka\b",
            r"\balso known\b|\balias(?:es)?\b|\bother names?\b",
        ),
        (
            # "risky", "the risks of it" ask for the drawbacks; "low-risk apps" and "reduce
            # the risk of CSRF" do not.
            r"\b(?:drawbacks?|downsides?|disadvantages?|cons|pitfalls?|trade-?offs?|"
            r"limitations?|caveats?|weakness(?:es)?|fragile)\b|\bgo(?:es)? wrong\b"
            r"|(?<![\w-])risky\b|(?<![\w-])risks (?:of|with|in|to)\b|\b(?:what|any) risks\b"
            r"|\bwhat are the risks\b",
            r"\btrade-?offs?\b|\bdrawbacks?\b|\bdisadvantages?\b|\bconsequences\b"
            r"|\bpitfalls?\b|\blimitations?\b|\bconsiderations\b|\bliabilities\b|\bcaveats?\b"
            r"|\bcons\b|\brisks?\b",
        ),
        (
            r"\bwhen (?:should|would|do|does|can|to) (?:i |we |you |one )?(?:use|pick|choose|"
            r"apply|reach for|consider)\b|\bgood fit\b|\buse cases?\b|\bapplicab",
            r"\bwhen to use\b|\bapplicability\b|\buse cases?\b|\bwhen should\b",
        ),
        (
            # not "take advantage of"
            r"\b(?:benefits?|pros|upsides?)\b|(?<!take )(?<!taking )(?<!takes )\badvantages?\b",
            r"\bbenefits?\b|\badvantages?\b|\bpros\b",
        ),
        (
            # "what should I consider before sharding?", "anything to keep in mind?"
            r"\b(?:should|must|need to|to) (?:i |we |you |one )?(?:consider|keep in mind|"
            r"think about|watch out for|be aware of)\b|\bconsiderations\b|\bthings to consider\b",
            r"\bconsiderations\b|\bissues\b|\bcaveats?\b|\bthings to consider\b",
        ),
        (
            # "what problem does the Claim Check pattern solve?"
            r"\bwhat (?:problems?|issues?|challenges?)\b[^?]*\b(?:solve|address|fix|tackle|"
            r"prevent)\w*\b",
            r"\bproblems?\b|\bmotivation\b|\bchallenges?\b",
        ),
        (
            # "what does the pattern assume?", "which assumptions ...?", not "Assuming I
            # have Python, how do I install it?"
            r"\bassumptions?\b|\b(?:what|which)\b[^?]*\bassumes?\b",
            r"\bassumptions?\b|\bprerequisites?\b",
        ),
    )
)


def asked_facets(question: str) -> list[re.Pattern[str]]:
    """The heading patterns of the kinds of content ``question`` asks for."""
    return [heading for asked, heading in _FACETS if asked.search(question)]


def _heading_named(hit: Hit, query: Query, idf: dict[str, float]) -> bool:
    headings = hit.section.headings
    if not headings or fold(headings[-1]) == fold(hit.section.title):
        return False  # a page's title is its file's subject, weighed already
    heading = LINK_TARGET.sub("", headings[-1])
    own = {s for s in stems(heading) if not s.isdigit()}
    if len(own) >= 2 and own <= set(query.terms) and any(idf.get(t, 0.0) > 0 for t in own):
        return True
    # Said word for word, with the words a search drops ("Dependency Type Selectors").
    return len(words(heading)) >= 3 and says(query.text, heading)


def says(question: str, heading: str) -> bool:
    """Whether the question says a heading word for word ("npm publish")."""
    said = " ".join(words(heading))
    return bool(said) and f" {said} " in f" {' '.join(words(question))} "


def rank(index: SectionIndex, query: Query, *, k: int, idf: dict[str, float]) -> list[Ranked]:
    """The ``k`` best sections for ``query``, diversified across files.

    Two rankings are fused by reciprocal rank: the lexical one (BM25 candidates re-scored
    for coverage, adjacency and code names) and the semantic one (nearest section vectors),
    so that a question in words the documents do not use still finds its section.
    """
    hits = index.search(query.match_words, limit=CANDIDATES)
    vector = embed([query.text])[0]
    dense = index.similar(vector, limit=DENSE_CANDIDATES) if query.text else []
    known = {h.id for h in hits}
    hits += index.sections([i for i, _ in dense if i not in known])
    if not hits:
        return []
    best_bm25 = max(h.bm25 for h in hits) or 1.0
    lexical: list[tuple[Hit, float, float, frozenset[str]]] = []
    for hit in hits:
        tokens = section_stems(hit)
        found = frozenset(t for t in query.terms if t in set(tokens))
        cov = coverage(query.terms, found, idf)
        score = 0.45 * (hit.bm25 / best_bm25) + 0.45 * cov + 0.10 * _adjacent(query.bigrams, tokens)
        if query.identifiers:
            # Verbatim in a heading: the section documents that very name.
            heading = hit.section.heading_path.lower()
            body = hit.section.text.lower()
            found_in = [
                0.3 if i in heading else 0.1 if i in body else 0.0 for i in query.identifiers
            ]
            score += sum(found_in) / len(query.identifiers)
        lexical.append((hit, score, cov, found))
    lexical.sort(key=lambda item: item[1], reverse=True)
    semantic = {section_id: position for position, (section_id, _) in enumerate(dense)}
    fused: list[tuple[Hit, float, float, frozenset[str]]] = []
    for position, (hit, _, cov, found) in enumerate(lexical):
        score = 1 / (RRF_K + position)
        if hit.id in semantic:
            score += DENSE_WEIGHT / (RRF_K + semantic[hit.id])
        fused.append((hit, score, cov, found))
    top = max(item[1] for item in fused)
    scored = [(hit, score / top, cov, found) for hit, score, cov, found in fused]

    by_file: dict[str, list[float]] = defaultdict(list)
    for hit, score, _, _ in scored:
        by_file[hit.section.path].append(score)
    file_strength = {
        path: (s := sorted(scores, reverse=True))[0] + 0.25 * sum(s[1:3])
        for path, scores in by_file.items()
    }
    strongest = max(file_strength.values()) or 1.0
    ranked = [
        Ranked(hit, 0.8 * score + 0.2 * file_strength[hit.section.path] / strongest, cov, found)
        for hit, score, cov, found in scored
    ]
    facets = asked_facets(query.text)
    ranked += _within_best_files(index, query, idf, vector, ranked, file_strength, facets)
    on_best = set(_best_files(file_strength))
    ranked = [
        replace(
            r,
            score=r.score
            * _heading_prior(r.hit, query, idf, facets if r.hit.section.path in on_best else ()),
        )
        for r in ranked
    ]
    ranked.sort(key=lambda r: r.score, reverse=True)

    chosen: list[Ranked] = []
    per_file: dict[str, int] = defaultdict(int)
    pool = list(ranked)
    lead = ranked[0].hit.section.path if ranked else ""

    best_score = ranked[0].score if ranked else 0.0

    def damped(r: Ranked) -> float:
        # The best file's second section is not damped: the right page's key section is
        # often its runner-up, and it must not lose its place to far weaker pages. Nor is
        # any section as strong as the best: three sections of one page that all match
        # ("1. Use a password manager") are three answers, not repeats.
        if r.score >= NEAR_TOP * best_score:
            return r.score
        seen = per_file[r.hit.section.path]
        return r.score * SAME_FILE_DAMPING ** (
            max(seen - 1, 0) if r.hit.section.path == lead else seen
        )

    while pool and len(chosen) < k:
        best = max(pool, key=damped)
        pool.remove(best)
        per_file[best.hit.section.path] += 1
        chosen.append(best)
    return chosen
