"""The offline writer: a cited answer composed from the best sentences of the evidence.

For each part of the question it scores the sentences, list items and table rows of that
part's evidence (IDF-weighted overlap with the question, the heading they sit under, the
section's rank, and a bonus for the specifics people ask for: numbers, names, identifiers),
drops near-duplicates, and writes the best one as the direct answer followed by supporting
points, each with its citation. Nothing is stated that no evidence says.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from app.modules.evidence import AnswerBrief, Evidence, Part
from app.modules.llm.base import WriterStopped
from app.modules.retrieval.embedding import embed
from app.modules.retrieval.retriever import asked_facets, coverage, of_the_kind
from app.modules.retrieval.text import LINK_TARGET, STOPWORDS, content_terms, stem, stems

_ABBREVIATIONS = frozenset(
    [
        "e.g",
        "i.e",
        "etc",
        "approx",
        "dr",
        "mr",
        "mrs",
        "ms",
        "no",
        "nos",
        "vs",
        "st",
        "inc",
        "ltd",
        "co",
        "fig",
        "cf",
        "jr",
        "sr",
        "prof",
        "dept",
        "est",
        "incl",
    ]
)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[*_]*[A-Z0-9])")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+(.*)$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}")
_SPECIFIC = re.compile(r"\d|%|€|\$|£|\bEUR\b|\bUSD\b|`[^`]+`|--?[a-z][\w-]+")
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*")
_MARKUP = re.compile(r"\*\*|__|(?<!\w)[*_](?!\s)|(?<!\s)[*_](?!\w)")

CODE_LINES = 25  # longer code blocks stay in the evidence panel
CLOSEST = 3  # passages shown under a gap: what the reader can check for themselves
SECTION_PRIOR = 0.5  # how much the retrieval rank of a unit's section counts
MIN_FRAMED = 0.1
SEMANTIC_WEIGHT = 0.2  # question-to-unit similarity (WordLlama); tuned on the dev halves
LEAD_VALUE_SHARE = 0.75  # a unit holding the value asked for leads if it scores this near the top
PAD_SHARE = 0.85  # under a lead that gives the value asked, a unit without one needs this share
FLOOR = 0.6  # supporting units score at least this share of the lead's score
SAME_SUBJECT = 0.4  # another folder's unit holds this much of what the lead is about
BROAD_FLOOR = 0.5  # a unit read in its context must cover at least this much of the question

_SIGNPOST = re.compile(
    r"^(this|the present|the following) (document|page|section|report|chapter|guide|note|faq)\b"
    r"|^(see|refer to|for (more|further) (details|information))\b",
    re.IGNORECASE,
)

_MONEY = re.compile(
    r"(€|\$|£|\bEUR|\bUSD|\bGBP|\bCHF)\s*\d|\d\s*(€|EUR|USD|GBP|CHF|euros?|dollars?|pounds|"
    r"cents?)\b|\d\s*(%|percent|per cent)",
    re.IGNORECASE,
)
# Numbers in words ("after two round trips", "three days"); not "one", which is as often
# "one of the ..." as a count.
_NUMBER_WORDS = (
    r"two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|"
    r"forty|fifty|sixty|hundred|thousand|dozen|twice"
)
# Any figure but a bare year: "how many trucks" is not answered by "in 2024".
_NUMBER = re.compile(rf"\b(?!(?:19|20)\d\d\b)\d[\d,.]*|\b(?:{_NUMBER_WORDS})\b", re.IGNORECASE)
_TIME = re.compile(
    r"\b(19|20)\d\d\b|\b(january|february|march|april|june|july|august|september|"
    r"october|november|december|q[1-4]|quarter|annually|monthly|weekly|daily|every|"
    r"years?|months?|weeks?|days?|hours?)\b"
    # the month, not the verb: "in May", "by the end of May", "May 2024", "3 May 2024",
    # not "this may not be suitable" or "Python 3 may not be supported"
    r"|\b(?:in|by|until|since|from|of|before|after|during)\s+(?-i:May)\b"
    r"|(?-i:\bMay)\s+\d|\b\d{1,2}\s+(?-i:May)\b(?=\s*(?:\d|,|\.|$))",
    re.IGNORECASE,
)
_PROPER = re.compile(r"\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)+\b|\b[A-Z]{2,}\b")
_ASKS_MONEY = re.compile(
    r"\b(cost|costs|costing|price|priced|pricing|budget\w*|spend|spent|charge[sd]?|fee|fees|"
    r"surcharge|premium|subsid\w*|salary|salaries|wage|wages|reimburse\w*|invest\w*)\b"
    r"|\bhow much (money|\w+ (do|does|did|will|would) \w+ (pay|earn|get|receive))\b"
    r"|\bhow much .{0,40}\b(pay|paid|earn|charge|cost|spend)\b",
    re.IGNORECASE,
)
# "How long" is a duration or a length: a figure with its unit ("16 characters", "90 days"),
# not any number nearby ("the last 24 passwords").
_ASKS_LENGTH = re.compile(r"\bhow long\b", re.IGNORECASE)
_MEASURE = re.compile(
    rf"\b(?:\d[\d,.]*|{_NUMBER_WORDS})\s*(characters?|chars|letters|digits|bytes|[kmg]i?b|words|lines|pages|km|"
    r"kilomet(?:er|re)s?|miles?|met(?:er|re)s?|feet|ms|milliseconds?|seconds?|minutes?|hours?|"
    r"days?|weeks?|months?|years?)\b",
    re.IGNORECASE,
)
# "Where does uv put its cache?" in a tool's documentation: a path under a home or a
# variable ("$XDG_CACHE_HOME/uv", "~/.cache/uv", "%LOCALAPPDATA%\\uv").
_ASKS_PLACE = re.compile(
    r"\bwhere (?:does|do|is|are|will|would|can|should)\b.{0,60}\b(?:put|puts|store[sd]?|"
    r"keep[s]?|save[sd]?|write[s]?|written|located|live[s]?|cache[sd]?|end up|go|"
    r"installed|placed)\b",
    re.IGNORECASE,
)
_PATH = re.compile(r"(?<![\w/])(?:~|\$\{?\w+\}?|%\w+%)[/\\][\w./\\-]+")
_ASKS_NUMBER = re.compile(
    r"\bhow (much|many|big|large|far|long|high|low)\b|\bwhat(?:'s|’s| is| are| was)?(?: the)?"
    r"(?: \w+)? (share|percentage|proportion|"
    r"fraction|number|amount|level|size|capacity|limit|maximum|minimum)\b"
    r"|\b(status|http|exit|return|error) codes?\b|\bport\b",
    re.IGNORECASE,
)
# "What percentage / share ...?" is answered by a percentage, not by any figure ("millions of
# messages", a date).
_ASKS_PERCENT = re.compile(
    r"\b(?:what|which|how many)(?:'s|’s| is| are| was)?(?: the)?(?: \w+)? "
    r"(?:percent\w*|share|proportion|fraction)\b|\bpercent\w* of\b",
    re.IGNORECASE,
)
_PERCENT = re.compile(r"\d[\d,.]*\s*(?:%|percent\b|per cent\b)", re.IGNORECASE)
# "When I bump my version, what gets ...?": an opening "when" clause sets a condition; the
# question comes after the comma.
# "When should I use the Strangler pattern?" asks in which cases, not at what time.
_WHEN_TO_USE = re.compile(
    r"^\W*when (?:(?:should|would)(?:n['’]t| not)?|to|is it (?:best|better|wise) to) "
    r"(?:i |we |you |one )?(?:use|pick|choose|apply(?!\s+for)|prefer|consider|reach for|"
    r"not use|avoid)\b(?!\s+(?:my|our|your|his|her|their)\b)",
    re.IGNORECASE,
)
_WHEN_CLAUSE = re.compile(
    r"^\W*when\b[^?,]*,\s*(?:what|how|which|who|where|why|is|are|does|do|did|can|could|"
    r"should|will|would)\b",
    re.IGNORECASE,
)
# "In which release / since what version was X added?" is answered by a version number;
# "which version am I running" and "the oldest version it supports" are not asking that.
_ASKS_VERSION = re.compile(
    r"\b(?:in|since|from|as of|with) (?:which|what)(?: \w+)? (?:release|version)\b"
    r"|\b(?:which|what)(?: \w+)? (?:release|version) (?:\w+ )?(?:added|introduced|removed|"
    r"deprecated|dropped|first)\b",
    re.IGNORECASE,
)
_VERSION = re.compile(r"(?<![\w.])v?\d+\.\d+(?:\.\d+)*\+?(?!\w|\.\d)")
# "In what year ...?" is answered by a year, not by "every week" or "in March".
_ASKS_YEAR = re.compile(r"\b(?:what|which) year\b|\bwhat year\b", re.IGNORECASE)
_YEAR = re.compile(r"\b(?:19|20)\d\d\b")
# "When" asks for a time where it opens the question ("When does ...", "..., and when is
# ..."), not where it opens a clause of it ("what happens when I clear the cache?").
_ASKS_TIME = re.compile(
    r"^\W*when\b|(?:[,;:]|\band|\bor|\bby|\bsince|\buntil)\s+when\b"
    r"|\bwhat (date|year|day|month|time)\b|\bhow (often|frequently)\b|\bdeadline\b",
    re.IGNORECASE,
)
_ASKS_NAME = re.compile(
    r"\bwho\b|\bwhich (company|companies|organi[sz]ation\w*|firm|partner\w*|person|"
    r"team|body|bodies|supplier\w*|university|carrier)\b",
    re.IGNORECASE,
)

# "Which flag / setting / password manager ...": the answer names a thing the question does
# not (a code span, a flag, an environment variable, a CamelCase or capitalised name, a link).
_KINDS = (
    r"flag|option|setting|command|subcommand|variable|config\w*|key|field|tool|manager|app|"
    r"application|channel|file|format|package|library|plugin|provider|service|site|website|"
    r"form|url|address|email|parameter|argument|function|method|class|header|script|hook|"
    r"program|platform|browser|editor|account|system|portal"
)
_ASKS_IDENTIFIER = re.compile(
    rf"\b(which|what(?:'s| is| are)?(?: the)?)\s+(?:[\w-]+\s+){{0,2}}?({_KINDS})s?\b",
    re.IGNORECASE,
)
# The same kinds after a name in code form: "which Relationship() parameter ...".
_ASKED_KIND = re.compile(rf"\b(?:which|what)\s+(?:\S+\s+){{0,2}}?({_KINDS})s?\b", re.I)


def asked_kind(text: str) -> str | None:
    """The stem of the kind of thing a "which flag / setting / parameter ...?" question asks
    for: the answer names one, often without the word ("`link_model=`" for "which
    parameter")."""
    match = _ASKED_KIND.search(text)
    return stem(match.group(1)) if match else None


_NAMED = re.compile(
    r"`[^`\n]+`|(?<![\w-])--?[a-z][\w-]+|\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b|\b[A-Z][a-z]+[A-Z]\w*"
    r"|\[(?:[^\]\s]+\s?){1,4}\]\(|(?<=[a-z,;] )[A-Z][\w-]*[a-z]\b|#[a-z][\w-]+"
    r"|\b[\w.-]+\.(?:gov|com|org|io)\b"
)


# "How do I ...?" is answered by an instruction: "To use system certificates, pass
# `--system-certs`", "Run `uv self update`", "Email the form to ...".
_ASKS_HOW_TO = re.compile(
    r"\bhow (?:do|can|should|would|could|must) (?:i|we|you)\b|\bhow to\b", re.IGNORECASE
)
_INSTRUCTION = re.compile(
    r"^(?:to [^,]{3,80}, (?:\w+ ){0,3}?)?(?:run|use|pass|set|add|install|create|go|open|select|"
    r"click|email|contact|submit|fill|ask|visit|enable|disable|configure|call|include|specify|"
    r"provide|request|complete|register|sign|follow|download|upgrade|update|remove|delete)\b",
    re.IGNORECASE,
)


# "A common solution for that is to have two versions of the secret": the way, named as one.
_SOLUTION = re.compile(
    r"\b(?:solution|way|approach|workaround|fix|remedy) (?:for (?:this|that|it) )?is to\b|"
    r"\b(?:recommended|best|easiest|simplest|preferred) (?:way|approach|practice) (?:is|to)\b",
    re.IGNORECASE,
)


# "If I raise Exit() without passing anything, what code ...?" asks for a default.
_ASKS_DEFAULT = re.compile(
    r"\bdefaults?\b|\bwithout (?:passing|setting|specifying|giving|configuring|changing)\b"
    r"|\b(?:don't|do not|didn't|never) (?:pass|set|specify|give|configure|change)\b"
    r"|\bout of the box\b",
    re.IGNORECASE,
)
_DEFAULT = re.compile(r"\bdefault(?:s|ed)?\b", re.IGNORECASE)
# "Can npm dedupe ever install new modules?" is answered yes or no: by the sentence that says
# "never", "always", "cannot", "only", not by one that describes dedupe.
_ASKS_YES_NO = re.compile(
    r"(?:can|could|does|do|did|is|are|was|were|will|would|should|may|must|has|have)\b",
    re.IGNORECASE,
)
_POLARITY = re.compile(
    r"\b(?:never|always|cannot|can't|can not|not allowed|not possible|not supported|"
    r"prohibited)\b",
    re.IGNORECASE,
)
# A documentation tool's include line ("{* docs_src/app/tutorial001.py hl[9] *}",
# "--8<-- 'file.md'", mkdocstrings' "::: typer.Option", a line that is only a Jekyll tag
# such as '{% image "_img/1.png" "tips" %}'): a pointer to what the page shows, not a
# sentence.
_INCLUDE = re.compile(
    r"^\s*(?:\{\*.*\*\}|\{!.*!\}|\{%.*%\}\s*$|-{2}8<-{2}|:::\s|\[!INCLUDE\b)", re.IGNORECASE
)


# "Why ...?" is answered by a reason: "because", "subject to FOIA", "to prevent ...".
_ASKS_WHY = re.compile(r"\bwhy\b", re.IGNORECASE)
_REASON = re.compile(
    r"\b(because|since|due to|so that|in order to|as a result|required (by|under)|subject to|"
    r"the reason|reasons?|otherwise|this means|means that|to (avoid|prevent|ensure|protect|"
    r"comply|keep))\b",
    re.IGNORECASE,
)


def answer_pattern(question: str, *, identifiers: bool = True) -> re.Pattern[str] | None:
    """What an answer to ``question`` must contain: an amount, a time, a name, an identifier."""
    if _ASKS_YEAR.search(question):
        return _YEAR
    if _ASKS_VERSION.search(question):
        return _VERSION
    if (
        _ASKS_TIME.search(question)
        and not _WHEN_CLAUSE.match(question)
        and not _WHEN_TO_USE.match(question)
    ):
        return _TIME
    if _ASKS_LENGTH.search(question):
        return _MEASURE
    if identifiers and _ASKS_PLACE.search(question):
        return _PATH
    if _ASKS_PERCENT.search(question):
        return _PERCENT
    if _ASKS_MONEY.search(question):
        return _MONEY
    if _ASKS_NUMBER.search(question):
        return _NUMBER
    if _ASKS_NAME.search(question):
        return _PROPER
    if identifiers and _ASKS_IDENTIFIER.search(question):
        return _NAMED
    return None


def _answers(wanted: re.Pattern[str], text: str, question: str) -> bool:
    """Whether ``text`` holds the kind of thing asked for, other than what the question says."""
    asked = set(re.findall(r"\d+", question))
    lowered = question.lower()

    def new(found: str) -> bool:
        digits = set(re.findall(r"\d+", found))
        if digits and digits <= asked:
            return False
        name = found.strip("`[(# ").lower()
        return wanted is not _NAMED or name not in lowered

    # A link's address is not a value: "KB0024344](https://...?id=3611...)" holds no amount.
    readable = LINK_TARGET.sub("", text)
    counted = _counted(question)
    if counted:
        # "How many failed login attempts ...?" is answered by a number of attempts ("after 5
        # failed attempts"), not by "one second" or "ten minutes" in the same passage; a
        # setting's "(Default: 20)" counts what its sentence is about.
        own = set(stems(readable))
        if "default" in own and counted & own:
            counted = set()
        around = _Around(readable)
        # "if the code fails three times" counts the attempts its sentence speaks of
        # ("the number of times ... attempted"): "N times" counts what the sentence is about.
        about = bool(counted & own)
        return any(
            new(m.group(0))
            and (
                not counted
                or around.near(counted, m.start(), m.end())
                or (about and _TIMES.match(readable, m.end()) is not None)
            )
            for m in wanted.finditer(readable)
        )
    return any(new(m.group(0)) for m in wanted.finditer(readable))


_TIMES = re.compile(r"\s+times?\b", re.IGNORECASE)
_HOW_MANY = re.compile(r"\bhow many\s+((?:[\w-]+\s+){0,3}[\w-]+)", re.IGNORECASE)
NEAR_WORDS = 4  # a count and what it counts: "after 5 failed attempts", "retries=3"


def _counted(question: str) -> set[str]:
    """The stems of what a "how many" question counts ("failed login attempts")."""
    match = _HOW_MANY.search(question)
    if match is None:
        return set()
    phrase: list[str] = []
    for word in match.group(1).split():
        if word.lower() in STOPWORDS:
            break
        phrase.append(word.lower())
    # What is counted is plural: "failed login attempts" counts attempts ("3 AM login" counts
    # none), "bytes long" bytes, "arguments make a method ..." arguments.
    plural = [w for w in phrase if w.endswith("s") and not w.endswith("ss")]
    head = plural[0] if plural else phrase[0] if phrase else ""
    return set(stems(head))


_CHUNK = re.compile(r"\S+")


class _Around:
    """The words next to each value of one passage: ``stems(text[:start])[-NEAR_WORDS:]``
    and ``stems(text[end:])[:NEAR_WORDS]``, without re-reading the passage for every value
    (a table of figures has hundreds: time quadratic in its length). No token spans white
    space, so the stems of the white-space-separated chunks next to a value are the same;
    each chunk is stemmed once.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.spans = [m.span() for m in _CHUNK.finditer(text)]
        self.starts = [start for start, _ in self.spans]
        self._stems: dict[int, list[str]] = {}

    def _chunk(self, i: int) -> list[str]:
        if i not in self._stems:
            start, end = self.spans[i]
            self._stems[i] = stems(self.text[start:end])
        return self._stems[i]

    def near(self, counted: set[str], start: int, end: int) -> bool:
        return bool(counted & set(self._before(start) + self._after(end)))

    def _before(self, start: int) -> list[str]:
        i = bisect.bisect_left(self.starts, start) - 1  # the last chunk that starts before
        found: list[str] = []
        if i >= 0:  # all of it, or its part before ``start``
            found = stems(self.text[self.spans[i][0] : start])
            i -= 1
        while len(found) < NEAR_WORDS and i >= 0:
            found = self._chunk(i) + found
            i -= 1
        return found[-NEAR_WORDS:]

    def _after(self, end: int) -> list[str]:
        i = bisect.bisect_right(self.starts, end) - 1  # the chunk ``end`` is in or after
        found: list[str] = []
        if i >= 0 and end < self.spans[i][1]:
            found = stems(self.text[end : self.spans[i][1]])
        i += 1
        while len(found) < NEAR_WORDS and i < len(self.spans):
            found = found + self._chunk(i)
            i += 1
        return found[:NEAR_WORDS]


BROAD_WORDS = frozenset({"main", "key", "major", "all", "overview", "summary", "initiatives"})


@dataclass(frozen=True, slots=True)
class Unit:
    """A sentence, a list item or a table row: the smallest thing worth citing."""

    text: str
    kind: str  # "sentence" | "item" | "row"
    evidence_id: int
    position: int


def _sentences(paragraph: str, end: re.Pattern[str] = _SENTENCE_END) -> list[str]:
    pieces = end.split(paragraph)
    merged: list[str] = []
    for piece in pieces:
        last_word = (
            (merged[-1].rstrip(".").rsplit(None, 1) or [""])[-1].lower().lstrip("([{\"'*_")
            if merged
            else ""
        )
        # "e.g. Scope 3" or "J. Smith" is not the end of a sentence.
        if merged and (last_word in _ABBREVIATIONS or re.fullmatch(r"[a-z]", last_word)):
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    return [s.strip() for s in merged if s.strip()]


_SINGLE_STAR = re.compile(r"(?<!\*)\*(?!\*)")


def _balanced(sentence: str) -> str:
    """A sentence cut out of an emphasised passage, without the marker left unclosed.

    "*Adopted on 18 May 2021. This document is a summary.*" splits into two sentences, each
    with one '*' that markdown would print as a literal asterisk.
    """
    for marker, pattern in (("**", re.compile(r"\*\*")), ("*", _SINGLE_STAR)):
        if len(pattern.findall(sentence)) % 2:
            if sentence.startswith(marker):
                sentence = sentence[len(marker) :]
            elif sentence.endswith(marker):
                sentence = sentence[: -len(marker)]
    return sentence


# "Create a file called greet with the following contents" introduces the code after it as
# surely as a sentence ending in ":" does.
_INTRODUCES_CODE = re.compile(r"\b(?:the following|as follows|like this|looks like)\b", re.I)


# "In this case it's best to set the default encoding explicitly on the client." followed by
# the code that does it: a paragraph that ends telling the reader what to do is shown by the
# code right after it.
_INVITES_CODE = re.compile(
    r"\b(?:you can|you may|you'll|you will|you need to|you must|you should|it's best to|"
    r"it is best to|we can|simply)\b|(?:\.\.\.|…)$",
    re.IGNORECASE,
)


def _introduces(unit: tuple[str, str, int], *, right_after: bool = False) -> bool:
    text, kind, _ = unit
    if text.rstrip().endswith(":"):
        return True
    if kind != "sentence" or "\n" in text:
        return False
    if _INTRODUCES_CODE.search(text):
        return True
    plain = _MARKUP.sub("", text).strip()
    return right_after and bool(_INVITES_CODE.search(plain) or _INSTRUCTION.match(plain))


def split_units(text: str) -> list[tuple[str, str, int]]:
    """The citable units of a section's markdown in reading order, as (text, kind, block).

    A block is a paragraph, one list or one table: the units of a block share a subject, so
    a sentence like "The final cost was EUR 11 million." is read with its paragraph.
    """
    units: list[tuple[str, str, int]] = []
    lines = text.split("\n")
    paragraph: list[str] = []
    header: list[str] | None = None
    in_fence = ""
    block = 0
    last_kind = ""

    def add(unit_text: str, kind: str) -> None:
        nonlocal block, last_kind
        if kind != last_kind:
            block += 1
        units.append((unit_text, kind, block))
        last_kind = kind

    def flush() -> None:
        nonlocal block, last_kind
        if paragraph:
            block += 1
            units.extend((_balanced(s), "sentence", block) for s in _sentences(" ".join(paragraph)))
            paragraph.clear()
            last_kind = "sentence"

    code: list[str] = []
    after_paragraph = False
    indents: dict[int, int] = {}  # unit index of a list item -> its indentation
    for line in lines:
        stripped = line.strip()
        fence = re.match(r"(`{3,}|~{3,})", stripped)
        if in_fence:
            code.append(line)
            if fence and stripped.startswith(in_fence):
                in_fence = ""
                # "Example of running ls:" followed by its code: the code is the answer,
                # so it travels with the sentence that introduces it.
                if (
                    units
                    and _introduces(units[-1], right_after=after_paragraph)
                    and len(code) <= CODE_LINES
                ):
                    text_, kind_, block_ = units[-1]
                    units[-1] = (text_ + "\n" + "\n".join(code), kind_, block_)
            continue
        if fence:
            flush()
            after_paragraph = last_kind == "sentence"  # only blank lines since its last line
            in_fence = fence.group(1)
            code = [line]
            last_kind = "code"
            continue
        if stripped.startswith("|") and stripped.count("|") >= 2:
            flush()
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if _TABLE_SEPARATOR.match(stripped.strip("|")):
                continue
            if header is None:
                header = cells
            else:
                # A row reads best as a small table under its header, not as "Year: 2023; ...".
                add(_table([header, cells]), "row")
            continue
        header = None
        item = _LIST_ITEM.match(line)
        if item:
            flush()
            add(item.group(1).strip(), "item")
            indents[len(units) - 1] = len(line) - len(line.lstrip())
            continue
        if (
            _RULE.fullmatch(stripped)
            or _ADMONITION.match(stripped)
            or _INCLUDE.match(stripped)
            or _IMAGE_LINE.fullmatch(stripped)
        ):
            # A horizontal rule, a documentation tool's box marker ("/// tip", "!!! warning",
            # "//// tab | Linux"), an include directive or an image ("![Diagram of the
            # Sidecar pattern](./_images/sidecar.png)"): it separates; it says nothing.
            flush()
            continue
        if not stripped or stripped.startswith(("<", "#")):
            flush()
            if last_kind in {"item", "row"} and not stripped:
                continue  # a blank line inside a loose list keeps the list together
            last_kind = "" if stripped else last_kind
            continue
        if units and units[-1][1] == "item" and line.startswith((" ", "\t")) and not paragraph:
            text_, kind_, block_ = units[-1]
            units[-1] = (f"{text_} {stripped}", kind_, block_)  # a list item's continuation
            continue
        paragraph.append(stripped.lstrip("> ").strip())
        last_kind = "paragraph"
    flush()
    units = _with_children(units, indents)
    return _with_properties(_with_lists([u for u in units if len(u[0]) > 2]))


def _with_children(
    units: list[tuple[str, str, int]], indents: dict[int, int]
) -> list[tuple[str, str, int]]:
    """A list item with items nested under it ("NetworkError" over ConnectError, ReadError,
    ...) is also read with them, as a sentence ending in ":" is with its list: "which
    classes sit under NetworkError?" is answered by the item and its children."""
    out: list[tuple[str, str, int]] = []
    for index, (text, kind, block) in enumerate(units):
        out.append((text, kind, block))
        if index not in indents:
            continue
        children: list[str] = []
        level = None  # the indentation of the item's own children, not their children's
        for later in range(index + 1, len(units)):
            if later not in indents or indents[later] <= indents[index]:
                break
            level = indents[later] if level is None else level
            if indents[later] == level and len(children) < LIST_ITEMS:
                children.append(units[later][0])
        if children:
            listed = "\n".join(f"- {child}" for child in children)
            out.append((f"{text.rstrip(':')}:\n{listed}", kind, block))
    return out


# "* Default: 900", "* Type: Number" opening a setting's section in reference docs: the
# value a question asks for, which reads only with the sentence that says what it is of.
_PROPERTY = re.compile(
    r"^(?:default|type|values?|required|since|added in|deprecated|env(?:ironment)?(?: variable)?)"
    r"\b[^:]{0,20}:\s*\S",
    re.IGNORECASE,
)
PROPERTY_ITEMS = 4


def _with_properties(units: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """A section that opens with a few "Default: ..." items gives them to its first sentence:
    "The age of the cache, in seconds, ... (Default: 900; Type: Number)". The items stay
    units of their own too."""
    properties: list[str] = []
    for text, kind, _ in units:
        if kind != "item" or not _PROPERTY.match(_MARKUP.sub("", text)):
            break
        properties.append(text.strip())
    if not properties or len(properties) > PROPERTY_ITEMS or len(units) <= len(properties):
        return units
    text, kind, block = units[len(properties)]
    if kind != "sentence" or "\n" in text:
        return units
    joined = "; ".join(properties)
    sentence = f"{text[:-1]} ({joined})." if text.endswith(".") else f"{text} ({joined})"
    return [*units[: len(properties)], (sentence, kind, block), *units[len(properties) + 1 :]]


HOW_TO_BONUS = 0.1
CARRIED_BONUS = 0.2  # a unit of the passage that answered the part before a follow-up part
DEFINITION_RANK = 5  # the page that defines must be among the best passages found
# "What is the Sidecar pattern?", "what's a dependency?": the whole question asks what it is
# (not "what is the pattern named after?" or "what is it used for?").
_ASKS_DEFINITION = re.compile(
    r"^\s*(?:what(?:'s|’s| is| are)|define|describe)\s+(?:the |an? )?"
    r"(?![^?]*\b\w+ed\b)(?![^?]*\b(?:after|for|by|in|of|to|with|from|on)\s*\?*\s*$)"
    r"[\w'’./-]+(?:\s+[\w'’./-]+){0,3}\s*\?*\s*$",
    re.IGNORECASE,
)
_LINK_ONLY = re.compile(r"^\s*(?:[-*]\s*)?\[[^\]\n]+\]\([^)\n]*\)\s*[.,;:]?\s*$")
LIST_ITEMS = 8  # items that travel with the sentence that introduces them


def _with_lists(units: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """A sentence ending in ":" is incomplete without its list: give it the items after it.

    The items stay units of their own too; a reader never sees both, because the writer
    drops a unit whose words another chosen unit already holds.
    """
    out = list(units)
    for index, (text, kind, block) in enumerate(units):
        if kind != "sentence" or not text.rstrip().endswith(":") or "\n" in text:
            continue
        items: list[tuple[str, int]] = []
        for following, following_kind, following_block in units[index + 1 :]:
            if following_kind != "item" or (items and following_block != items[0][1]):
                break
            items.append((following, following_block))
        if items:
            listed = "\n".join(f"- {item}" for item, _ in items[:LIST_ITEMS])
            out[index] = (f"{text}\n{listed}", kind, block)
    return out


# "Which lifecycle scripts ...", "what kinds of leave", "in what order": several things.
_ASKS_LIST = re.compile(
    r"\b(?:which|what)\s+(?!if\b)(?:[\w/-]+\s+){0,2}?(?!(?:does|has|was|this)\b)[a-z]+[^su\W]s\s+(?:do|does|did|can|could|should|"
    r"would|will|must|are|is|have|has|i|we|you|the|in|for|of|to|that|at|on|get|exist|need|"
    r"come|go)\b|\blist\b|\ball the\b"
    r"|\bin what order\b|\b(?:kinds?|types?|sorts?) of\b",
    re.IGNORECASE,
)


# "Which cheat sheets are about PHP?", "which patterns cover caching?": the answer is a list
# of documents, not of sentences.
ASKS_DOCUMENTS = re.compile(
    r"\b(?:which|what)\s+(?:other\s+)?(?:[\w-]+\s+){0,3}?(?:cheat ?sheets|patterns|guides|"
    r"pages|documents|docs|articles|recipes|tutorials|chapters|files|topics|entries)\b",
    re.IGNORECASE,
)


def asked_sentence(text: str) -> str:
    """The sentence that asks, after any that set the scene ("I run uv in CI. Which ...?").
    A question is often typed in lower case ("my script hangs. how do I ...?"), so any
    stop ends a sentence, except after an abbreviation ("e.g. in the first year?")."""
    return (_sentences(text.strip(), _ANY_STOP) or [""])[-1]


_ANY_STOP = re.compile(r"(?<=[.?!])\s+")


def _with_opening_list(
    units: list[tuple[str, str, int]], heading_path: str
) -> list[tuple[str, str, int]]:
    """A section that is only a list under its heading ("npm publish": prepublishOnly,
    prepack, ...) is answered by the whole list, introduced by the heading."""
    if not units or units[0][1] != "item" or not heading_path:
        return units
    block = units[0][2]
    items = [text for text, kind, b in units if kind == "item" and b == block][:LIST_ITEMS]
    if len(items) < 2:
        return units
    heading = _MARKUP.sub("", LINK_TARGET.sub("]", heading_path.rsplit(" > ", maxsplit=1)[-1]))
    heading = heading.replace("[", "").replace("]", "").strip()
    listed = "\n".join(f"- {text}" for text in items)
    return [(f"{heading}:\n{listed}", "sentence", 0), *units]


def _table(rows: list[list[str]]) -> str:
    header, *body = rows
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _cite(text: str, evidence_id: int) -> str:
    text = text.rstrip()
    marker = f" [{evidence_id}]"
    if text.startswith("|"):  # a table row: the citation goes in its last cell
        return text[: text.rstrip("|").rstrip().__len__()] + f"{marker} |"
    if "\n" in text:  # a sentence with its code block or list: cite the sentence, keep the rest
        sentence, code = text.split("\n", 1)
        return f"{_cite(sentence, evidence_id)}\n\n{code}"
    if text.endswith((".", "!", "?")) and not text.endswith("..."):
        return f"{text[:-1]}{marker}{text[-1]}"
    return f"{text}{marker}"


def _points(units: list[Unit]) -> Iterator[str]:
    """Supporting units as a bullet list; table rows as tables (rows of one table merged)."""
    bullets: list[str] = []
    index = 0
    while index < len(units):
        unit = units[index]
        if unit.kind != "row":
            bullets.append(_bullet(_cite(unit.text, unit.evidence_id)))
            index += 1
            continue
        if bullets:
            yield "".join(bullets) + "\n"
            bullets = []
        header = unit.text.split("\n", 2)[:2]
        # Every chosen row of this table, wherever it ranked, in the table's own order.
        same = [
            u
            for u in units[index:]
            if u.kind == "row"
            and u.evidence_id == unit.evidence_id
            and u.text.split("\n", 2)[:2] == header
        ]
        units = units[:index] + [u for u in units[index:] if u not in same]
        rows = [u.text.split("\n", 2)[2] for u in sorted(same, key=lambda u: u.position)]
        yield _cite("\n".join([*header, *rows]), unit.evidence_id) + "\n\n"
    if bullets:
        yield "".join(bullets) + "\n"


def _named_by_its_page(unit: Unit, item: Evidence) -> Unit:
    """The unit led by its page's title ("**Lazy Loading**: Reduces memory usage ..."),
    unless it says most of the title already; a title's subtitle after ":" is left out."""
    title = _MARKUP.sub("", (item.title or "").split(":", 1)[0]).strip()
    named = set(content_terms(title))
    if unit.kind == "row" or not named or len(named & set(stems(unit.text))) * 2 >= len(named):
        return unit  # a table row stays a row; "The Flyweight design pattern in Java ..."
    return replace(unit, text=f"**{title}**: {unit.text}")


def _bullet(text: str) -> str:
    """A list item; continuation lines (a code block) indented to stay inside it."""
    first, *rest = text.split("\n")
    return "\n".join([f"- {first}", *(f"  {line}" if line else "" for line in rest)]) + "\n"


class ExtractiveWriter:
    """Offline, deterministic, no model: the default with no key or base URL."""

    name = "extractive"
    model: str | None = None

    def __init__(self, *, max_points: int = 5, broad_points: int = 8) -> None:
        self.max_points = max_points
        self.broad_points = broad_points

    def write(
        self,
        brief: AnswerBrief,
        *,
        on_delta: Callable[[str], None],
        should_stop: Callable[[], bool],
    ) -> str:
        pieces: list[str] = []
        for piece in self.compose(brief):
            if should_stop():
                raise WriterStopped
            pieces.append(piece)
            on_delta(piece)
        return "".join(pieces)

    # --------------------------------------------------------------- composing
    def compose(self, brief: AnswerBrief) -> Iterator[str]:
        """The answer in the pieces it is streamed in (one block of markdown at a time)."""
        evidence = brief.by_id()
        several = len(brief.parts) > 1
        said: set[str] = set()  # what an earlier part already said is not said again
        for part in brief.parts:
            if several:
                yield f"**{part.text.rstrip('?')}?**\n\n"
            yield from self._answer_part(part, brief, evidence, said)
        sql = [e for e in brief.evidence if e.kind == "sql" and e.rows]
        if sql:
            yield "## Data\n\n"
            for item in sql:
                yield f"From table `{item.table}` [{item.id}]:\n\n{item.text}\n\n"

    def _answer_part(
        self, part: Part, brief: AnswerBrief, evidence: dict[int, Evidence], said: set[str]
    ) -> Iterator[str]:
        chosen = self.select(part, brief, evidence, exclude=frozenset(said))
        said.update(u.text for u in chosen)
        if part.gap and not (part.partial and chosen):
            yield f"{gap_sentence(part)}\n\n"
            if chosen:
                yield "The closest passages found:\n\n"
                yield from _points(chosen[:CLOSEST])
            return
        if part.collection and part.outline:
            # The documents themselves are the answer, whatever sentences scored.
            yield from self._documents(part, evidence)
            return
        if not chosen:
            yield f"{gap_sentence(part)}\n\n"
            return
        if part.outline:
            yield from self._overview(part, evidence, chosen)
            return
        if ASKS_DOCUMENTS.search(part.text):
            # "Which patterns reduce memory usage?" answered in sentences: each says which
            # document it comes from, or the list names no pattern.
            chosen = [_named_by_its_page(u, evidence[u.evidence_id]) for u in chosen]
        lead, *rest = chosen
        if lead.kind == "row":  # a table answers: one table, its rows in order, then the rest
            yield from _points(chosen)
        else:
            yield f"{_cite(lead.text, lead.evidence_id)}\n\n"
            yield from _points(rest)
        if part.gap:  # answered in part: what was found first, then what was not
            yield f"{gap_sentence(part)}\n\n"

    def _documents(self, part: Part, evidence: dict[int, Evidence]) -> Iterator[str]:
        """A list of documents: each by its title, with the sentence that opens it."""
        for evidence_id, title in part.outline:
            units = [u for u in split_units(evidence[evidence_id].text) if u[1] == "sentence"]
            name = _MARKUP.sub("", title).strip()
            text = f"**{name}**: {units[0][0]}" if units else f"**{name}**"
            yield _bullet(_cite(text, evidence_id))
        yield "\n"

    def _overview(
        self, part: Part, evidence: dict[int, Evidence], chosen: list[Unit]
    ) -> Iterator[str]:
        """An overview: each item of the outline with its opening sentence, then extras.

        The lead comes from the outlined document itself; a strong sentence from another
        document ("... the Science Based Targets initiative ...") is no introduction to it.
        """
        outlined = evidence[part.outline[0][0]].path
        outline_ids = {i for i, _ in part.outline}
        items = {_MARKUP.sub("", h).strip() for _, h in part.outline}

        def item_of(unit: Unit) -> str | None:
            """The outlined item whose section the unit comes from ("Warm Homes Harbor")."""
            heading = evidence[unit.evidence_id].heading_path or ""
            return next((h for h in heading.split(" > ") if h in items), None)

        lead = next((u for u in chosen if evidence[u.evidence_id].path == outlined), None)
        rest = [u for u in chosen if u is not lead]
        used: set[str] = set()
        with_item: dict[int, str] = {}  # evidence id -> a strong sentence to add to its bullet
        if lead is not None and item_of(lead) is None:
            yield f"{_cite(lead.text, lead.evidence_id)}\n\n"
            used.add(lead.text)
        else:
            # A sentence from one item (its budget, say) is no introduction to all of them:
            # say where the list comes from instead; the sentence goes with its item.
            title = _MARKUP.sub("", evidence[part.outline[0][0]].title or outlined or "").strip()
            yield f"From *{title}* [{part.outline[0][0]}]:\n\n"
            rest = [u for u in chosen if u is not lead]
            if lead is not None and lead.evidence_id in outline_ids:
                with_item[lead.evidence_id] = lead.text
            elif lead is not None:
                rest.insert(0, lead)
        for evidence_id, heading in part.outline:
            units = [u for u in split_units(evidence[evidence_id].text) if u[0] not in used]
            if not units:
                continue
            text = units[0][0]
            if len(text.split()) < 6 and len(units) > 1:
                text = f"{text} {units[1][0]}"
            strong = with_item.get(evidence_id)
            if strong and strong not in text and "\n" not in text:
                text = f"{text} {strong}"
                used.add(strong)
            used.add(units[0][0])
            plain_heading = _MARKUP.sub("", heading).strip()
            if not _MARKUP.sub("", text).lower().startswith(plain_heading.lower()):
                text = f"**{plain_heading}**: {text}"
            yield _bullet(_cite(text, evidence_id))
        # Extras only from the outlined document: the overview is of that, not of others.
        extras = [
            u
            for u in rest
            if u.evidence_id not in outline_ids
            and u.text not in used
            and evidence[u.evidence_id].path == outlined
        ]
        for unit in extras[:2]:
            item = item_of(unit)
            text = f"**{item}**: {unit.text}" if item and item not in unit.text else unit.text
            yield _bullet(_cite(text, unit.evidence_id))
        yield "\n"

    def select(
        self,
        part: Part,
        brief: AnswerBrief,
        evidence: dict[int, Evidence],
        *,
        exclude: frozenset[str] = frozenset(),
    ) -> list[Unit]:
        """The part's best units: scored, deduplicated, at most a few per section, none of
        ``exclude`` (what earlier parts said)."""
        terms = list(part.query.terms)
        if not terms:
            return []
        section_ids = [i for i in part.evidence_ids if evidence[i].kind == "section"]
        if not section_ids:
            return []
        top_score = max(evidence[i].score for i in section_ids) or 1.0
        # The question's most distinctive name ("Northwind", not "Scope") must be in view.
        asking = asked_sentence(part.text)
        wanted = answer_pattern(asking)
        how_to = bool(_ASKS_HOW_TO.search(part.text))
        why = bool(_ASKS_WHY.search(part.text))
        asks_list = bool(_ASKS_LIST.search(part.text))
        asks_default = bool(_ASKS_DEFAULT.search(part.text))
        yes_no = bool(_ASKS_YES_NO.match(asking))
        # "What is the vacation allowance?" asks for a value of the page's subject; only a
        # question that wants no value (or only a name) asks what the thing is.
        defining = (
            bool(_ASKS_DEFINITION.match(part.text))
            and wanted in (None, _PROPER)
            and not asks_default
        )
        facets = asked_facets(part.text)
        attributes = [t for t in terms if t not in part.query.names]
        if part.follows:
            # What this part asks is in its own words; the borrowed ones ("tools", "install"
            # for "how do I move them?") say what it is about, as a name would.
            attributes = [t for t in attributes if t not in part.query.borrowed] or attributes
        names = (
            {max(part.query.names, key=lambda n: brief.idf.get(n, 0.0))}
            if part.query.names
            else set()
        )
        # A name that titles or files some of the evidence ("Northwind" in
        # northwind/targets.md) is the subject: a passage that never mentions it is about
        # another organisation or product, however many other words it shares.
        subject = {
            n
            for n in part.query.names
            for i in section_ids
            if n in set(stems(f"{evidence[i].path} {evidence[i].title}"))
        }
        # Names that folders of the evidence carry (northwind/, verdant/): the organisations
        # or products a collection is organised by.
        entities = {
            n for i in section_ids for n in _entity_stems("", path=_folders(evidence[i].path))
        } | set(subject)
        before = next((p for p in brief.parts if p.id == part.id - 1), None)
        carried = set(before.evidence_ids[:1]) if before is not None and part.follows else set()
        scored: list[tuple[float, Unit, set[str], bool]] = []
        views: dict[int, set[str]] = {}  # id(unit) -> what it says read in its context
        gives_reason: set[int] = set()  # id(unit) of units that give a reason ("because")
        definitions: set[tuple[int, int]] = set()  # (evidence, position): a page's opening
        for rank, evidence_id in enumerate(section_ids):
            item = evidence[evidence_id]
            context = set(stems(f"{item.path} {item.title} {item.heading_path}"))
            in_view = context | set(stems(item.text))
            if subject and not subject & in_view:
                continue
            # Under the heading of what is asked ("Trade-offs" for "what can go wrong?").
            of_kind = of_the_kind((item.heading_path or "").rsplit(" > ", 1)[-1], facets)
            # "What is the Sidecar pattern?": the page's opening sentence defines it ("Deploy
            # components of an application into a separate process ..."), in words of its own.
            defines = (
                defining
                and rank < DEFINITION_RANK
                and (item.heading_path or "") == item.title
                and _titled(item.title, terms)
            )
            names_here = bool(names & in_view)
            any_name_here = not part.query.names or bool(set(part.query.names) & in_view)
            units = split_units(item.text)
            if asks_list:
                units = _with_opening_list(units, item.heading_path or "")
            unit_stems = [set(stems(u[0])) for u in units]
            # "The premium is 1.2 cents per litre." answers through its paragraph; a list
            # item or table row through its block and the sentence that introduces it.
            block_stems: dict[int, set[str]] = {}
            for index, (_, kind, block) in enumerate(units):
                if block not in block_stems:
                    block_stems[block] = set()
                    if kind != "sentence" and index > 0:
                        block_stems[block] |= unit_stems[index - 1]
                block_stems[block] |= unit_stems[index]
            question_stems = set(terms)
            for position, (text, kind, block) in enumerate(units):
                if text in exclude or _LINK_ONLY.match(text) or _INCLUDE.match(text):
                    continue  # said by an earlier part, or a bare link that says nothing
                own = unit_stems[position]
                intro = block_stems[block] if kind != "sentence" else own
                topic = block_stems[units[0][2]]  # a section's opening names its subject
                # What the unit says itself, and what it says read under its heading, after
                # the sentence that introduces its list and the section's opening.
                direct = coverage(terms, own, brief.idf)
                framed = coverage(terms, own | intro | topic | context, brief.idf)
                if framed < MIN_FRAMED and evidence_id not in carried:
                    continue
                if subject and not subject & (context | block_stems[block]):
                    continue  # neither its heading nor its paragraph names what is asked about
                others = _entity_stems(text) & entities
                if subject and others and not others & subject:
                    continue  # about another organisation or product the documents cover
                plain = _MARKUP.sub("", text)
                # "Check it:" before a console session says nothing itself: its words are
                # those of the sentence, not of the code it carries.
                n_words = len((plain.split("\n", 1)[0] if "```" in text else plain).split())
                # What is asked about (the names) may sit in the heading or the paragraph;
                # what is asked (the other words: "cost", "target") should be in the unit.
                asked = coverage(attributes, own, brief.idf) if attributes else direct
                score = (
                    0.3 * asked
                    + 0.15 * direct
                    + 0.35 * framed
                    + SECTION_PRIOR * (item.score / top_score)
                )
                score += 0.05 if _SPECIFIC.search(plain) else 0.0
                if part.query.identifiers:
                    lowered = text.lower()
                    hits = sum(i in lowered for i in part.query.identifiers)
                    score += 0.2 * hits / len(part.query.identifiers)
                if wanted is not None and _answers(wanted, plain, part.text):
                    score += 0.15  # the kind of thing asked for: an amount, a date, a name
                elif how_to and (
                    _INSTRUCTION.match(plain.lstrip("*_ ")) or _SOLUTION.search(plain)
                ):
                    score += HOW_TO_BONUS  # what to do, not a description of the thing
                elif how_to and "```" in text and n_words >= 4:
                    score += HOW_TO_BONUS / 2  # code that does it, or only an example
                elif why and _REASON.search(plain):
                    score += HOW_TO_BONUS  # a reason, not a restatement of the rule
                if of_kind:
                    score += HOW_TO_BONUS
                if defines and position == 0:
                    definitions.add((evidence_id, position))
                if asks_default and _DEFAULT.search(plain):
                    score += HOW_TO_BONUS  # "By default, `code` is `0`"
                if yes_no and _POLARITY.search(plain):
                    score += HOW_TO_BONUS  # "... but will never result in new modules"
                # A sentence that only restates the question answers nothing.
                content = set(content_terms(plain))
                if content and len(content - question_stems) / len(content) < 0.3:
                    score -= 0.15
                score -= 0.02 * rank  # earlier evidence is better evidence
                if evidence_id in carried:
                    score += CARRIED_BONUS
                if n_words < 4 and kind == "sentence":
                    score -= 0.15
                if n_words > 70 and "\n" not in text:
                    score -= 0.1
                if names and not names_here:
                    # About some other organisation or programme than the one asked about;
                    # worse still when none of the question's names is in sight.
                    score -= 0.15 if any_name_here else 0.3
                score -= 0.002 * position  # within a section, earlier is usually the point
                if _SIGNPOST.match(plain) and "\n" not in text:
                    # "This document sets out ..." is about the text itself; "This section
                    # covers the following diagrams:" with its list is the list.
                    score -= 0.25
                unit = Unit(text=text, kind=kind, evidence_id=evidence_id, position=position)
                views[id(unit)] = own | intro | topic | context
                typed = wanted is not None and _answers(wanted, plain, part.text)
                if why and _REASON.search(plain):
                    gives_reason.add(id(unit))
                scored.append((score, unit, set(content_terms(plain)), typed))
        if scored and SEMANTIC_WEIGHT:
            # Meaning, not only shared words: "trust my company's root CA" and "use system
            # certificates" share few words and much sense.
            heading = {i: evidence[i].heading_path or "" for i in section_ids}
            vectors = embed(
                [part.text]
                + [f"{heading[u.evidence_id]} {_MARKUP.sub('', u.text)}" for _, u, _, _ in scored]
            )
            similarity = vectors[1:] @ vectors[0]
            scored = [
                (score + SEMANTIC_WEIGHT * float(sim), unit, bag, typed)
                for (score, unit, bag, typed), sim in zip(scored, similarity, strict=True)
            ]
        scored.sort(key=lambda s: s[0], reverse=True)
        # Answer first: when a value is asked for, the lead is a strong unit that holds one.
        strong = [s for s in scored if s[3] and s[0] >= LEAD_VALUE_SHARE * scored[0][0]]
        # Asked what happens without a value, the value that says it is the default leads.
        lead = next(
            (s for s in strong if asks_default and _DEFAULT.search(_MARKUP.sub("", s[1].text))),
            strong[0] if strong else None,
        )
        # Asked what a thing is, the opening sentence of the page it titles leads: it defines
        # the thing in words of its own, which share few with the question.
        lead = next((s for s in scored if (s[1].evidence_id, s[1].position) in definitions), lead)
        if lead is not None:
            scored.remove(lead)
            scored.insert(0, (scored[0][0] if scored else lead[0], *lead[1:]))
        if not scored:
            return []
        broad = bool(BROAD_WORDS & set(part.text.lower().split()))
        limit = self.broad_points if broad else self.max_points
        floor = scored[0][0] * (BROAD_FLOOR if broad else FLOOR)
        chosen: list[tuple[Unit, set[str]]] = []
        per_section: dict[int, int] = {}
        lead_unit = scored[0][1]
        lead_folder = _folders(evidence[lead_unit.evidence_id].path)
        # What the answer is about: the question's words its lead holds, read in context.
        about = [t for t in terms if t in views[id(lead_unit)]]
        lead_typed = scored[0][3]
        for score, unit, bag, typed in scored:
            if len(chosen) >= limit or score < floor:
                break
            if chosen and lead_typed and not typed and score < PAD_SHARE * scored[0][0]:
                # The value asked for is given: the rest holds one too, or is nearly as strong
                # ("the programme replaces diesel trucks with electric ones" is padding under
                # "how many electric trucks did Acme have at the end of 2024?").
                continue
            if (
                not (broad or asks_list or typed or id(unit) in gives_reason)
                and _folders(evidence[unit.evidence_id].path) != lead_folder
                and coverage(about, views[id(unit)], brief.idf) < SAME_SUBJECT
            ):
                # A sentence from another folder (another topic of the tree) that shares the
                # question's words but not what the answer is about ("naming convention" of
                # Terraform variables under a question on unit test names): padding, not
                # support. One that holds the kind of value asked for, or a reason asked
                # for, may be what the lead missed.
                continue
            if per_section.get(unit.evidence_id, 0) >= (2 if broad else 3):
                continue
            if any(_similar(bag, other) and not _other_rows(unit, seen) for seen, other in chosen):
                continue
            chosen.append((unit, bag))
            per_section[unit.evidence_id] = per_section.get(unit.evidence_id, 0) + 1
        return [unit for unit, _ in chosen]


def _titled(title: str, terms: list[str]) -> bool:
    """Whether a page's title names all the question asks about ("the Sidecar pattern";
    "CQRS" in "Command and Query Responsibility Segregation (CQRS) pattern"), not a part of
    it ("the vacation allowance" is not what "Vacation" defines)."""
    titled = set(content_terms(title))
    return bool(titled) and bool(terms) and set(terms) <= titled


_RULE = re.compile(r"(?:-{3,}|\*{3,}|_{3,})")
_IMAGE_LINE = re.compile(r"(?:\[?!\[[^\]]*\]\([^)]*\)\]?(?:\([^)]*\))?\s*)+")
# "/// note", "!!! warning", GitHub's and DocFX's "> [!NOTE]": a documentation tool's box,
# not a sentence.
_ADMONITION = re.compile(
    r"^\s*(?:/{3}|!{3}|\?{3}|(?:>\s*)?\[!(?:note|tip|important|warning|caution)\]\s*$)",
    re.IGNORECASE,
)


# A capitalised word that does not start a sentence.
_ENTITY = re.compile(r"(?<![.!?:]\s)(?<!^)(?<!\n)\b[A-Z][\w'’&-]*")


def _folders(path: str | None) -> str:
    return path.rsplit("/", 1)[0] if path and "/" in path else ""


def _entity_stems(text: str, *, path: str = "") -> set[str]:
    """Stems of the capitalised words of ``text`` and of a path's folder and file names."""
    found = _ENTITY.findall(text) + re.split(r"[\s/._-]+", path)
    return {s for s in stems(" ".join(found)) if len(s) > 2 and s not in _COMMON_CAPITALISED}


# Capitalised for other reasons than naming something: sentence starts, titles' words.
_COMMON_CAPITALISED = frozenset(
    stems(
        "the a an this that these those our we you your it its in on for to of and or but if "
        "when what how why who which where md faq readme index guide report plan policy "
        "strategy overview introduction summary appendix programme program progress"
    )
)


def _other_rows(a: Unit, b: Unit) -> bool:
    """Two rows of one table about different things ("approve: Yes", "reject: Yes"): alike
    in words by construction, and both facts."""
    if a.kind != "row" or b.kind != "row" or a.evidence_id != b.evidence_id:
        return False
    first = [u.text.split("\n", 2)[-1].strip("| ").split("|")[0].strip() for u in (a, b)]
    return first[0] != first[1]


def _similar(a: set[str], b: set[str]) -> bool:
    if not a or not b:
        return False
    overlap = len(a & b)
    return overlap / len(a | b) >= 0.6 or overlap / min(len(a), len(b)) >= 0.85


def gap_sentence(part: Part) -> str:
    """Say plainly what the documents do not answer."""
    if part.missing:
        missing = ", ".join(f"“{m}”" for m in part.missing)
        return (
            f"The documents do not cover {missing} in connection with this question: "
            f"“{part.text.strip()}”."
        )
    return f"The documents do not answer this: “{part.text.strip()}”."
