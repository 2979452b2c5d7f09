"""The offline writer's units: sentences, list items, table rows, and code with its intro."""

from __future__ import annotations

from app.modules.llm.extractive import _bullet, _cite, split_units
from app.modules.retrieval.text import index_stem, stem


class TestSplitUnits:
    def test_sentences_items_and_rows(self) -> None:
        text = (
            "The plan has two parts. It starts in 2025 (e.g. Phase 1 first).\n\n"
            "- Solar roofs on 38 schools\n- Heat pumps\n\n"
            "| Year | Budget |\n|---|---|\n| 2025 | EUR 2 million |\n"
        )
        units = [(t, k) for t, k, _ in split_units(text)]
        assert units == [
            ("The plan has two parts.", "sentence"),
            ("It starts in 2025 (e.g. Phase 1 first).", "sentence"),
            ("Solar roofs on 38 schools", "item"),
            ("Heat pumps", "item"),
            ("| Year | Budget |\n|---|---|\n| 2025 | EUR 2 million |", "row"),
        ]

    def test_code_travels_with_the_sentence_that_introduces_it(self) -> None:
        text = "Run the server like this:\n\n```bash\npython -m app serve\n```\n\nThen open it.\n"
        units = [t for t, _, _ in split_units(text)]
        assert units == [
            "Run the server like this:\n```bash\npython -m app serve\n```",
            "Then open it.",
        ]

    def test_code_without_an_introduction_is_left_out(self) -> None:
        text = "Some prose.\n\n```\nx = 1\n```\n"
        assert [t for t, _, _ in split_units(text)] == ["Some prose."]


class TestCitations:
    def test_the_citation_goes_before_the_final_full_stop(self) -> None:
        assert _cite("Northwind has 186 trucks.", 3) == "Northwind has 186 trucks [3]."

    def test_a_code_block_stays_whole_and_inside_its_list_item(self) -> None:
        cited = _cite("Run it:\n```bash\npython -m app serve\n```", 2)
        assert cited == "Run it: [2]\n\n```bash\npython -m app serve\n```"
        assert _bullet(cited) == ("- Run it: [2]\n\n  ```bash\n  python -m app serve\n  ```\n")


class TestStems:
    def test_short_tokens_are_not_stemmed_as_sqlite_does(self) -> None:
        assert index_stem("js") == "js"
        assert stem("js") == "js"
        assert index_stem("processes") == "process"


class TestIdentifiers:
    def test_code_like_names_are_taken_verbatim(self) -> None:
        from app.modules.retrieval.text import identifiers

        assert identifiers("What does pip's --require-hashes option do?") == ["--require-hashes"]
        assert identifiers("How do I use `keepAlive` in http.Agent?") == ["keepalive", "http.agent"]
        assert identifiers("What is Northwind's Scope 3 target?") == []
