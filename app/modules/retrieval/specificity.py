"""How much one word of a question says about what the question is *about*.

Corpus IDF alone gives a word the corpus never uses ("roughly", "bother", "recommend") the
highest weight, so a user's own phrasing would decide whether a question is answerable.
General-English rarity (``wordfreq``, whose frequency data ships in its wheel) and the word's
possible parts of speech (``lemminflect``, whose lexicon ships in its wheel) tell everyday
phrasing from the nouns and names that carry a subject: "salary", "ferries", "kubernetes"
are specific; "put", "right", "quicker", "officially" are not.
"""

from __future__ import annotations

from functools import lru_cache

import lemminflect
from wordfreq import zipf_frequency

# Words about the documents or the asking itself, never about the subject.
META_WORDS = frozenset(
    """
    document documents documentation doc docs handbook guide guides manual manuals page pages
    section sections chapter catalogue catalog catalogues wiki readme according mention
    mentioned mentions say says said state states stated tell told explain explained describe
    described question questions answer answers info information official officially
    """.split()
)

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
    zipf = zipf_frequency(word, "en")
    if zipf <= 0:
        return 1.0  # not an English word at all: a product, a command, an identifier
    rarity = min(1.0, max(MINIMUM, (EVERYDAY_ZIPF - zipf) / (EVERYDAY_ZIPF - RARE_ZIPF)))
    tags = lemminflect.getAllLemmas(word)
    if tags and not ({"NOUN", "PROPN"} & tags.keys()):
        rarity *= NOT_A_NOUN
    return max(MINIMUM, rarity)
