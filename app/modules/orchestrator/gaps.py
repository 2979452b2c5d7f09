"""The gap check: which parts of a question the passages found leave uncovered.

With a model, the model's own "the documents do not cover" joins the decision
(``combine_model_gaps``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

from app.modules.evidence import CITATION, Evidence, Part
from app.modules.llm.extractive import (
    _ASKS_YES_NO,
    _answers,
    answer_pattern,
    asked_kind,
    asked_sentence,
    gap_sentence,
    split_units,
)
from app.modules.retrieval.retriever import ASKERS_URL, coverage
from app.modules.retrieval.specificity import NOT_A_NOUN
from app.modules.retrieval.text import STOPWORDS, content_terms, stem, stems, words

# A part is a gap when its best passage covers less than this share of its weighted terms
# (IDF x specificity: a coverage threshold works across corpora, where a BM25 cut-off
# does not), or when a specific word of it (a name, a rare noun) is in no passage found.
GAP_COVERAGE = 0.5


GAP_PASSAGES = 6
VALUE_PASSAGES = 10  # the passages searched for the value a question asks for


KEY_SPECIFICITY = 0.9


PAIR_DISCOUNT = 0.9  # two sections of one file together: good, not as good as one
# Covered at least this much and no specific word absent: answered in part, not missed.


PARTIAL_COVERAGE = 0.4
# A question that asks for a value (an amount, a date, a number) needs a few sentences that
# hold such a value and cover this much of the question.


GAP_TYPED = 0.5
TYPED_SHARE = 0.9  # ... or this share of the best passage's coverage
ABSENT_SPECIFIC = 0.4  # at or below: verbs and phrasing (specificity.NOT_A_NOUN caps verbs at 0.4)


WINDOW_UNITS = 3
_CODE_BLOCK = re.compile(r"```.*?(?:```|$)", re.DOTALL)
ATTRIBUTE_COVERAGE = 0.25  # of what is asked about a named subject, in its best passage
# A word only the scene-setting statements use ("Our checklist calls it a smell. How many
# arguments ...?") weighs this share in coverage and never names what is missing.
SCENE_WEIGHT = 0.35
# A question whose own words say this little (specificities summed: "Which one wins?",
# "Is that true?") asks about the scene it set.
MIN_ASKED = 1.0


def assess_gaps(
    parts: list[Part],
    evidence: list[Evidence],
    idf: dict[str, float],
    unknown: set[str],
    mentioned: Callable[[str], bool] = lambda _: False,
) -> None:
    """Mark each part whose subject the best passages leave uncovered.

    A term weighs its corpus IDF times its specificity, so a question's everyday words
    ("put", "right now", "roughly") cannot make a gap while its nouns and names can.
    Coverage is judged on the best passages (one section, or two sections of one file), not
    on a whole file: a huge changelog holds almost every word. A specific word that no
    document contains ("ferries", "kubernetes"), or a code name no document has
    ("--older-than"; ``mentioned`` looks one up), is a gap on its own.
    """
    by_id = {e.id: e for e in evidence}
    sql = [e for e in evidence if e.kind == "sql"]
    for part in parts:
        terms = list(part.query.terms)
        if not terms:
            part.coverage, part.gap = 0.0, True
            continue
        scene_only = _scene_only(part) | _example_only(part)
        weights = {
            t: idf.get(t, 0.0) * _subject_weight(part, t) * (SCENE_WEIGHT if t in scene_only else 1)
            for t in terms
        }
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
        asking = asked_sentence(part.text)
        wanted = answer_pattern(asking, identifiers=False)
        windows = [_window_coverage(terms, e, weights, wanted, part.text) for e in passages]
        near = max(
            [w[0] for w in windows] + [coverage(terms, set(e.stems), weights) for e in sql],
            default=0.0,
        )
        # Only a question that asks for a value is held to holding one. The value may sit
        # a little further down than the passages that cover the question best (a page's
        # "Typer added support for Annotated in version 0.9.0" under a heading of its own).
        more = [by_id[i] for i in part.evidence_ids[GAP_PASSAGES:VALUE_PASSAGES]]
        typed = (
            max(
                [w[1] for w in windows]
                + [_window_coverage(terms, e, weights, wanted, part.text)[1] for e in more]
                + [1.0 for _ in sql],
                default=0.0,
            )
            if wanted is not None
            else 1.0
        )
        absent = [t for t in terms if t not in anywhere]
        key_absent = [
            t
            for t in absent
            if t in unknown
            and _subject_weight(part, t) >= KEY_SPECIFICITY  # "crank up" names nothing
            and t not in scene_only
            and not _a_quantity(t)
        ]
        texts = " ".join(e.text.lower() for e in passages)
        unknown_names = [
            i
            for i in part.query.identifiers
            if _code_token(i)
            and _code_token(i) not in texts
            and not _EXAMPLE.search(i)
            and not _PLACEHOLDER.search(_code_token(i))
            and not mentioned(_code_token(i))
        ]
        part.coverage = round(best, 3)
        part.section_coverage = round(near, 3)
        part.typed_coverage = round(typed, 3)
        # Name what matters most first: the specific words no passage mentions. Everyday
        # words ("usually", "long") are never named: "the documents do not cover 'usually'"
        # says nothing; the question is quoted whole instead.
        missing = sorted(
            (t for t in absent if _subject_weight(part, t) > ABSENT_SPECIFIC),
            key=lambda t: weights[t],
            reverse=True,
        )
        part.missing = unknown_names + _words_for(
            part, [t for t in missing if t in key_absent] or missing[:2]
        )
        part.decisive = unknown_names + _words_for(part, key_absent)
        part.absent = [
            (part.query.words.get(t, t), part.query.specific.get(t, 1.0), t in unknown)
            for t in absent
        ]
        # Low coverage makes a gap only when what the passages lack includes a word that
        # names something (a noun, a name: specificity >= ABSENT_SPECIFIC); a question in
        # everyday verbs and phrasing ("getting rid of", "hang on to") is not unanswered
        # because the documents say it in other words. Nor is one word no document uses at
        # all ("subway", "flavour", "verdict"; a name specific enough to decide alone is
        # ``key_absent``): it is the asker's word for what the documents call otherwise. A
        # word the documents use elsewhere and not here, or two words none of them uses
        # ("boots and gloves"), is what they lack.
        # Words borrowed from an earlier part ("it" -> what that part was about) help find
        # passages; whether this part is answered is judged on its own words. A word the
        # question uses as a verb ("boots up", "kick off") names nothing, whatever else it
        # can be.
        own = set(stems(part.text)) - scene_only - _told(part)
        lacking = [
            t
            for t in absent
            if t in own and _subject_weight(part, t) > ABSENT_SPECIFIC and not _a_quantity(t)
        ]
        lacks_a_name = any(t not in unknown for t in lacking) or len(lacking) > 1
        low = best < GAP_COVERAGE and lacks_a_name
        # The passages name the subject ("Verdant", "Ostervale Dairy") and say nothing of what
        # is asked about it ("water consumption target"): the names alone carried the
        # coverage. An overview is answered by the subject's outline, so it is not held to it.
        # "Which Relationship() parameter ...": "parameter" is the kind of answer asked for,
        # which the passage names ("link_model=") rather than says.
        kind = asked_kind(part.text)
        attributes = [t for t in terms if t not in part.query.names and t != kind]
        asked = 1.0
        if part.query.names and attributes and not part.broad:
            said = max(views, key=lambda v: coverage(attributes, v, weights), default=set())
            # Only a word that names something can be what the passages leave unsaid: "which
            # class does the example rely on?" is not unanswered for want of "rely". A
            # yes-or-no question stands on its predicate ("is the Strangler pattern
            # deprecated?"), however little its word names.
            if _ASKS_YES_NO.match(asking) or any(
                _subject_weight(part, t) > ABSENT_SPECIFIC for t in attributes if t not in said
            ):
                asked = coverage(attributes, said, weights)
        # A value the passages hold among nearly all the words the best of them covers is
        # the value asked for, however wordy the question ("how long will a request wait on
        # a server that has gone quiet"); a question the passages cover poorly is not
        # answered by a number that happens to sit near its few words.
        valued = typed >= GAP_TYPED or (best >= GAP_COVERAGE and typed >= TYPED_SHARE * best)
        part.gap = low or not valued or asked < ATTRIBUTE_COVERAGE or bool(part.decisive)
        part.partial = part.gap and not (key_absent or unknown_names) and best >= PARTIAL_COVERAGE


def _scene_only(part: Part) -> set[str]:
    """Stems only the part's scene-setting statements use, not the question it asks."""
    if not part.scene or not part.text.startswith(part.scene):
        return set()
    text = part.text[len(part.scene) :]
    if sum(part.query.specific.get(t, 0.0) for t in content_terms(text)) < MIN_ASKED:
        return set()
    return _told(part)


def _told(part: Part) -> set[str]:
    """Stems only the scene-setting statements use, however little the asking sentence says."""
    if not part.scene or not part.text.startswith(part.scene):
        return set()
    return set(stems(part.scene)) - set(stems(part.text[len(part.scene) :]))


def _example_only(part: Part) -> set[str]:
    """Stems only the asker's example URLs and hosts use ("https://api.example.com/users"),
    and the asker's placeholder names ("python -m mypkg")."""
    examples = [i for i in part.query.identifiers if _EXAMPLE.search(i)]
    placeholders = {t for t in part.query.terms if _PLACEHOLDER.fullmatch(t)}
    if not examples:
        return placeholders
    rest = ASKERS_URL.sub(" ", part.text)
    return (set(stems(" ".join(examples))) - set(stems(rest))) | placeholders


# The asker's own stand-in names: "mypkg", "my_app", "myproject", "foo".
_PLACEHOLDER = re.compile(
    r"\b(?:my[-_]?(?:pkg|package|app|application|project|tool|cli|module|lib|library|script|"
    r"service|site|server|repo|file|command|program|thing)s?|foo|bar|baz|qux)\b",
    re.IGNORECASE,
)


def _subject_weight(part: Part, term: str) -> float:
    """How much a term says about what the part asks: its specificity, at most a verb's
    (NOT_A_NOUN) where the question uses it as one ("boots up", "it starts"), whatever else
    the word can be.
    """
    value = part.query.specific.get(term, 1.0)
    return min(value, NOT_A_NOUN) if term in part.query.verbs else value


def _a_quantity(term: str) -> bool:
    """The asker's own figure: a bare number other than a year ("500 km away"), which the
    documents state as a rule ("under 700 km"), a number in words or a unit ("thousands of
    URLs", "a multi-gigabyte file"); not a thing the documents must name."""
    return (term.isdigit() and not (len(term) == 4 and term[:2] in {"19", "20"})) or (
        term in _QUANTITY_STEMS
    )


_QUANTITY_STEMS = frozenset(
    stem(w)
    for w in """hundreds thousands millions billions dozens kilobyte megabyte gigabyte
    terabyte kilometre kilometer kilometres kilometers miles""".split()
)


# The asker's own example data, not a name the documents must hold: a URL, or a host of the
# domains reserved for examples (RFC 2606).
_EXAMPLE = re.compile(r"://|(?:^|\.)example\.(?:com|org|net)\b|\.(?:example|test|invalid)\b")


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
        # A value in a code example ("retries=1") is an example, not what the text states.
        said = _CODE_BLOCK.sub(" ", " ".join(pieces[start : start + WINDOW_UNITS]))
        if wanted is None or _answers(wanted, said, question):
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
        sources = [name for name, said in (("detector", by_detector), ("model", by_model)) if said]
        part.gap_source = "+".join(sources) or None


def gap_statement(part: Part) -> str:
    """What the documents do not cover, in the model's words when the model said it."""
    if part.model_statements:
        return CITATION.sub("", part.model_statements[0]).strip()
    return gap_sentence(part)
