"""Split a question into the parts it asks, so that each part is answered (or not) on its own.

"What is X's 2030 target and how much did programme Y cost?" asks two things; each gets its
own retrieval and its own gap check. A clause that only says "it" or lacks the organisation it
is about borrows the names from the clause before it. "Compare A and B on Z" becomes one
part per named thing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.modules.llm.extractive import asked_sentence
from app.modules.retrieval.text import STOPWORDS, content_terms, words

MAX_PARTS = 5

_QUESTION_START = (
    r"what|how|when|where|which|who|whom|whose|why|is|are|was|were|does|do|did|has|have|had"
    r"|can|could|will|would|should|list|name|describe|explain|give|tell"
)
# "have" opens a question only with a subject and a participle ("and have you filed ..."),
# not in "lets me write X and have it go to Y"; after "but" an imperative continues the
# sentence ("..., but give up after 10 seconds") rather than asking something new.
_HAVE_ASKS = r"ha(?:ve|s|d)\s+\w+\s+(?:\w+(?:ed|en|wn|ne)|got|been|made|done|had|set|put)\b"
_NOT_HAVE = r"(?!ha(?:ve|s|d)\b)"
_IMPERATIVES = r"list|name|describe|explain|give|tell"
# "id is the primary key and can never be NULL": an auxiliary with no subject after it goes
# on with the subject before, it does not ask ("and can I ...?" does).
_GOES_ON = r"(?!\w+\s+(?:never|not|also|always|only|still|just|be|been|easily)\b)"
_CLAUSE_BREAK = re.compile(
    rf"\s*(?:,\s*)?\b(?:"
    rf"(?:and|as well as|also|plus)\s+(?={_HAVE_ASKS}|{_NOT_HAVE}{_GOES_ON}(?:{_QUESTION_START})\b)"
    rf"|but\s+(?={_HAVE_ASKS}|{_NOT_HAVE}(?!(?:{_IMPERATIVES})\b)(?:{_QUESTION_START})\b))",
    re.IGNORECASE,
)
_SENTENCE_BREAK = re.compile(r"(?<=[?;])\s*|\n+|(?<=\.)\s+(?=[A-Z])")
_NAME = r"[A-Z][\w'’&-]*(?:\s+(?:of\s+|for\s+|the\s+)?[A-Z][\w'’&-]*)*"
_PAIR = re.compile(rf"({_NAME})\s*(?:,\s*)?(?:and|vs\.?|versus|or)\s+({_NAME})")
_COMPARE = re.compile(r"\b(compare|comparison|versus|vs\.?|differ\w*|between|both)\b", re.I)
_ASKS_ABOUT_IT = re.compile(r"^(where|when|how|who|why)\b.*\b(it|them|one|that)\W*$", re.I)
_PRONOUN = re.compile(r"\b(it|its|they|their|them|this|these|those|that)\b", re.I)
_CAPITALISED = re.compile(r"\b[A-Z][\w'’&-]+")


@dataclass(frozen=True, slots=True)
class PlannedPart:
    text: str
    context: tuple[str, ...] = ()  # words borrowed from the rest of the question
    broad: bool = False  # asks for an overview ("the main initiatives"), not one fact
    # The statements that set the scene before the question ("Our checklist calls long
    # parameter lists a smell."): they help find passages, but the documents need not
    # speak of them for the question to be answered.
    scene: str = ""


_BROAD = re.compile(
    # "the main initiatives", "key measures", not "my main callback" or "the key file"
    r"\b(?:main|key|major|principal)\s+(?:[\w-]+\s+)?(?!(?:does|goes|has|was)\b)[a-z]+[^su\W]s\b"
    # "what are all the kinds of leave?", not "before all the required parts are set"
    r"|\b(?:what|which|list|name|give|show|tell|enumerate)\b[^?.]{0,20}?\ball the\b"
    r"|\b(overview|summary|summari[sz]e|outline|list the)\b"
    # "what initiatives ...", "which steps ...": the plural is what is asked for; not "who
    # measures soil carbon" or "why should the steps of a transaction be idempotent"
    r"|\b(?:what|which|list|name|describe|give|show|tell)\b(?:\s+[\w'’-]+){0,5}?\s+"
    r"(initiatives|programmes|programs|measures|actions|projects|steps|activities|efforts|"
    r"strategies|approaches|plans)\b"
    r"|\bwhat (is|are|has|have) .{2,60}? (doing|done)\b"
    r"|\bhow (is|are|does|do|will) .{2,60}? (going about|plan\w* to|approach\w*|tackl\w*|"
    r"address\w*|get .{0,40}? to)\b",
    re.IGNORECASE,
)


def is_broad(text: str) -> bool:
    """Whether ``text`` asks for an overview of several things rather than one fact. "Why
    should the steps of a compensating transaction be idempotent?" asks for a reason."""
    return bool(_BROAD.search(text)) and not _ASKS_REASON.match(asked_sentence(text))


_ASKS_REASON = re.compile(r"\s*why\b", re.IGNORECASE)


def _names(text: str) -> list[str]:
    """Capitalised words that are not just the first word of a question."""
    found = []
    for match in _CAPITALISED.finditer(text):
        word = match.group(0)
        folded = word.lower().strip("'’")
        if folded in STOPWORDS or re.fullmatch(_QUESTION_START, folded, re.I):
            continue
        found.append(word)
    return found


def _comparison_parts(text: str) -> list[str] | None:
    if not _COMPARE.search(text):
        return None
    pair = _PAIR.search(text)
    if not pair:
        return None
    first, second = pair.group(1), pair.group(2)
    if not (_names(first) and _names(second)):
        return None
    return [text[: pair.start()] + name + text[pair.end() :] for name in (first, second)]


_IMPERATIVE = re.compile(
    r"^(list|name|describe|explain|give|tell|show|compare|summari[sz]e|outline|find)\b", re.I
)


def _is_statement(sentence: str) -> bool:
    """A sentence that sets the scene ("I deprecated a version by accident.") asks nothing."""
    text = sentence.strip()
    return (
        bool(text)
        and not text.endswith("?")
        and not _IMPERATIVE.match(text)
        and not re.match(rf"^({_QUESTION_START})\b", text, re.I)
    )


def _sentences(question: str) -> list[tuple[str, str]]:
    """The question's sentences, each with the scene-setting statements before it."""
    sentences: list[tuple[str, str]] = []
    pending = ""
    for raw in _SENTENCE_BREAK.split(question.strip()):
        sentence = raw.strip()
        if not sentence:
            continue
        if _is_statement(sentence):
            pending = f"{pending} {sentence}".strip()
            continue
        sentences.append((pending, sentence))
        pending = ""
    if pending:  # nothing but statements, or a statement last: it is what is asked about
        if sentences:
            scene, last = sentences[-1]
            sentences[-1] = (scene, f"{last} {pending}")
        else:
            sentences.append(("", pending))
    return sentences


def plan_parts(question: str) -> list[PlannedPart]:
    """The parts of ``question`` in order; a simple question is one part."""
    clauses: list[str] = []
    scenes: dict[int, str] = {}  # clause index -> the statements before its sentence
    for scene, asked in _sentences(question):
        first = len(clauses)
        # The story is told, not asked: its own clauses ("I added a --version option, but
        # when ...") are no parts; it sets the scene of the first clause of what is asked.
        for number, raw in enumerate(_CLAUSE_BREAK.split(asked)):
            told = f"{scene} {raw}" if number == 0 and scene else raw
            clause = told.strip(" ,;")
            if clause and content_terms(clause):
                clauses.extend(_comparison_parts(clause) or [clause])
            elif clauses and _ASKS_ABOUT_IT.match(clause or ""):
                # "..., and where do I get it?": a question of its own about the subject
                # before, in words that are all function words.
                clauses.append(clause)
        if scene and len(clauses) > first and clauses[first].startswith(scene):
            scenes[first] = scene
    if not clauses:
        return [PlannedPart(question.strip(), broad=is_broad(question))]
    # Too many fragments means the splitter misread the question: keep it whole.
    if len(clauses) > MAX_PARTS:
        return [PlannedPart(question.strip(), broad=is_broad(question), scene=scenes.get(0, ""))]

    parts: list[PlannedPart] = []
    previous_names: list[str] = []
    previous_subject: list[str] = []
    for index, clause in enumerate(clauses):
        names = _names(clause)
        own = {w.lower() for w in words(clause)}
        borrowed: list[str] = []
        if previous_names and (not names or _PRONOUN.search(clause)):
            borrowed = words(" ".join(previous_names))
        elif not names:
            # "... parental leave, and how long do I stay after I use it?": "it" is the
            # subject of the clause before; so is the unnamed subject of "... unit test
            # names, and what sections should each test body have?". Borrowed words only
            # help find passages: the gap check judges a part on its own words.
            borrowed = previous_subject
        context = tuple(w for w in dict.fromkeys(borrowed) if w not in own)
        parts.append(PlannedPart(clause, context, is_broad(clause), scenes.get(index, "")))
        previous_names = names or previous_names
        previous_subject = [
            w for w in words(clause) if w not in STOPWORDS and w not in _SCAFFOLD
        ] or previous_subject
    return parts


# Words that say how a thing is asked, not what it is about (never borrowed as a subject).
_SCAFFOLD = frozenset(
    "many much long often get got do does did need want use used make made take".split()
)
