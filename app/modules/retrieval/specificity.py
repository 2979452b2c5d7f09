"""How much one word of a question says about what the question is *about*.

Corpus IDF alone gives a word the corpus never uses ("roughly", "bother", "recommend") the
highest weight, so a user's own phrasing would decide whether a question is answerable.
General-English rarity (``wordfreq``, whose frequency data ships in its wheel) and the word's
possible parts of speech (``lemminflect``, whose lexicon ships in its wheel) tell everyday
phrasing from the nouns and names that carry a subject: "salary", "ferries", "kubernetes"
are specific; "put", "right", "quicker", "officially" are not.
"""

from __future__ import annotations

import re
from functools import lru_cache

import lemminflect
from wordfreq import zipf_frequency

from app.modules.retrieval.text import american

# Words about the documents or the asking itself, never about the subject.
META_WORDS = frozenset(
    """
    document documents documentation doc docs handbook playbook guide guides manual manuals
    page pages section sections chapter catalogue catalog catalogues wiki readme according mention
    mentioned mentions say says said state states stated tell told explain explained describe
    described question questions answer answers info information official officially
    """.split()
)

# The people in the asker's story ("a colleague claims ...", "my teammate wants ..."): who
# asks or told them, never what the documents must speak of.
STORY_WORDS = frozenset(
    """
    colleague colleagues coworker coworkers teammate teammates buddy friend friends boss
    someone somebody claim claims claimed rumour rumor heard
    """.split()
)
STORY = 0.15

# Idioms say how a thing is asked, in words that would otherwise read as nouns: "kicking the
# tires" is about trying something out, not about tires; "chip in" is about paying.
_IDIOMS = re.compile(
    r"\bkick(?:s|ed|ing)? the (?:tires|tyres)\b|\bchip(?:s|ped|ping)? in\b"
    r"|\bburn(?:s|ed|t|ing)? (?:a|an|one|two|three|a whole|an entire) "
    r"(?:day|week|month|hour|afternoon|sprint)s?\b|\bfor ages\b"
    r"|\b(?:gone|go|goes|went|going) quiet\b|\bhook(?:s|ed|ing)? (?:\w+ )?up\b"
    r"|\ba (?:pile|bunch|ton|heap|load)s? of\b|\b(?:on|in) the fly\b|\bout of the box\b"
    r"|\bunder the hood\b|\bfrom scratch\b|\bthe hard way\b|\bin a nutshell\b"
    r"|\bget(?:s|ting)? stuck\b|\brule of thumb\b|\bballpark\b|\bheads[- ]up\b"
    r"|\bbig deal\b|\bon the same page\b|\bgo(?:es)? sideways\b|\bfor good\b",
    re.IGNORECASE,
)


def idiom_words(text: str) -> set[str]:
    """The folded words of ``text`` that are part of an idiom ("kicking the tires")."""
    return {w.lower() for m in _IDIOMS.finditer(text) for w in re.findall(r"[\w-]+", m.group(0))}


# A word at or above this Zipf frequency is everyday English (about once per 100,000 words);
# at RARE or below it is as specific as a name.
EVERYDAY_ZIPF = 6.0
RARE_ZIPF = 3.5
NOT_A_NOUN = 0.4  # verbs, adjectives and adverbs say how, not what
MINIMUM = 0.1


@lru_cache(maxsize=50_000)
def specificity(word: str) -> float:
    """0.1 (everyday phrasing) to 1.0 (a name or a rare noun) for one folded word."""
    if not word:
        return 0.0
    if word.isdigit():
        # A year names a period ("in 2031"); other bare numbers are usually part of a value.
        return 1.0 if len(word) == 4 and word[:2] in {"19", "20"} else 0.5
    if word in META_WORDS:
        return 0.0
    if word in STORY_WORDS:
        return STORY
    # A spelling is no rarer a word than its other spelling: "flavour" is as everyday as
    # "flavor", though the English frequency lists count mostly American text.
    zipf = max(zipf_frequency(word, "en"), zipf_frequency(american(word), "en"))
    if zipf <= 0:
        return 1.0  # not an English word at all: a product, a command, an identifier
    rarity = min(1.0, max(MINIMUM, (EVERYDAY_ZIPF - zipf) / (EVERYDAY_ZIPF - RARE_ZIPF)))
    tags = lemminflect.getAllLemmas(word)
    if tags and not ({"NOUN", "PROPN"} & tags.keys()):
        rarity *= NOT_A_NOUN
    return max(MINIMUM, rarity)


# What comes before a verb: a modal or "to", a subject pronoun, a form of "be" before an
# -ing word; what comes after one: the particle of a phrasal verb ("boots up", "kick off").
_BEFORE_VERB = frozenset(
    "to can could will would should must may might do does did i you we they he she it".split()
)
_BE = frozenset("am is are was were be been being m re s keep keeps start starts stop".split())
_PARTICLES = frozenset("up off away out down back".split())
_OBJECTS = frozenset("it them me us".split())
_DEMONSTRATIVES = frozenset("this that these those".split())


def _object_after(tokens: list[str], i: int) -> bool:
    after = tokens[i + 1] if i + 1 < len(tokens) else ""
    # A demonstrative ends the question ("addresses that?"); inside it, it opens a noun
    # phrase ("this year").
    return i > 0 and (after in _OBJECTS or (after in _DEMONSTRATIVES and i + 2 == len(tokens)))


_DETERMINERS = frozenset("a an the my your our their his her its this that these those".split())


def used_as_verbs(tokens: list[str]) -> set[str]:
    """The words of a question (folded tokens, stop words kept) that it uses as verbs.

    A word that can be either ("boots", "starts", "kick", "dealing") is a verb where the
    words around it say so, and then names no subject: "my container boots up quicker" is
    not about boots. Only words the lexicon knows as verbs qualify.
    """
    found: set[str] = set()
    for i, word in enumerate(tokens):
        tags = lemminflect.getAllLemmas(word)
        if "VERB" not in tags:
            continue
        before = tokens[i - 1] if i else ""
        two_before = tokens[i - 2] if i > 1 else ""
        after = tokens[i + 1] if i + 1 < len(tokens) else ""
        verb = (
            before in _BEFORE_VERB
            or (word.endswith("ing") and (before in _BE or _only_a_verb(before)))
            or after in _PARTICLES
            # "which pattern addresses it?", "... addresses that?" at the end: a word with its
            # object after it acts. Not "the package it ...", "the budget this year",
            # "the setting that controls": after a determiner it is a noun.
            or (before not in _DETERMINERS and _object_after(tokens, i))
            or (after == "on" and tokens[i + 2 : i + 3] == ["to"])
            # "does npm hang", "can uv turn": an auxiliary, its subject, then the verb
            or (two_before in _BEFORE_VERB - {"to"} and before not in _DETERMINERS)
        )
        if verb:
            found.add(word)
    return found


def _only_a_verb(word: str) -> bool:
    """ "prefer" in "prefer reusing": a word that is never a noun, so what follows is its object."""
    tags = lemminflect.getAllLemmas(word) if word else {}
    return "VERB" in tags and "NOUN" not in tags
