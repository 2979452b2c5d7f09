"""Inputs that must neither raise nor make a run slow: long questions, passages full of
figures, odd questions over odd folders."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from app.config import AppConfig
from app.modules.llm.extractive import NEAR_WORDS, _answers, _Around, answer_pattern
from app.modules.orchestrator.module import run_pipeline
from app.modules.retrieval import retriever
from app.modules.retrieval.retriever import Query
from app.modules.retrieval.text import stems


class TestLongTokens:
    """The URL pattern once rescanned a token with no URL in it from each of its characters:
    0.8 s for 10,000 characters, 15 s for 40,000 (measured by hand; speed is not asserted
    here, only that a long token is read and the URL beside it still found)."""

    def test_a_long_token_beside_a_url(self) -> None:
        Query.from_text("a" * 10_000)
        assert retriever._url_only_words("see https://x.example.com/ " + "b" * 10_000) == {
            "https",
            "x",
            "example",
            "com",
        }
        assert (
            retriever.ASKERS_URL.sub(" ", "https://x.example.com/ " + "b" * 10_000).strip()
            == "b" * 10_000
        )

    @pytest.mark.parametrize("pattern", [retriever.ASKERS_URL])
    def test_urls_are_found_as_before(self, pattern: object) -> None:
        text = "have it go to https://api.example.com/users or (www.example.org) not a://b"
        assert isinstance(pattern, type(retriever.ASKERS_URL))
        assert [m.group(0) for m in pattern.finditer(text)] == [
            "https://api.example.com/users",
            "(www.example.org)",
            "a://b",
        ]


class TestPassagesFullOfFigures:
    """A "how many" question once re-read the passage before and after each of its figures:
    6 s for one passage of 4,000 numbers (measured by hand; _Around reads each word once)."""

    def test_a_passage_of_figures_answers_only_next_to_what_is_counted(self) -> None:
        question = "How many failed login widgets are allowed?"
        wanted = answer_pattern(question)
        assert wanted is not None
        passage = " ".join(str(i) for i in range(1_000))
        assert not _answers(wanted, passage, question)
        assert _answers(wanted, passage + " failed widgets", question)

    def test_the_words_next_to_a_place_are_those_of_the_whole_text(self) -> None:
        pieces = ["5", " ", "\n", "\u00a0", "attempts", "don't", "maxRetries", "ΟΔΟΣ", "é", "-"]
        pieces += ["|", "=", "the", "ﬁle", "x_y", "(", "`"]
        rng = random.Random(7)
        for _ in range(2_000):
            text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 20)))
            around = _Around(text)
            start = rng.randint(0, len(text))
            end = rng.randint(start, len(text))
            assert around._before(start) == stems(text[:start])[-NEAR_WORDS:], (text, start)
            assert around._after(end) == stems(text[end:])[:NEAR_WORDS], (text, end)


ODD_QUESTIONS = [
    "?",
    "how many",
    "which",
    "what other",
    "Which patterns?",
    "which documents",
    "what other parameter types are there?",
    "the of and a to is it",
    "https://example.com/foo",
    "python -m mypkg",
    "认证如何工作？",
    "🔥🚀",
    "Can it?",
    "And the Yarn equivalent?",
    "which " * 300,
    "how many " * 300,
]


@pytest.mark.parametrize(
    "files",
    [
        {},
        {"a.md": ""},
        {
            "parameter-types/index.md": "# Parameter Types\n",
            "parameter-types/a.md": "# A\n\n## B\n",
            "parameter-types/b.md": "#\n\n##\n\n/// tip\n\n---\n",
        },
        {
            "parameter-types/index.md": "# Parameter Types\n\n## Kinds\n\nThere are kinds.\n",
            "parameter-types/uuid.md": "# UUID\n\n## About\n\nA UUID parameter type.\n",
            "blank.md": "   \n\n",
        },
    ],
    ids=["empty-folder", "one-empty-file", "headings-only", "first-section-without-text"],
)
def test_odd_questions_over_odd_folders_do_not_fail(tmp_path: Path, files: dict[str, str]) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    config = AppConfig(base_dir=tmp_path, markdown_path=str(root), output_dir=tmp_path / "out")
    for number, question in enumerate(ODD_QUESTIONS):
        result = run_pipeline(config, question, f"odd{number}")
        assert result.status in {"completed", "completed_with_gaps"}, question
