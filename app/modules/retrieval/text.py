"""Tokens the way the index sees them: unicode61 folding plus the Porter stemmer.

FTS5 stems inside SQLite; the writer and the gap check need the same stems in Python to
compare a question with a sentence, so both use the Porter algorithm (PyStemmer).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

import Stemmer
from wordfreq import zipf_frequency

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CAMEL = re.compile(r"\b[A-Za-z]+[a-z][A-Z][A-Za-z]*\b")
_CAMEL_PARTS = re.compile(r"(?<=[a-z])(?=[A-Z])")

# Function words and question scaffolding: they say how a thing is asked, not what.
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are aren as at be because been
    before being below between both but by can cannot could did didn do does doesn doing don
    down during each either else ever few for from further get gets got had has hasn have
    having he her here hers herself him himself his how i if in into is isn it its itself
    just let lets like ll me might more most much must my myself no nor not now of off on
    once only or other ought our ours ourselves out over own per please re same shall she
    should so some such tell than that the their theirs them themselves then there these
    they this those through to too under until up upon us ve very via was wasn way we were
    weren what when where which while who whom whose why will with within without would yet
    you your yours yourself yourselves s t d m o y give show list describe explain say says
    said
    """.split()
)

# Words that shape a question ("what are the main ...") without naming its subject; they
# are kept out of gap checks so that a broad question is judged on what it is about.
QUESTION_SCAFFOLD = frozenset(
    """
    main key major overall general summary summarise summarize overview kind kinds type
    types thing things information details detail know known many often new current
    currently different various specific example examples part parts one two three first
    second equivalent equivalents counterpart counterparts analog analogue
    """.split()
)


# A markdown link's target or a bare URL: an address, never words or values a reader asks
# about ("[KB0024344](https://...?id=3611...)", "[`npm publish`](/commands/npm-publish)").
LINK_TARGET = re.compile(r"\]\([^)\s]*\)|<?\bhttps?://\S+")


def fold(text: str) -> str:
    """Lower case without diacritics, as FTS5's unicode61 tokenizer folds."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


_NEGATION = re.compile(r"\b(?:(wo)|(ca)|(sha)|(\w+))n['’]t\b", re.IGNORECASE)


def _expand_negation(match: re.Match[str]) -> str:
    word = (
        "will"
        if match.group(1)
        else "can"
        if match.group(2)
        else "shall"
        if match.group(3)
        else match.group(4)
    )
    return f"{word} not"


def words(text: str) -> list[str]:
    """Folded tokens; ``EcoDrive`` and ``maxRetries`` also yield their parts.

    "haven't" is "have not", not the words "haven" and "t".
    """
    if "'" in text or "’" in text:
        text = _NEGATION.sub(_expand_negation, text)
    return _WORD.findall(fold(split_camel(text)))


def split_camel(text: str) -> str:
    """Add the parts of camelCase words after them, so "eco driving" finds "EcoDrive"."""
    return _CAMEL.sub(lambda m: f"{m.group(0)} {_CAMEL_PARTS.sub(' ', m.group(0))}", text)


def camel_parts(text: str) -> str:
    """Only the parts of the camelCase words in ``text`` ("EcoDrive" -> "Eco Drive")."""
    return " ".join(_CAMEL_PARTS.sub(" ", m.group(0)) for m in _CAMEL.finditer(text))


_local = threading.local()


def _stemmer() -> Stemmer.Stemmer:
    # One per thread: a PyStemmer object is not thread-safe, and two runs stemming at once
    # through one got wrong stems, which stem()'s cache then kept for the process's life.
    stemmer: Stemmer.Stemmer | None = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("porter")
    return stemmer


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """The Porter stem of a folded word, after spelling and abbreviations are unified."""
    return index_stem(canonical(word))


def index_stem(word: str) -> str:
    """The stem SQLite's porter tokenizer gives ``word`` (no spelling unification).

    Like SQLite (fts5_porter.c), tokens shorter than 3 or longer than 64 characters are
    left as they are: "js" stays "js", where the Porter algorithm alone would give "j".
    """
    if len(word) < 3 or len(word) > 64:
        return word
    return str(_stemmer().stemWord(word))


def index_forms(words_: Iterable[str]) -> dict[str, set[str]]:
    """For each unified stem of ``words_``, the stems the index may hold for it."""
    forms: dict[str, set[str]] = {}
    for word in words_:
        for form in variants(word):
            forms.setdefault(stem(word), set()).add(index_stem(form))
    return forms


# Abbreviations technical writing uses for the words people type, and the other way round.
ALIASES = {
    "max": "maximum", "min": "minimum", "config": "configuration", "configs": "configurations",
    "cfg": "configuration", "env": "environment", "envs": "environments",
    "auth": "authentication", "repo": "repository", "repos": "repositories",
    "dir": "directory", "dirs": "directories", "docs": "documentation", "info": "information",
    "db": "database", "dbs": "databases", "msg": "message", "msgs": "messages",
    "num": "number", "param": "parameter", "params": "parameters", "arg": "argument",
    "args": "arguments", "spec": "specification", "specs": "specifications",
    "impl": "implementation", "mgmt": "management", "govt": "government",
    "dept": "department", "approx": "approximately", "qty": "quantity", "avg": "average",
    "pct": "percent", "percentage": "percent", "ev": "electric", "evs": "electric",
}  # fmt: skip
_BRITISH = re.compile(r"(?<=\w{3})is(ation|ations|ing|ed|es|e|er|ers)$")


# British spellings whose American form differs by more than -ise/-ize ("defence" in a
# question, "defense" in the documents).
_SPELLINGS = {
    f"{root}{ending}": f"{american}{ending}"
    for root, american, endings in [
        ("defence", "defense", ("", "s")), ("licence", "license", ("", "s")),
        ("offence", "offense", ("", "s")), ("centre", "center", ("", "s", "d")),
        ("metre", "meter", ("", "s")), ("litre", "liter", ("", "s")),
        ("catalogue", "catalog", ("", "s", "d")), ("dialogue", "dialog", ("", "s")),
        ("analogue", "analog", ("", "s")), ("colour", "color", ("", "s", "ed", "ing")),
        ("behaviour", "behavior", ("", "s", "al")), ("favour", "favor", ("", "s", "ite")),
        ("honour", "honor", ("", "s", "ed")), ("labour", "labor", ("",)),
        ("neighbour", "neighbor", ("", "s", "ing")), ("harbour", "harbor", ("", "s")),
        ("flavour", "flavor", ("", "s")), ("endeavour", "endeavor", ("", "s")),
        ("grey", "gray", ("",)), ("cheque", "check", ("", "s")),
        ("programme", "program", ("", "s")), ("modelling", "modeling", ("",)),
        ("travelling", "traveling", ("",)), ("cancelled", "canceled", ("",)),
        ("labelled", "labeled", ("",)), ("enrol", "enroll", ("", "s")),
    ]
    for ending in endings
}  # fmt: skip


def canonical(word: str) -> str:
    """One spelling per word: abbreviations expanded, British spellings as American, an
    adverb as the adjective it is made from."""
    return adjective(american(ALIASES.get(word, word)))


# Porter stems "irregularly" to "irregularli" and "irregular" to "irregular": a question's
# "update the bar irregularly" never met the documents' "irregular batches", nor "do it
# manually" a "manual step". An adverb is read as its adjective when that is an English
# word (``wordfreq``); these words end in -ly without being made from one that way.
_NOT_ADVERBS = frozenset(
    """assembly comply likely unlikely timely untimely namely mostly gently overly friendly
    unfriendly costly orderly elderly lately family anomaly monopoly butterfly supply multiply
    reapply holy jelly belly bully rally italy july lovely lively deadly homely hourly daily
    nightly weekly biweekly monthly quarterly yearly really hardly lastly shortly nearly
    largely partly highly openly barely merely fairly""".split()
)
ADVERB_ZIPF = 2.0  # how common the -ly word itself must be: "Plotly" is a name, not "plot"
_ADVERB_ENDINGS = (("ically", "ical"), ("ically", "ic"), ("bly", "ble"), ("ily", "y"), ("ly", ""))
ADJECTIVE_ZIPF = 3.0  # how common (Zipf scale) the adjective must be in English


@lru_cache(maxsize=50_000)
def adjective(word: str) -> str:
    """The adjective an adverb is made from ("automatically" -> "automatic"); else the word."""
    if (
        len(word) < 6
        or not word.endswith("ly")
        or word in _NOT_ADVERBS
        or zipf_frequency(word, "en") < ADVERB_ZIPF
    ):
        return word
    for ending, replacement in _ADVERB_ENDINGS:
        if word.endswith(ending):
            base = word[: -len(ending)] + replacement
            if (
                len(base) >= 4
                and base not in STOPWORDS
                and zipf_frequency(base, "en") >= ADJECTIVE_ZIPF
            ):
                return base
    return word


def _adverbs(word: str) -> set[str]:
    """The adverbs made from an adjective ("manual" -> "manually"), for the full-text query."""
    forms = {word + "ly", word[:-1] + "ily", word[:-2] + "ly", word + "ally"}
    return {f for f in forms if f != word and adjective(f) == word}


def american(word: str) -> str:
    """A British spelling as American ("flavour" -> "flavor"); any other word as it is."""
    word = _SPELLINGS.get(word, word)
    return _BRITISH.sub(r"iz\1", word) if "is" in word else word


def variants(word: str) -> list[str]:
    """Spellings of ``word`` that the index may hold (for the full-text query)."""
    forms = {word, canonical(word)}
    forms |= _adverbs(canonical(word))
    forms |= {short for short, full in ALIASES.items() if full == canonical(word)}
    forms |= {british for british, american in _SPELLINGS.items() if american in forms}
    forms |= {re.sub(r"iz(ation|ations|ing|ed|es|e|er|ers)$", r"is\1", f) for f in set(forms)}
    return sorted(forms)


def stems(text: str) -> list[str]:
    """Every token's stem, stop words included (positions matter for phrases)."""
    return [stem(w) for w in words(text)]


def content_terms(text: str) -> list[str]:
    """Distinct stems of the words that carry meaning, in order of first appearance."""
    seen: dict[str, None] = {}
    for word in words(text):
        if word in STOPWORDS or (len(word) == 1 and not word.isdigit()):
            continue
        seen.setdefault(stem(word), None)
    return list(seen)


# Everyday verbs, adjectives and adverbs: in a question they say what is done with the
# subject ("put into", "formally adopt", "so far", "how big"), so a passage that answers may
# well use other words for them. The gap check weighs them lightly; names and nouns decide.
GENERIC_WORDS = frozenset(
    """
    able accept according achieve across actual actually add added adopt affect afford ago
    agree aim allow allowed almost alone along already always amount annual annually anyone
    anything apply approach approve approx around ask away back bad based basic become begin
    behind believe best better big biggest bring build built buy call came carry case cause
    change check choose claim clear close come compare complete consider continue cost costs
    count cover create current cut daily deal decide deliver depend detail develop different
    direct do doing done due during each early earn easy effect else enable end enough ensure
    entire even ever every exact exactly expect explain extra fact fail fall far fast final
    finally find fine finish follow following formal formally full fully further future gave
    general get getting give given go goes going gone good got great grow half hand happen
    hard head hear help high higher hold hope huge idea important include increase instead
    intend involve keep kind know large last late later least leave less let level likely
    little long look lot low lower made main major make making manage mean means meet might
    mind miss more move much must name near nearly need never next nice normal normally note
    number offer often old open order overall own paid part past pay people per perhaps place
    plan planned point possible present pretty previous probably problem provide pull put
    quick quickly quite rather reach read ready real really reason recent recently regular
    remain require result return right run running same save say see seem seen send set
    several short should show side similar simple since small so soon sort spend spent stand
    start state still stop such suggest support suppose sure take taken talk tell tend term
    thing think though thus time today together told took top total toward try turn type
    typical under unless until use used using usual usually value various want way well went
    whether whole wide will wish work works worth write year yes yet
    """.split()
)


def is_generic(term: str) -> bool:
    """A stem that says little about what a question is about (see GENERIC_WORDS)."""
    if term.isdigit():
        return not (len(term) == 4 and term[:2] in {"19", "20"})  # a year names a period
    return term in _generic_stems()


@lru_cache(maxsize=1)
def _generic_stems() -> frozenset[str]:
    return frozenset(stem(w) for w in GENERIC_WORDS)


# Code-like names in a question ("--require-hashes", "process.env", "child_process",
# "`keepAlive`"): a passage that has them verbatim is about exactly that.
_IDENTIFIER = re.compile(
    r"`([^`\s][^`]{0,60})`|(?<![\w-])(--?[A-Za-z][\w-]{1,40})|\b([A-Za-z_]\w*(?:[._]\w+)+)\b"
)


# Latin abbreviations look like dotted names ("i.e", "e.g") but name no code.
_NOT_IDENTIFIERS = frozenset({"i.e", "e.g", "etc", "vs", "a.m", "p.m", "u.s", "cf"})


def identifiers(text: str) -> list[str]:
    """Code-like names in ``text``, lower-cased, without the backticks."""
    found = [next(g for g in m.groups() if g) for m in _IDENTIFIER.finditer(text)]
    return list(
        dict.fromkeys(
            f.lower() for f in found if len(f) > 2 and f.lower().strip(".") not in _NOT_IDENTIFIERS
        )
    )
