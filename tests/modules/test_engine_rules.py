"""One test per rule of the offline engine, on small fixtures written for the test."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.config import AppConfig
from app.modules.documents.sections import split_markdown
from app.modules.evidence import Evidence, Part, cited_ids
from app.modules.llm.extractive import (
    _answers,
    _cite,
    answer_pattern,
    asked_kind,
    asked_sentence,
    gap_sentence,
    split_units,
)
from app.modules.orchestrator.evidence_selection import (
    _labelled,
    _own_weights,
    _sibling_list,
    retrieve_evidence,
)
from app.modules.orchestrator.gaps import assess_gaps
from app.modules.orchestrator.module import run_pipeline
from app.modules.orchestrator.planner import is_broad, plan_parts
from app.modules.retrieval.embedding import embed
from app.modules.retrieval.index import SectionIndex, index_path_for
from app.modules.retrieval.retriever import (
    Query,
    Ranked,
    _heading_named,
    asked_facets,
    rank,
    search_weights,
)
from app.modules.retrieval.specificity import specificity, used_as_verbs
from app.modules.retrieval.text import (
    adjective,
    american,
    identifiers,
    stem,
    stems,
    variants,
    words,
)


class TestSpecificity:
    @pytest.mark.parametrize("word", ["put", "right", "roughly", "officially", "quicker"])
    def test_everyday_phrasing_weighs_little(self, word: str) -> None:
        assert specificity(word) <= 0.35

    @pytest.mark.parametrize("word", ["ferries", "telemetry", "kubernetes", "npm", "2031"])
    def test_rare_nouns_names_and_years_weigh_fully(self, word: str) -> None:
        assert specificity(word) >= 0.7

    def test_words_about_the_documents_weigh_nothing(self) -> None:
        assert specificity("documentation") == 0.0
        assert specificity("according") == 0.0


class TestQuestionWords:
    def test_negations_are_not_words_of_their_own(self) -> None:
        assert words("I haven't, it won't, you can't") == [
            "i", "have", "not", "it", "will", "not", "you", "can", "not",
        ]  # fmt: skip

    def test_the_word_joined_to_a_name_is_not_a_name(self) -> None:
        query = Query.from_text("My Annotated-style parameters blow up. Which Typer version?")
        assert set(query.names) == {stem("annotated"), stem("typer")}
        assert query.specific[stem("style")] < 0.5

    def test_latin_abbreviations_are_not_code_names(self) -> None:
        assert identifiers("the timeout, i.e. how long `fetch-timeout` waits") == ["fetch-timeout"]


class TestPlanner:
    @pytest.mark.parametrize(
        ("question", "broad"),
        [
            ("What are the main initiatives of Aurora?", True),
            ("What are the key measures in Harbor's plan?", True),
            ("My main callback only runs with a subcommand. How do I run it always?", False),
            ("Which key does the config file use for the port?", False),
            ("What are all the different kinds of leave I can take?", True),
            ("Show me all the supported platforms.", True),
            # "all the" describes the parts here; the question asks how one thing works.
            (
                "How does the Step Builder stop me calling build() before all the parts are set?",
                False,
            ),
            ("Which steps does the onboarding checklist list?", True),
            ("What climate initiatives is Harbor running?", True),
            # a reason, and a verb: neither asks for the steps or the measures themselves
            ("Why should the steps of a compensating transaction be idempotent?", False),
            ("Who measures soil carbon for Verdant's farming programme?", False),
        ],
    )
    def test_an_overview_asks_for_the_main_things_not_about_a_main_thing(
        self, question: str, broad: bool
    ) -> None:
        assert is_broad(question) is broad

    def test_a_scene_setting_statement_joins_its_question(self) -> None:
        parts = plan_parts("I deprecated a version by accident. How do I take it back?")
        assert [p.text for p in parts] == [
            "I deprecated a version by accident. How do I take it back?"
        ]

    def test_the_clauses_of_a_story_are_no_parts(self) -> None:
        # Only what is asked splits into parts; "I added a --version option with a
        # callback" was answered as a question of its own.
        story = (
            "I added a --version option with a callback, but when someone passes --name "
            "first its callback fails."
        )
        parts = plan_parts(f"{story} Why does that happen and how do I make --version win?")
        assert [p.text for p in parts] == [
            f"{story} Why does that happen",
            "how do I make --version win?",
        ]
        assert parts[0].scene == story

    def test_it_borrows_the_subject_of_the_clause_before(self) -> None:
        first, second = plan_parts(
            "How many weeks of parental leave do I get, and how long must I stay after I use it?"
        )
        assert "parental" in second.context
        assert "leave" in second.context
        assert first.context == ()

    def test_a_part_without_a_name_of_its_own_borrows_the_subject_before(self) -> None:
        _, second = plan_parts(
            "What naming convention do unit tests use, and what sections should each body have?"
        )
        assert "unit" in second.context
        assert "tests" in second.context

    def test_a_question_in_function_words_about_the_subject_before_is_a_part(self) -> None:
        _, second = plan_parts(
            "Which password manager are we supposed to use, and where do I get it?"
        )
        assert second.text == "where do I get it?"
        assert "password" in second.context


class TestUnits:
    def test_a_sentence_ending_in_a_colon_carries_its_list(self) -> None:
        text = "uv picks the cache folder, in order:\n\n1. `--cache-dir`\n2. `$HOME/.cache/uv`\n"
        lead = split_units(text)[0][0]
        assert lead == "uv picks the cache folder, in order:\n- `--cache-dir`\n- `$HOME/.cache/uv`"
        assert _cite(lead, 2).startswith("uv picks the cache folder, in order: [2]\n")

    def test_a_table_row_stays_a_table_with_its_header(self) -> None:
        (row,) = split_units("| Year | Scope 1 |\n|---|---|\n| 2023 | 120 |\n")
        assert row[1] == "row"
        assert _cite(row[0], 4) == "| Year | Scope 1 |\n|---|---|\n| 2023 | 120 [4] |"

    def test_heading_anchors_are_not_shown(self) -> None:
        section = split_markdown("# Guide\n\n## CORS { #cors }\n\nAllow origins.\n", "g.md")[-1]
        assert section.headings == ("CORS",)
        assert section.heading_path == "Guide > CORS"


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    _write(
        root,
        {
            "acme/budget.md": "# Acme budget\n\nThe Acme tram project budget is EUR 4.5 million.\n",
            "globex/budget.md": (
                "# Globex budget\n\nThe Globex tram project budget is EUR 9.9 million.\n"
            ),
            "acme/team.md": (
                "# Acme team\n\nThe tram project is run by the harbour team of Acme.\n\n"
                "## Staff\n\nSeven engineers work on the Acme tram project.\n"
            ),
            "benefits/transit.md": (
                "# Transit benefit\n\nEmployees can have the cost of commuting by bus, "
                "metro and train reimbursed every month.\n"
            ),
            "tools/laptops.md": "# Laptops\n\nEvery employee gets a laptop on the first day.\n",
        },
    )
    return root


def _config(tmp_path: Path, root: Path) -> AppConfig:
    return AppConfig(base_dir=tmp_path, markdown_path=str(root), output_dir=tmp_path / "out")


def _run(config: AppConfig, question: str, run_id: str) -> tuple[str, dict[str, object]]:
    result = run_pipeline(config, question, run_id)
    assert result.final_output_path
    assert result.context_bundle_path
    bundle = json.loads(result.context_bundle_path.read_text())
    return result.final_output_path.read_text(), bundle


class TestAnswers:
    def test_the_subject_named_decides_which_figure_answers(
        self, tmp_path: Path, corpus: Path
    ) -> None:
        final, _ = _run(_config(tmp_path, corpus), "What is Acme's tram project budget?", "r1")
        answer = final.split("## Sources")[0]
        assert "EUR 4.5 million" in answer
        assert "9.9" not in answer  # another organisation's figure is not an answer

    def test_citations_count_from_one_in_order_and_sources_are_exactly_those(
        self, tmp_path: Path, corpus: Path
    ) -> None:
        final, bundle = _run(
            _config(tmp_path, corpus),
            "Who runs the Acme tram project and how many engineers work on it?",
            "r2",
        )
        cited = cited_ids(final.split("## Sources")[0])
        assert cited == list(range(1, len(cited) + 1))
        sources = final.split("## Sources", 1)[1]
        assert [int(n) for n in re.findall(r"^- \[(\d+)\]", sources, re.M)] == cited
        evidence = bundle["evidence"]
        assert isinstance(evidence, list)
        assert [e["id"] for e in evidence] == list(range(1, len(evidence) + 1))

    def test_a_partly_answered_question_keeps_its_facts_then_says_what_is_missing(
        self, tmp_path: Path, corpus: Path
    ) -> None:
        final, bundle = _run(
            _config(tmp_path, corpus), "How much does the Acme harbour team cost?", "r3"
        )
        plan = bundle["plan"]
        assert isinstance(plan, list)
        assert plan[0]["gap"]
        assert plan[0]["partial"]
        assert final.index("harbour team") < final.index("The documents do not")

    def test_a_question_in_other_words_finds_its_section(
        self, tmp_path: Path, corpus: Path
    ) -> None:
        config = _config(tmp_path, corpus)
        with SectionIndex.open(tmp_path / "index.sqlite") as index:
            index.sync(corpus, max_chars=config.chunk_max_chars, overlap_chars=0)
            query = Query.from_text("Will my subway fare be paid for?")
            # No word of the question is in the documents: only the semantic half finds it.
            assert index.search(query.match_words, limit=5) == []
            (nearest, _), *_ = index.similar(embed([query.text])[0], limit=3)
            ranked = rank(index, query, k=3, idf=index.idf(query.forms))
        assert index_path(ranked[0]) == "benefits/transit.md"
        assert ranked[0].hit.id == nearest


def index_path(ranked: Ranked) -> str:
    return ranked.hit.section.path


class TestVectors:
    def test_vectors_follow_the_files_incrementally(self, tmp_path: Path, corpus: Path) -> None:
        with SectionIndex.open(tmp_path / "index.sqlite") as index:
            index.sync(corpus, max_chars=1800, overlap_chars=0)
            ids, vectors = index.vectors()
            assert len(ids) == index.section_count() == vectors.shape[0]
            assert vectors.shape[1] == 256

            (corpus / "tools" / "laptops.md").write_text(
                "# Laptops\n\nA laptop.\n\n## Returns\n\nReturn it on the last day.\n"
            )
            report = index.sync(corpus, max_chars=1800, overlap_chars=0)
            assert report.indexed == 1
            new_ids, new_vectors = index.vectors()
            assert len(new_ids) == index.section_count() == len(ids) + 1
            assert new_vectors.shape[0] == len(new_ids)
            unchanged = index.sync(corpus, max_chars=1800, overlap_chars=0)
            assert unchanged.indexed == 0
            assert index.vectors()[0] is new_ids  # no change: the cached copy is reused


class TestWhichThing:
    def test_which_thing_questions_want_a_name_the_question_does_not_give(self) -> None:
        wanted = answer_pattern("Which flag stops uv sync from removing packages?")
        assert wanted is not None
        assert _answers(wanted, "Pass `--inexact` to keep them.", "Which flag stops uv sync?")
        assert not _answers(wanted, "`uv sync` removes them.", "Which flag stops `uv sync`?")
        assert answer_pattern("Why does npm dedupe?") is None

    def test_the_sentence_naming_the_thing_leads(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "security/passwords.md": (
                    "# Passwords\n\n## Use a password manager\n\n"
                    "A password manager stores every password you use, so you can use a "
                    "long password for each service.\n\n"
                    "We recommend KeePassXC, which you install from the Self-Service app.\n"
                ),
                "security/laptops.md": "# Laptops\n\nLock your laptop when you leave it.\n",
            },
        )
        final, _ = _run(_config(tmp_path, root), "Which password manager should I use?", "w1")
        assert final.splitlines()[0].startswith("We recommend KeePassXC")


class TestDamping:
    def test_the_best_files_second_section_keeps_its_place(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        files = {
            "guide/cache.md": (
                "# Cache\n\n## Cache location\n\nThe cache location is the folder where the "
                "cache keeps downloaded wheels.\n\n## Cache location on Linux\n\nOn Linux the "
                "cache location is `$XDG_CACHE_HOME/uv`.\n"
            )
        }
        for n in range(8):
            files[f"other/page{n}.md"] = (
                f"# Page {n}\n\nOn Linux, page {n} keeps its cache in a location of its own.\n"
            )
        _write(root, files)
        with SectionIndex.open(tmp_path / "index.sqlite") as index:
            index.sync(root, max_chars=1800, overlap_chars=0)
            query = Query.from_text("Where is the cache location on Linux?")
            ranked = rank(index, query, k=3, idf=index.idf(query.forms))
        # Damped like any other file's, the runner-up section would fall behind the pages.
        assert [r.hit.section.path for r in ranked].count("guide/cache.md") == 2

    def test_sections_as_strong_as_the_best_are_not_damped(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        files = {
            "policy/passwords.md": "# Passwords\n\n"
            + "".join(
                f"## {n}. Password rule {n}\n\nPassword manager rule {n}: the password "
                f"manager keeps password {n}.\n\n"
                for n in range(1, 4)
            )
        }
        for n in range(6):
            files[f"other/page{n}.md"] = f"# Page {n}\n\nA password for page {n}.\n"
        _write(root, files)
        with SectionIndex.open(tmp_path / "index.sqlite") as index:
            index.sync(root, max_chars=1800, overlap_chars=0)
            query = Query.from_text("Which password manager rule applies?")
            ranked = rank(index, query, k=3, idf=index.idf(query.forms))
        assert [r.hit.section.path for r in ranked] == ["policy/passwords.md"] * 3


class TestEmphasis:
    def test_a_sentence_cut_from_an_italic_passage_keeps_no_stray_marker(self) -> None:
        units = split_units("*Adopted on 18 May 2021. This document is a summary.*\n")
        assert [u[0] for u in units] == ["Adopted on 18 May 2021.", "This document is a summary."]

    def test_balanced_emphasis_is_kept(self) -> None:
        (unit,) = split_units("The target is **50%** by *2030*.\n")
        assert unit[0] == "The target is **50%** by *2030*."


class TestOverview:
    def test_a_list_is_introduced_by_its_document_not_by_one_items_figure(
        self, tmp_path: Path
    ) -> None:
        root = tmp_path / "docs"
        programmes = "".join(
            f"## {name}\n\n### Overview\n\n{name} {what}.\n\n### Budget\n\n"
            f"EUR {money} million over 2021-2026, funded by the Council.\n\n"
            for name, what, money in (
                ("Warm Homes", "insulates homes and replaces gas boilers", 18),
                ("Bright Streets", "replaced every streetlight with LED lamps", 7),
                ("Solar Schools", "puts solar panels on school roofs", 4),
            )
        )
        _write(root, {"city/programmes.md": f"# City Climate Programmes\n\n{programmes}"})
        final, _ = _run(
            _config(tmp_path, root), "What are the main climate programmes of the City?", "o1"
        )
        lines = final.splitlines()
        assert lines[0].startswith("From *City Climate Programmes*")
        body = final.split("## Sources")[0]
        for name in ("Warm Homes", "Bright Streets", "Solar Schools"):
            assert name in body
        # A budget line, if there is one, says which programme it belongs to.
        for line in lines:
            if "EUR" in line and "million" in line:
                assert re.match(r"- \*\*(Warm Homes|Bright Streets|Solar Schools)\*\*", line), line


class TestGapWords:
    def test_missing_everyday_verbs_do_not_make_a_gap_but_a_missing_noun_does(
        self, tmp_path: Path
    ) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "tool/cache.md": (
                    "# Cache\n\n## Cleaning the cache\n\n"
                    "Run `tool cache clean` to remove every cached wheel.\n"
                ),
                "tool/install.md": "# Install\n\nInstall the tool with the installer script.\n",
            },
        )
        config = _config(tmp_path, root)
        # "get rid of", "lying around": phrasing the documents say in other words.
        _, bundle = _run(config, "How do I get rid of cached stuff lying around?", "g1")
        plan = bundle["plan"]
        assert isinstance(plan, list)
        assert plan[0]["gap"] is False, plan[0]
        # A noun the passages lack ("telemetry") still makes the part a gap.
        _, bundle = _run(config, "How do I clean the telemetry cache uploads?", "g2")
        plan = bundle["plan"]
        assert isinstance(plan, list)
        assert plan[0]["gap"] is True, plan[0]

    def test_a_noun_used_as_a_verb_does_not_make_a_gap(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "tool/bytecode.md": (
                    "# Compiling bytecode\n\n"
                    "Compiling Python source files to bytecode improves the startup time of "
                    "container images. Use `--compile-bytecode` when installing.\n"
                ),
                "tool/install.md": "# Install\n\nInstall the tool with the installer script.\n",
            },
        )
        config = _config(tmp_path, root)
        # "boots" can be a noun, but "boots up" is a verb: phrasing, not a subject.
        _, bundle = _run(config, "Can bytecode make my container boots up quicker?", "v1")
        plan = bundle["plan"]
        assert isinstance(plan, list)
        assert plan[0]["gap"] is False, plan[0]
        # Used as the thing asked about, the same word is a subject the documents lack.
        _, bundle = _run(config, "Is bytecode compiled for boots and gloves?", "v2")
        plan = bundle["plan"]
        assert isinstance(plan, list)
        assert plan[0]["gap"] is True, plan[0]

    @pytest.mark.parametrize(("in_other_documents", "gap"), [(False, False), (True, True)])
    def test_a_word_no_document_uses_is_the_askers_own_and_makes_no_gap(
        self, in_other_documents: bool, gap: bool
    ) -> None:
        question = "How do I clean the cached wheels piling up in my garage?"
        query = Query.from_text(question)
        document = "# Cache\n\nRun `tool cache clean` to remove every cached wheel.\n"
        passage = Evidence(
            id=1,
            kind="section",
            text=document,
            score=1.0,
            path="tool/cache.md",
            stems=frozenset(stems(document)),
        )
        part = Part(id=1, text=question, query=query, evidence_ids=[1])
        lacking = set(query.terms) - passage.stems
        assert stem("garage") in lacking
        # No document says "garage": the asker's own word for a thing the documents name
        # otherwise, not a subject they lack. Documents that speak of garages elsewhere, and
        # not here, leave the part unanswered.
        unknown = set() if in_other_documents else lacking
        # A word in no document weighs the most in IDF.
        idf = {**dict.fromkeys(query.terms, 2.0), stem("garage"): 6.0}
        assess_gaps([part], [passage], idf, unknown)
        assert part.coverage < 0.5
        assert part.gap is gap


class TestVerbsInContext:
    @pytest.mark.parametrize(
        ("question", "verb"),
        [
            ("so my container boots up quicker", "boots"),
            ("how early do I need to kick off the paperwork", "kick"),
            ("before it starts throwing away the oldest ones", "starts"),
            ("before it starts throwing away the oldest ones", "throwing"),
            ("a coworker is dealing with an emergency", "dealing"),
            ("how many files does npm hang on to", "hang"),
            ("how can I make it prefer reusing the existing one", "reusing"),
            ("customers end up double-billed. What pattern addresses that?", "addresses"),
            ("which setting controls it", "controls"),
        ],
    )
    def test_words_the_question_uses_as_verbs(self, question: str, verb: str) -> None:
        assert verb in used_as_verbs(words(question))

    @pytest.mark.parametrize(
        ("question", "noun"),
        [
            ("what size are the boots for site visits", "boots"),
            ("when does the tram project start", "project"),
            ("which airport should I fly from", "airport"),
            ("does the kick off meeting have a budget", "budget"),
            ("which setting that controls the cache should I change", "setting"),
            ("is there a limit on the addresses that I can add", "addresses"),
            ("does the acme budget this year include travel", "budget"),
            ("i upgraded the package it fails", "package"),
        ],
    )
    def test_nouns_stay_nouns(self, question: str, noun: str) -> None:
        assert noun not in used_as_verbs(words(question))


class TestHowTo:
    def test_a_how_do_i_question_leads_with_the_instruction(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "tool/certificates.md": (
                    "# Certificates\n\n## System certificates\n\n"
                    "By default, the tool uses its bundled root certificates. Some companies "
                    "keep their root certificate in the system certificate store.\n\n"
                    "To use the system certificate store, pass the `--system-certs` flag.\n"
                ),
                "tool/install.md": "# Install\n\nInstall the tool with the installer script.\n",
            },
        )
        answer, _ = _run(
            _config(tmp_path, root),
            "How do I make the tool trust my company's root certificate from the system store?",
            "h1",
        )
        assert answer.startswith("To use the system certificate store, pass"), answer


class TestNavigation:
    def test_see_also_links_are_neither_the_best_evidence_nor_bullets(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "commands/tool-dedupe.md": (
                    "# tool-dedupe\n\n## Description\n\n"
                    "Dedupe reduces duplication in the package tree by moving packages up.\n\n"
                    "## See Also\n\n"
                    "* [tool dedupe packages](/commands/tool-dedupe)\n"
                    "* [tool ls packages](/commands/tool-ls)\n"
                    "* [tool update packages](/commands/tool-update)\n"
                ),
                "commands/tool-ls.md": (
                    "# tool-ls\n\n## Description\n\nLists the installed packages.\n"
                ),
            },
        )
        config = _config(tmp_path, root)
        answer, bundle = _run(config, "What does tool dedupe do to packages?", "n1")
        evidence = bundle["evidence"]
        assert isinstance(evidence, list)
        assert evidence[0]["heading_path"].endswith("Description"), evidence[0]
        assert "(/commands/" not in answer, answer


class TestListsUnderHeadings:
    def test_a_list_question_gets_the_whole_list_its_heading_names(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "using/scripts.md": (
                    "# Scripts\n\n## Life cycle order\n\n"
                    "Scripts run in a fixed order for each command.\n\n"
                    "### tool publish\n\n* `prepublish`\n* `prepack`\n* `postpack`\n"
                    "* `postpublish`\n\n"
                    "### tool install\n\n* `preinstall`\n* `install`\n* `postinstall`\n\n"
                    "### A note on uninstall scripts\n\n"
                    "Uninstall lifecycle scripts are not run by the tool publish command.\n"
                ),
                "using/config.md": "# Config\n\nScripts can be disabled with a setting.\n",
            },
        )
        config = _config(tmp_path, root)
        answer, bundle = _run(config, "Which lifecycle scripts does tool publish run?", "l1")
        evidence = bundle["evidence"]
        assert isinstance(evidence, list)
        # The section whose heading the question names in full leads the evidence ...
        assert evidence[0]["heading_path"].endswith("tool publish"), evidence[0]
        # ... and its list travels whole, not as one stray item.
        for script in ("prepublish", "prepack", "postpack", "postpublish"):
            assert f"`{script}`" in answer, answer
        assert "preinstall" not in answer, answer


class TestWhatIsAsked:
    @pytest.mark.parametrize(
        ("question", "answer", "other"),
        [
            # "what's the default number" asks for a figure as "what number" does
            (
                "What's the default number of concurrent downloads?",
                "Up to 50 downloads run at once.",
                "Downloads run concurrently.",
            ),
            # a year, not "every week"
            ("In what year was the first version released?", "It shipped in 2024.", "Weekly."),
            # "how long" wants a figure with its unit, not any number nearby
            (
                "How long does my password have to be?",
                "Passwords must be 16 characters.",
                "Your last 24 passwords may not be reused.",
            ),
            # a link's address holds no value
            # "where does it put" in a tool's documentation: a path, not any code
            (
                "Where does the tool put its cache on Linux?",
                "A system cache directory, e.g., `$XDG_CACHE_HOME/tool` on Unix.",
                "Run `tool cache clean` to remove every entry.",
            ),
            (
                "What is the maximum number of retries?",
                "At most 5 retries are made.",
                "See [the retry guide](https://example.com/kb?id=361130&rank=1).",
            ),
        ],
    )
    def test_the_kind_of_value_asked_for(self, question: str, answer: str, other: str) -> None:
        wanted = answer_pattern(question)
        assert wanted is not None
        assert _answers(wanted, answer, question)
        assert not _answers(wanted, other, question)

    def test_a_list_question_is_outlined_by_the_headings_that_name_it(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "tts/onboarding.md": (
                    "# Onboarding at TTS\n\n## Topics for the first week\n\n"
                    "### Taking leave\n\nTTS staff take leave through the HR system.\n\n"
                    "### Laptops\n\nEvery TTS employee gets a laptop.\n\n"
                    "### Security\n\nTTS staff complete security training.\n"
                ),
                "benefits/leave.md": (
                    "# Leave\n\n## Types of leave\n\n"
                    "### Annual leave\n\nYou may use annual leave for any reason.\n\n"
                    "### Sick leave\n\nSick leave covers medical appointments.\n\n"
                    "#### Advanced sick leave\n\nYou can request up to 240 hours in advance.\n\n"
                    "#### Donated sick leave\n\nColleagues can donate hours.\n\n"
                    "### Court leave\n\nJury duty is marked as court leave.\n\n"
                    "### Military leave\n\nReservists get 15 days of military leave a year.\n"
                ),
            },
        )
        config = _config(tmp_path, root)
        question = "What are all the kinds of leave I can take as a TTS employee?"
        answer, _ = _run(config, question, "o1")
        for kind in ("Annual leave", "Sick leave", "Court leave", "Military leave"):
            assert kind in answer, answer
        assert "laptop" not in answer, answer


class TestTables:
    def test_rows_of_one_table_are_one_table_in_order_and_none_is_dropped_as_a_repeat(
        self, tmp_path: Path
    ) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "commands/stage.md": (
                    "# stage\n\n## 2FA requirements by subcommand\n\n"
                    "| Command | Requires 2FA | Notes |\n|---|---|---|\n"
                    "| `stage publish` | No | Defers 2FA to approval |\n"
                    "| `stage approve` | Yes | Prompts for 2FA to publish the staged package |\n"
                    "| `stage reject` | Yes | Prompts for 2FA to remove the staged package |\n"
                    "| `stage list` | No | Lists staged packages |\n"
                ),
                "commands/other.md": "# other\n\nNothing about stages here.\n",
            },
        )
        config = _config(tmp_path, root)
        answer, _ = _run(config, "Which stage subcommands prompt for 2FA?", "t1")
        assert answer.count("| Command | Requires 2FA | Notes |") == 1, answer
        approve, reject = answer.find("`stage approve`"), answer.find("`stage reject`")
        assert 0 <= approve < reject, answer

    def test_a_why_question_leads_with_the_reason(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "tools/chat.md": (
                    "# Chat messages\n\n## Deleting messages\n\n"
                    "You cannot delete chat messages, including direct messages. "
                    "Chat messages are kept because they are federal records subject to "
                    "public records requests.\n"
                ),
                "tools/email.md": "# Email\n\nEmail is for messages outside the team.\n",
            },
        )
        config = _config(tmp_path, root)
        answer, _ = _run(config, "Why can't I delete chat messages, even direct ones?", "w1")
        assert answer.startswith("Chat messages are kept because"), answer

    def test_a_named_subject_without_what_is_asked_about_it_is_a_gap(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "verdant/ostervale.md": (
                    "# Verdant at Ostervale Dairy\n\n"
                    "Verdant's Ostervale Dairy runs a biogas digester. Ostervale Dairy "
                    "processes milk from Verdant's members.\n"
                ),
                "verdant/members.md": "# Verdant members\n\nVerdant has 120 member farms.\n",
                **{
                    f"harbor/district{n}.md": (
                        f"# Harbor district {n}\n\nHarbor runs {n + 2} bus lines in district {n}.\n"
                    )
                    for n in range(8)
                },
            },
        )
        config = _config(tmp_path, root)
        question = "What target has Verdant set for cutting water consumption at Ostervale Dairy?"
        _, bundle = _run(config, question, "a1")
        plan = bundle["plan"]
        assert isinstance(plan, list)
        assert plan[0]["gap"] is True, plan[0]
        # What is asked about the subject is there: no gap.
        _, bundle = _run(config, "What does Verdant's Ostervale Dairy run?", "a2")
        plan = bundle["plan"]
        assert isinstance(plan, list)
        assert plan[0]["gap"] is False, plan[0]

    @pytest.mark.parametrize(
        ("question", "asks_time"),
        [
            ("When does the office open?", True),
            ("How much is it, and when is it due?", True),
            ("What happens to the tool's environment when I clear the cache?", False),
            ("Should I use --refresh when I want fresh data?", False),
        ],
    )
    def test_when_asks_for_a_time_only_where_it_opens_the_question(
        self, question: str, asks_time: bool
    ) -> None:
        wanted = answer_pattern(question)
        assert (wanted is not None and _answers(wanted, "Every Monday.", question)) is asks_time


class TestCodeIntroductions:
    def test_a_sentence_naming_the_following_code_carries_it(self) -> None:
        units = split_units(
            "Create a file called `greet` with the following contents\n\n"
            "```python\n#!/usr/bin/env -S uv run --script\nprint('hi')\n```\n"
        )
        assert units[0][0].startswith("Create a file called `greet`")
        assert "#!/usr/bin/env -S uv run --script" in units[0][0]

    def test_a_settings_default_reads_with_the_sentence_that_says_what_it_is(self) -> None:
        units = split_units(
            "* Default: 900\n* Type: Number\n\n"
            "The age of the cache, in seconds, before another registry request is made.\n"
        )
        texts = [text for text, _, _ in units]
        assert (
            "The age of the cache, in seconds, before another registry request is made "
            "(Default: 900; Type: Number)." in texts
        ), texts


class TestSceneSetting:
    """Statements before the question help find passages; the documents need not speak of
    them for the question to be answered."""

    @pytest.fixture
    def root(self, tmp_path: Path) -> Path:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "reviews/complexity.md": (
                    "# Reviewer guidance\n\n## Complexity\n\n"
                    "If a method has greater than 3 arguments, it is potentially overly "
                    "complex.\n"
                ),
                # The scene's words are the documents' words too, elsewhere: a real corpus
                # knows "checklist", "parameter", "team"; it just does not answer with them.
                "reviews/style.md": (
                    "# Style\n\nEvery team keeps a checklist. Name each parameter clearly; "
                    "long lists of calls are hard to read. Code smell: duplicated code.\n"
                ),
                "tool/layout.md": "# Project layout\n\nEach project lives in its own folder.\n",
                "tool/config.md": (
                    "# Configuration files\n\n`tool.toml` files take precedence over "
                    "`pyproject.toml` files when both are present in a directory.\n"
                ),
            },
        )
        return root

    def test_words_only_the_scene_uses_do_not_make_a_gap(self, tmp_path: Path, root: Path) -> None:
        config = _config(tmp_path, root)
        question = (
            "Our team's checklist calls long parameter lists a smell. How many arguments "
            "make a method potentially overly complex?"
        )
        answer, bundle = _run(config, question, "s1")
        plan = bundle["plan"]
        assert isinstance(plan, list)
        assert plan[0]["gap"] is False, plan[0]
        assert "greater than 3 arguments" in answer

    def test_a_question_that_only_points_at_its_scene_is_judged_on_the_scene(
        self, tmp_path: Path, root: Path
    ) -> None:
        config = _config(tmp_path, root)
        # "Which one wins?" says nothing of its own: the scene is what it asks about, so a
        # scene the documents do not know is still a gap.
        _, bundle = _run(
            config, "My folder has a tool.toml and a pyproject.toml. Which one wins?", "s2"
        )
        plan = bundle["plan"]
        assert isinstance(plan, list)
        assert plan[0]["gap"] is False, plan[0]
        _, bundle = _run(
            config, "My folder has a kubernetes helm chart and a terraform plan. Which wins?", "s3"
        )
        plan = bundle["plan"]
        assert isinstance(plan, list)
        assert plan[0]["gap"] is True, plan[0]


class TestCodeNamesInTheQuestion:
    @pytest.fixture
    def root(self, tmp_path: Path) -> Path:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "clients.md": (
                    "# Clients\n\n## Base URLs\n\nA client's `base_url` is prepended to every "
                    "relative URL it requests, so `client.get('/users')` needs no host. Each "
                    "setting of the client applies to all its requests.\n"
                ),
                "quickstart.md": (
                    "# Quickstart\n\nMake a request with `httpx.get('https://www.example.org/')`."
                    "\n\n## Why clients\n\nA client reuses the underlying TCP connection.\n"
                ),
                "cache.md": "# Cache\n\nRun `tool cache prune` to remove unused entries.\n",
            },
        )
        return root

    def test_the_askers_own_url_is_not_a_name_the_documents_must_hold(
        self, tmp_path: Path, root: Path
    ) -> None:
        _, bundle = _run(
            _config(tmp_path, root),
            "Which client setting makes client.get('/users') go to https://api.example.com/users?",
            "c1",
        )
        plan = bundle["plan"]
        assert isinstance(plan, list)
        assert all(not p["decisive"] for p in plan), plan

    def test_the_index_finds_a_code_name_verbatim(self, tmp_path: Path, root: Path) -> None:
        with SectionIndex.open(tmp_path / "index.sqlite") as index:
            index.sync(root, max_chars=1800, overlap_chars=0)
            assert index.mentions("httpx.get")
            assert index.mentions("BASE_URL")  # ASCII case folded
            assert not index.mentions("--older-than")
            assert not index.mentions("base%url")  # no wildcards: % and _ are literal
            assert not index.mentions("b_se_url")

    def test_a_code_name_is_missing_only_when_no_document_holds_it(self) -> None:
        def part() -> Part:
            text = "Why are clients faster than httpx.get in a loop?"
            return Part(id=1, text=text, query=Query.from_text(text))

        passage = Evidence(
            id=1,
            kind="section",
            text="A client reuses the underlying TCP connection.",
            score=1.0,
            path="clients.md",
            stems=frozenset(stems("A client reuses the underlying TCP connection.")),
        )
        # Not in the passages found for the question, but in a document: not missing.
        found_elsewhere = part()
        assess_gaps([found_elsewhere], [passage], {}, set(), lambda text: text == "httpx.get")
        assert found_elsewhere.decisive == []
        # In no document at all: a gap on its own.
        nowhere = part()
        assess_gaps([nowhere], [passage], {}, set(), lambda text: False)
        assert nowhere.decisive == ["httpx.get"]
        assert nowhere.gap


class TestClauses:
    @pytest.mark.parametrize(
        ("question", "parts"),
        [
            (
                "Which argument lets me write client.get('/users') and have it go to the API?",
                1,
            ),
            ("Wait a minute to connect, but give up after 10 seconds otherwise. How?", 1),
            ("What is the budget, and have they approved it?", 2),
            ("What is the budget, but how is the plan funded?", 2),
            # "and can never be NULL" goes on about "id": no subject, no question of its own.
            ("If id is the primary key and can never be NULL, why is it optional?", 1),
            ("Is the cache shared and can I move it?", 2),
        ],
    )
    def test_a_clause_is_a_part_only_when_it_asks(self, question: str, parts: int) -> None:
        assert len(plan_parts(question)) == parts


class TestNoPadding:
    def test_another_folders_sentence_on_another_subject_is_not_a_bullet(
        self, tmp_path: Path
    ) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "testing/unit-tests.md": (
                    "# Unit testing\n\n## Naming\n\n"
                    "Unit test names follow the convention `Unit_State_Expected`, so that a "
                    "failing unit test says what broke.\n"
                ),
                "infra/terraform.md": (
                    "# Terraform\n\n## Naming convention\n\n"
                    "Terraform variable names follow a convention: lowercase letters and "
                    "underscores, with clear names that are easy to follow.\n"
                ),
            },
        )
        answer, _ = _run(
            _config(tmp_path, root),
            "What naming convention do unit test names follow?",
            "p1",
        )
        assert "Unit_State_Expected" in answer
        assert "Terraform" not in answer, answer


class TestValuesInWords:
    @pytest.mark.parametrize(
        ("question", "text", "answers"),
        [
            # A count in words answers "how many".
            (
                "How many rounds of comments before we switch to a call?",
                "After two round trips of question/response, talk face to face.",
                True,
            ),
            ("How long is the notice period?", "Give notice three weeks ahead.", True),
            # "one of the ..." is not a count.
            ("How many reviewers are needed?", "Ask one of the maintainers.", False),
            # A percentage question wants a percentage, not any figure or a date.
            (
                "What sampling percentage should we configure?",
                "Date: 2020-04-08. Sampling ingests millions of messages.",
                False,
            ),
            ("What sampling percentage should we configure?", "Sample 20% of requests.", True),
            # "In which release was X added?" wants a version number, not any mention of X.
            (
                "In which release was zstd decoding first added?",
                "Install the zstd extra to decode zstd responses.",
                False,
            ),
            ("In which release was zstd decoding first added?", "Added in 0.27.0.", True),
        ],
    )
    def test_the_value_asked_for(self, question: str, text: str, answers: bool) -> None:
        wanted = answer_pattern(question)
        assert wanted is not None
        assert _answers(wanted, text, question) is answers

    def test_the_name_of_the_collection_is_not_a_subject(self) -> None:
        assert specificity("playbook") == 0.0


class TestAskersQuantities:
    def test_the_askers_own_quantities_are_not_subjects(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "clients.md": (
                    "# Clients\n\n## Why use a client\n\nA client reuses the underlying TCP "
                    "connection, so many requests to the same host are much faster.\n"
                ),
                "downloads.md": "# Downloads\n\nStream a large file with `client.stream()`.\n",
            },
        )
        config = _config(tmp_path, root)
        for run_id, question in [
            ("q1", "Why are thousands of requests to one host faster through a client?"),
            ("q2", "How do I stream a multi-gigabyte file?"),
        ]:
            _, bundle = _run(config, question, run_id)
            plan = bundle["plan"]
            assert isinstance(plan, list)
            assert plan[0]["gap"] is False, plan[0]


class TestWhenClauses:
    @pytest.mark.parametrize(
        ("question", "asks_a_time"),
        [
            ("When does the office open?", True),
            ("When is the deadline, and how do I apply?", True),
            ("When I bump my version, what gets put in front of the number?", False),
        ],
    )
    def test_an_opening_when_clause_sets_a_condition(
        self, question: str, asks_a_time: bool
    ) -> None:
        wanted = answer_pattern(question)
        assert (wanted is not None and wanted.search("every Monday") is not None) is asks_a_time


class TestWhenToUse:
    @pytest.mark.parametrize(
        "question",
        ["When should I use the Strangler pattern?", "When shouldn't I use a bulkhead?"],
    )
    def test_when_to_use_asks_in_which_cases_not_at_what_time(self, question: str) -> None:
        assert answer_pattern(question) is None

    def test_may_the_verb_is_no_month(self) -> None:
        wanted = answer_pattern("When does the office open?")
        assert wanted is not None
        assert wanted.search("It opens on 3 May.") is not None
        assert wanted.search("This pattern may not be suitable.") is None

    def test_the_cases_it_suits_lead_not_the_cases_it_does_not(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "strangler.md": (
                    "# Strangler pattern\n\nIncrementally migrate a legacy system.\n\n"
                    "## When to use this pattern\n\nThis pattern may not be suitable:\n\n"
                    "- When requests to the back-end system cannot be intercepted.\n"
                    "- For smaller systems where wholesale replacement is simple.\n\n"
                    "Use this pattern when gradually migrating a back-end application.\n"
                ),
            },
        )
        answer, _ = _run(_config(tmp_path, root), "When should I use the Strangler pattern?", "w1")
        assert answer.startswith("Use this pattern when gradually migrating"), answer


class TestPluralAcronyms:
    def test_a_plural_acronym_is_a_kind_of_thing_not_a_name(self) -> None:
        query = Query.from_text("Why not put user IDs into the labels of a GSA metric?")
        assert "id" not in query.names
        assert "gsa" in query.names

    def test_a_passage_without_the_acronym_still_answers(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "observability/metrics.md": (
                    "# Metrics\n\n## Dimension labels\n\n"
                    "Do not use unique strings as the value of a metric label, since labels "
                    "with high cardinality slow the metric system down.\n"
                ),
                "observability/correlation-id.md": (
                    "# Correlation IDs\n\n## Usage\n\n"
                    "Assign each request a correlation ID and put it in every log line.\n"
                ),
            },
        )
        answer, _ = _run(
            _config(tmp_path, root),
            "Why shouldn't we put values like user IDs into metric labels?",
            "a1",
        )
        assert "high cardinality" in answer, answer


class TestCodeAfterAnInstruction:
    def test_a_paragraph_ending_in_what_to_do_carries_the_code_after_it(self) -> None:
        units = split_units(
            "No charset is sent. In this case it's best to set the default encoding on the "
            "client.\n\n```python\nclient = httpx.Client(default_encoding='shift-jis')\n```\n"
        )
        assert "default_encoding='shift-jis'" in units[-1][0], units

    def test_a_description_does_not_carry_the_code_after_it(self) -> None:
        units = split_units(
            "HTTP/2 is a binary format.\n\n```python\nclient = httpx.Client(http2=True)\n```\n"
        )
        assert all("http2=True" not in text for text, _, _ in units), units

    def test_code_that_does_it_answers_a_how_to_question(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "http2.md": (
                    "# HTTP/2\n\n## Enabling HTTP/2\n\n"
                    "HTTP/2 support in the client is not enabled by default, because HTTP/1.1 "
                    "is the more mature transport. The client may enable HTTP/2 by default in "
                    "a future version. Support for HTTP/2 in the client is experimental. The "
                    "HTTP/2 client shares connections. You can do so by installing the "
                    "client's optional HTTP/2 dependencies...\n\n"
                    "```shell\n$ pip install client[http2]\n```\n"
                ),
            },
        )
        answer, _ = _run(_config(tmp_path, root), "How do I get the client to use HTTP/2?", "h1")
        assert "pip install client[http2]" in answer, answer


class TestTheWayNamedAsOne:
    def test_a_how_question_leads_with_the_solution(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "security/secrets.md": (
                    "# Secrets\n\n## Rotation\n\n"
                    "Rotating an application secret can take the application down while it "
                    "restarts with the new secret value. "
                    "A common solution is to keep two versions of the application secret "
                    "valid during rotation.\n"
                ),
            },
        )
        answer, _ = _run(
            _config(tmp_path, root),
            "How can we rotate an application secret without taking the application down?",
            "s1",
        )
        assert answer.startswith("A common solution is to keep two versions"), answer


class TestFollowingParts:
    def test_a_part_about_the_one_before_reads_its_passages(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "reference/storage.md": (
                    "# Storage\n\n## Tools\n\n"
                    "By default, tools are installed in `~/.local/share/tool-home`. "
                    "Set the `TOOL_HOME` environment variable to relocate the directory.\n"
                ),
                "guides/moving.md": (
                    "# Moving a project\n\n## Elsewhere\n\n"
                    "To move a project somewhere else, copy its folder and run `sync` there.\n"
                ),
            },
        )
        first, second = plan_parts(
            "Where do installed tools end up by default, and how do I move them somewhere else?"
        )
        parts = [
            Part(id=1, text=first.text, query=Query.from_text(first.text)),
            Part(id=2, text=second.text, query=Query.from_text(second.text), follows=True),
        ]
        with SectionIndex.open(tmp_path / "index.sqlite") as index:
            index.sync(root, max_chars=1800, overlap_chars=0)
            idf = index.idf({t: f for p in parts for t, f in p.query.forms.items()})
            # One passage per part of its own: the second part's own words find the moving
            # guide; "them" is documented where the first part's answer is, read as well.
            evidence = retrieve_evidence(index, parts, idf, k=1)
        paths = {e.id: e.path for e in evidence}
        assert [paths[i] for i in parts[0].evidence_ids] == ["reference/storage.md"]
        assert [paths[i] for i in parts[1].evidence_ids] == [
            "guides/moving.md",
            "reference/storage.md",
        ]
        assert evidence[0].parts == [1, 2]


class TestTheAskersStory:
    @pytest.mark.parametrize("word", ["colleague", "teammate", "claims"])
    def test_the_people_in_the_story_are_not_the_subject(self, word: str) -> None:
        assert specificity(word) <= 0.2

    def test_an_idioms_nouns_are_phrasing(self) -> None:
        query = Query.from_text(
            "She wants to kick the tires on a database before the server goes quiet."
        )
        assert query.specific[stem("tires")] <= 0.1
        assert query.specific[stem("quiet")] <= 0.1
        assert query.specific[stem("database")] >= 0.5


class TestRetrievalWeighsSpecificity:
    def test_a_rare_everyday_word_does_not_pick_the_passage(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "contributing.md": (
                    "# Contributing\n\n## Testing\n\n"
                    "When you run the test suite, it starts servers on ports 8000 and 8001: "
                    "make sure no other program listens on them.\n\n"
                    "## Proxy setup\n\n"
                    "Feel free to run a local proxy before you run the tests; any local proxy "
                    "will do, free or not.\n"
                ),
                "guide.md": "# Guide\n\n## Clients\n\nA client keeps connections open.\n",
            },
        )
        query = Query.from_text("Which local ports need to be free before I run the test suite?")
        with SectionIndex.open(tmp_path / "index.sqlite") as index:
            index.sync(root, max_chars=1800, overlap_chars=0)
            idf = index.idf(query.forms)
            by_rarity = rank(index, query, k=1, idf=idf)
            by_weight = rank(index, query, k=1, idf=search_weights(idf, query.specific))
        # Rarity alone: "free" and "local", rare here, find the proxy notes.
        assert by_rarity[0].hit.section.heading_path.endswith("Proxy setup")
        assert by_weight[0].hit.section.heading_path.endswith("Testing")


class TestCountsOfWhatIsAsked:
    @pytest.mark.parametrize(
        ("text", "answers"),
        [
            ("Lock the account after 5 failed attempts.", True),
            ("Time of access (e.g., 3 AM login) is a risk signal for login attempts.", False),
            ("Lockout starts at one second and doubles after each failed attempt.", False),
            ("Maximum failed attempts before the lockout (Default: 10).", True),
        ],
    )
    def test_a_how_many_question_wants_a_count_of_its_own_noun(
        self, text: str, answers: bool
    ) -> None:
        question = "After how many failed login attempts should an account be locked?"
        wanted = answer_pattern(question)
        assert wanted is not None
        assert _answers(wanted, text, question) is answers

    def test_a_measure_after_the_noun_is_not_what_is_counted(self) -> None:
        question = "How many bytes long should the salt be?"
        wanted = answer_pattern(question)
        assert wanted is not None
        assert _answers(wanted, "Use a salt of at least 16 bytes.", question)


class TestListsOfDocuments:
    def test_a_folder_the_question_names_is_listed_file_by_file(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "tutorial/parameter-types/index.md": (
                    "# Parameter Types\n\nYou can use several data types for parameters.\n"
                ),
                "tutorial/parameter-types/datetime.md": (
                    "# DateTime\n\nA parameter can be a Python `datetime`.\n"
                ),
                "tutorial/parameter-types/uuid.md": "# UUID\n\nA parameter can be a UUID.\n",
                "tutorial/parameter-types/enum.md": (
                    "# Enum\n\nA parameter can take one value of an `Enum`.\n"
                ),
                "tutorial/options.md": (
                    "# Options\n\nOptions are parameters with a name. Their types are "
                    "str, int, float and bool, special types aside.\n"
                ),
            },
        )
        answer, bundle = _run(
            _config(tmp_path, root),
            "Besides str, int, float and bool, what other special parameter types are there?",
            "l1",
        )
        lines = [line for line in answer.splitlines() if line.startswith("- **")]
        assert [line.split("**")[1] for line in lines] == [
            "Parameter Types", "DateTime", "Enum", "UUID",
        ], answer  # fmt: skip
        plan = bundle["plan"]
        assert isinstance(plan, list)
        assert plan[0]["collection"] is True

    def test_documents_about_the_subject_are_listed_not_every_mention(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        filler = "".join(f"\n## Topic {i}\n\nGeneral advice number {i}.\n" for i in range(6))
        _write(
            root,
            {
                "Laravel_Cheat_Sheet.md": (
                    "# Laravel Cheat Sheet\n\nSecurity tips for Laravel applications.\n\n"
                    "## Mass assignment\n\nPHP models in Laravel guard their fields.\n\n"
                    "## Config\n\nKeep the PHP `APP_DEBUG` setting off.\n"
                ),
                "PHP_Configuration_Cheat_Sheet.md": (
                    "# PHP Configuration Cheat Sheet\n\nHow to configure PHP securely.\n\n"
                    "## php.ini\n\nTurn off PHP error display in production.\n"
                ),
                "Authentication_Cheat_Sheet.md": (
                    "# Authentication Cheat Sheet\n\nHow to authenticate users.\n\n"
                    "## Hashes\n\nCompare hashes with PHP's `password_verify()` or your "
                    "language's equivalent.\n" + filler
                ),
            },
        )
        answer, _ = _run(
            _config(tmp_path, root), "Which cheat sheets are about PHP security?", "l2"
        )
        assert "**Laravel Cheat Sheet**" in answer, answer
        assert "**PHP Configuration Cheat Sheet**" in answer, answer
        assert "Authentication Cheat Sheet" not in answer, answer

    def test_a_folder_of_one_subject_is_not_a_list(self, tmp_path: Path, corpus: Path) -> None:
        _, bundle = _run(
            _config(tmp_path, corpus), "What tram budget does Acme plan for 2030?", "l3"
        )
        plan = bundle["plan"]
        assert isinstance(plan, list)
        assert plan[0]["collection"] is False

    def test_rules_and_tool_boxes_are_not_sentences(self) -> None:
        units = split_units("/// note\n\nUse a UUID.\n\n---\n\nIn Symfony, sessions are managed.\n")
        texts = [text for text, _, _ in units]
        assert "In Symfony, sessions are managed." in texts, texts
        assert not any(t.startswith(("---", "///")) for t in texts), texts


class TestNoPaddingAfterTheValue:
    def test_once_the_value_is_given_a_weaker_sentence_without_one_is_padding(
        self, tmp_path: Path
    ) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "acme/fleet.md": (
                    "# Acme fleet\n\nAt the end of 2024 Acme had 186 electric trucks in daily "
                    "use.\n\nThe 2030 goal is 600 electric trucks.\n"
                ),
                "acme/programme.md": (
                    "# Acme fleet programme\n\nThe programme replaces the diesel trucks of Acme "
                    "with electric trucks.\n"
                ),
                "acme/chargers.md": "# Chargers\n\nAcme runs 40 chargers at two depots.\n",
            },
        )
        answer, _ = _run(
            _config(tmp_path, root),
            "How many electric trucks did Acme have at the end of 2024?",
            "p1",
        )
        body = answer.split("## Sources")[0]
        assert body.startswith("At the end of 2024 Acme had 186 electric trucks"), answer
        assert "The programme replaces" not in body, answer


class TestListsOfHeadings:
    @staticmethod
    def _session_sheet(root: Path) -> None:
        _write(
            root,
            {
                "Session_Cheat_Sheet.md": (
                    "# Session Cheat Sheet\n\nHow to keep session IDs safe.\n\n"
                    "## Session ID length\n\nA session ID must be at least 64 bits long.\n\n"
                    "## Cookies\n\nThe session ID cookie carries several attributes.\n\n"
                    "### Secure Attribute\n\nSend the cookie over encrypted connections only.\n\n"
                    "### HttpOnly Attribute\n\nScripts cannot read a cookie with this attribute "
                    "set.\n\n"
                    "### SameSite Attribute\n\nLimits when the browser sends the cookie.\n\n"
                    "### Domain and Path Attributes\n\nScope the cookie to the host and path "
                    "that need it.\n"
                ),
                "Passwords.md": "# Passwords\n\nStore password hashes, never passwords.\n",
            },
        )

    def test_the_headings_under_the_passages_found_are_the_list(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        self._session_sheet(root)
        answer, bundle = _run(
            _config(tmp_path, root),
            "What cookie attributes should I set for the session ID cookie?",
            "h1",
        )
        listed = re.findall(r"^- \*\*(.+?)\*\*", answer, re.MULTILINE)
        assert listed == [
            "Secure Attribute", "HttpOnly Attribute", "SameSite Attribute",
            "Domain and Path Attributes",
        ], answer  # fmt: skip
        plan = bundle["plan"]
        assert isinstance(plan, list)
        assert [o["heading"] for o in plan[0]["outline"]] == listed

    def test_the_item_the_question_names_beside_the_others_asks_for_the_others(
        self, tmp_path: Path
    ) -> None:
        root = tmp_path / "docs"
        self._session_sheet(root)
        # Naming one attribute "alongside" asks for its siblings, not the list under it.
        answer, _ = _run(
            _config(tmp_path, root),
            "Which cookie attributes get set alongside the Secure Attribute on session cookies?",
            "h6",
        )
        listed = re.findall(r"^- \*\*(.+?)\*\*", answer, re.MULTILINE)
        assert "HttpOnly Attribute" in listed, answer
        assert "SameSite Attribute" in listed, answer

    def test_the_heading_the_question_names_lists_what_is_under_it(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "reference/storage.md": (
                    "# Storage\n\n## Storage directories\n\nThe tool uses the following "
                    "directories for storage, each found through environment variables.\n\n"
                    "### Cache directory\n\nThe cache directory holds disposable data.\n\n"
                    "### Temporary directory\n\nThe temporary directory holds scratch files.\n\n"
                    "### Executable directory\n\nThe executable directory holds installed "
                    "commands.\n\n## Types of data\n\nDownloads and builds are kept apart.\n"
                ),
                "concepts/cache.md": (
                    "# Caching\n\nThe cache can be cleared with a command; the storage it used "
                    "is then freed.\n"
                ),
            },
        )
        answer, _ = _run(
            _config(tmp_path, root), "Which storage directories does the tool use?", "h5"
        )
        listed = re.findall(r"^- \*\*(.+?)\*\*", answer, re.MULTILINE)
        assert listed == ["Cache directory", "Temporary directory", "Executable directory"], answer

    def test_the_passage_under_the_heading_itself_counts_as_found_there(
        self, tmp_path: Path
    ) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "storage.md": (
                    "# Storage\n\n## Directories\n\nThe directories in use.\n\n"
                    "### Cache directory\n\nDisposable data.\n\n"
                    "### Data directory\n\nKept data.\n"
                ),
                "other.md": "# Other\n\nSomething else.\n",
            },
        )
        with SectionIndex.open(tmp_path / "index.sqlite") as index:
            index.sync(root, max_chars=1800, overlap_chars=0)
            hits = {h.section.headings: h for h in index.file_sections("storage.md")}
            (other,) = index.file_sections("other.md")
            # Found: the passage under "Directories" and one of the two headings below it.
            ranked = [
                Ranked(hits[("Directories",)], 1.0, 1.0, frozenset()),
                Ranked(other, 0.9, 0.5, frozenset()),
                Ranked(hits[("Directories", "Cache directory")], 0.8, 0.5, frozenset()),
            ]
            part = Part(id=1, text="Which directories are used?", query=Query.from_text("x"))
            listed = _sibling_list(index, ranked, part)
        assert [name for name, _ in listed] == ["Cache directory", "Data directory"]

    def test_a_heading_the_question_says_is_the_one_item_asked_for(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "using/dependency-selectors.md": (
                    "# Dependency Selectors\n\nSelectors find dependencies in the tree, the "
                    "way CSS selectors find elements of a page.\n\n## Syntax\n\n"
                    "Selectors combine like those of CSS.\n\n"
                    "### Combinators\n\n`>` selects a direct child dependency.\n\n"
                    "### Dependency Type Selectors\n\n"
                    "- `.prod` a dependency from `dependencies`\n"
                    "- `.dev` a dependency from `devDependencies`\n"
                    "- `.peer` a dependency from `peerDependencies`\n\n"
                    "### Pseudo Selectors\n\n- `:not(<selector>)` negates a selector\n"
                    "- `:has(<selector>)` a dependency with matching descendants\n\n"
                    "### Attribute Selectors\n\nThe attribute selectors read `package.json` "
                    "fields of a dependency.\n"
                ),
                "commands/query.md": (
                    "# query\n\nThe query command prints the dependencies that match a "
                    "selector, as JSON.\n"
                ),
            },
        )
        answer, bundle = _run(
            _config(tmp_path, root),
            "Which dependency type selectors can I use to filter how a dependency was declared?",
            "h6",
        )
        for selector in (".prod", ".dev", ".peer"):
            assert f"`{selector}`" in answer, answer
        plan = bundle["plan"]
        assert isinstance(plan, list)
        assert plan[0]["outline"] == [], answer
        # The heading is said word for word, "type" with it, though a search drops "type".
        with SectionIndex.open(tmp_path / "index.sqlite") as index:
            index.sync(root, max_chars=1800, overlap_chars=0)
            query = Query.from_text(
                "Which dependency type selectors can I use to filter how it was declared?"
            )
            assert "type" not in query.terms
            sections = {
                h.section.headings[-1]: h
                for h in index.file_sections("using/dependency-selectors.md")
                if h.section.headings
            }
            idf = index.idf(query.forms)
            assert _heading_named(sections["Dependency Type Selectors"], query, idf)
            assert not _heading_named(sections["Pseudo Selectors"], query, idf)

    def test_headings_that_are_not_the_things_asked_for_are_no_list(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        self._session_sheet(root)
        answer, bundle = _run(
            _config(tmp_path, root),
            "Which browsers do the Secure and HttpOnly cookie attributes work in?",
            "h2",
        )
        plan = bundle["plan"]
        assert isinstance(plan, list)
        assert plan[0]["outline"] == [], answer

    def test_a_question_asking_how_is_no_list(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        self._session_sheet(root)
        _, bundle = _run(
            _config(tmp_path, root),
            "How do I check which cookie attributes are set on the session cookie?",
            "h3",
        )
        plan = bundle["plan"]
        assert isinstance(plan, list)
        assert plan[0]["outline"] == []

    def test_an_underscore_inside_a_heading_is_part_of_the_name(self) -> None:
        sections = split_markdown(
            '# Extensions\n\n## "reason_phrase"\n\nThe reason phrase.\n'
            "\n## _Emphasised_ words\n\nText.\n",
            "ext.md",
        )
        assert [s.headings for s in sections if s.headings] == [
            ('"reason_phrase"',), ("Emphasised words",),
        ]  # fmt: skip

    def test_a_sentence_about_the_section_carries_the_list_it_introduces(
        self, tmp_path: Path
    ) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "design/diagram-types.md": (
                    "# Diagram Types\n\nDiagrams take effort to keep current.\n\n"
                    "## Samples\n\nThis section contains examples for the following design "
                    "diagrams:\n\n"
                    "- [Class Diagrams](./class.md) - design diagrams of the classes, with "
                    "examples\n"
                    "- [Component Diagrams](./component.md) - design diagrams of the parts of a "
                    "system, with examples\n"
                    "- [Sequence Diagrams](./sequence.md) - design diagrams of how the parts "
                    "call each other, with examples\n"
                ),
            },
        )
        answer, _ = _run(
            _config(tmp_path, root),
            "Which kinds of design diagrams does the guide give examples for?",
            "h4",
        )
        # The list comes whole, under the sentence that introduces it.
        assert answer.startswith("This section contains examples"), answer
        for kind in ("Class Diagrams", "Component Diagrams", "Sequence Diagrams"):
            assert kind in answer, answer


class TestWordsThatNameNothing:
    @pytest.mark.parametrize(
        ("british", "american"),
        [("defence", "defense"), ("licences", "licenses"), ("behaviour", "behavior")],
    )
    def test_british_and_american_spellings_are_one_word(self, british: str, american: str) -> None:
        assert stem(british) == stem(american)
        assert american in variants(british)
        assert british in variants(american)

    @pytest.mark.parametrize("british", ["flavour", "colour", "organisation"])
    def test_a_british_spelling_is_no_more_specific_than_the_american(self, british: str) -> None:
        assert specificity(british) == specificity(american(british))

    def test_a_phrasal_verb_is_never_a_decisive_missing_word(self) -> None:
        part = _assessed(
            "How do I crank up verbosity with a repeated flag?",
            "# Counting\n\nA flag that can be repeated counts: `-vvv` gives a verbosity of 3.",
        )
        assert part.decisive == [], part
        assert part.gap is False, part

    def test_a_value_in_a_code_example_is_not_the_value_asked_for(self) -> None:
        question = "How many connection retries does a transport make by default?"
        in_code = _assessed(
            question,
            "# Transports\n\nA transport can retry connections. For example:\n\n"
            "```python\ntransport = httpx.HTTPTransport(retries=1)\n```\n",
        )
        assert in_code.gap is True, in_code
        stated = _assessed(
            question,
            "# Transports\n\nBy default a transport makes 3 connection retries.\n",
        )
        assert stated.gap is False, stated

    def test_the_askers_placeholder_package_is_not_a_missing_name(self) -> None:
        part = _assessed(
            "Why does TAB completion not work with `python -m mypkg`?",
            "# Completion\n\nTAB completion does not work with `python -m`: completion is "
            "installed for a program name.",
        )
        assert part.decisive == [], part
        assert part.gap is False, part

    def test_the_equivalent_in_another_tool_asks_what_the_part_before_asked(self) -> None:
        query = Query.from_text("And the Yarn equivalent?", extra=["lockfile", "install"])
        assert query.terms == ("yarn", "lockfil", "instal")


def _passage(number: int, text: str, *, title: str, path: str = "docs/page.md") -> Evidence:
    """A section passage as the gap check reads it."""
    return Evidence(
        id=number,
        kind="section",
        text=text,
        score=1.0,
        path=path,
        title=title,
        heading_path="",
        line_start=1,
        line_end=3,
        stems=frozenset(stems(f"{title} {text}")),
    )


def _assessed(question: str, document: str, weights: dict[str, float] | None = None) -> Part:
    """One part of ``question`` after the gap check, with ``document`` as its only passage
    (every term weighing 2.0 in the corpus, unless ``weights`` says otherwise)."""
    query = Query.from_text(question)
    evidence = _passage(1, document, title=document.splitlines()[0].lstrip("# "))
    part = Part(id=1, text=question, query=query, evidence_ids=[1])
    idf = dict.fromkeys(query.terms, 2.0) | (weights or {})
    assess_gaps([part], [evidence], idf, unknown=set(query.terms) - evidence.stems)
    return part


class TestTutorialPages:
    def test_an_include_line_is_never_part_of_the_answer(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "tutorial/exit.md": (
                    "# Exit\n\n## Exit code\n\n"
                    "{* docs_src/program_exit_code/tutorial002_py310.py hl[9] *}\n\n"
                    "{* docs_src/program_exit_code/tutorial003_py310.py hl[12] *}\n\n"
                    "::: typer.Exit program exit code 2\n\n"
                    '{% image "_img/exit-code-2.png" "program exit code" %}\n\n'
                    "The program ends with exit code 0 unless you pass another code.\n"
                ),
            },
        )
        answer, _ = _run(_config(tmp_path, root), "What exit code does the program end with?", "t1")
        assert "{*" not in answer, answer
        assert ":::" not in answer, answer
        assert "{%" not in answer, answer
        assert answer.startswith("The program ends with exit code 0"), answer

    def test_a_console_session_after_check_it_is_not_the_lead(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "tutorial/callback.md": (
                    "# Callback\n\n## Without a subcommand\n\n"
                    "Check it:\n\n```console\n$ python main.py\n// Run the callback when "
                    "no subcommand is given\nRunning the callback without a subcommand\n```\n\n"
                    "Set `invoke_without_command=True` to run the callback anyway.\n"
                ),
            },
        )
        answer, _ = _run(
            _config(tmp_path, root),
            "How do I run the callback when no subcommand is given?",
            "t2",
        )
        assert answer.startswith("Set `invoke_without_command=True`"), answer

    def test_a_question_about_what_happens_without_a_value_leads_with_the_default(
        self, tmp_path: Path
    ) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "tutorial/exit.md": (
                    "# Exit\n\n## Exit code\n\n"
                    "You can pass an exit code other than 1 to report an error to the terminal "
                    "when the program ends. By default, the exit code is 0.\n"
                ),
            },
        )
        answer, _ = _run(
            _config(tmp_path, root),
            "If I exit without passing a code, what exit code does the program end with?",
            "t3",
        )
        assert answer.startswith("By default, the exit code is 0"), answer


class TestGapWording:
    def test_everyday_words_are_never_named_as_missing(self) -> None:
        part = _assessed(
            "How long does a feasibility study usually take?",
            "# Feasibility studies\n\nA feasibility study ends with a report and a "
            "recommendation on next steps.",
        )
        assert part.gap is True, part
        assert part.missing == [], part
        assert gap_sentence(part) == (
            "The documents do not answer this: “How long does a feasibility study usually take?”."
        )


class TestBorrowedWords:
    def test_a_following_part_searches_with_its_own_words_first(self) -> None:
        _, second = plan_parts(
            "Which variable turns Rich off, and which one makes it print the plain traceback?"
        )
        assert "rich" in second.context
        part = Part(
            id=2,
            text=second.text,
            query=Query.from_text(second.text, extra=second.context),
            follows=True,
        )
        weights = _own_weights(part, dict.fromkeys(part.query.terms, 2.0))
        assert weights["rich"] == 1.0
        assert weights[stem("traceback")] == 2.0


class TestYesOrNo:
    def test_a_yes_or_no_question_gets_the_sentence_that_decides_it(self, tmp_path: Path) -> None:
        # On npm's own docs (benchmarks/corpora/npm, dev question npm-25): "will never result
        # in new modules being installed" is what answers "can it ever ...?".
        root = Path(__file__).resolve().parents[2] / "benchmarks" / "corpora" / "npm" / "docs"
        answer, _ = _run(
            _config(tmp_path, root),
            "What does npm find-dupes actually do, and can npm dedupe ever end up installing "
            "new modules?",
            "y1",
        )
        assert "will never result in new modules being installed" in answer, answer

    def test_the_askers_example_url_is_not_searched_for(self) -> None:
        query = Query.from_text(
            "Which argument lets me call /users and have it go to https://api.example.com/users?"
        )
        assert query.specific[stem("api")] <= 0.1
        assert query.specific[stem("argument")] > 0.1


class TestNestedLists:
    def test_an_item_is_read_with_the_items_nested_under_it(self) -> None:
        units = split_units(
            "* HTTPError\n    * TransportError\n        * NetworkError\n"
            "            * ConnectError\n            * ReadError\n"
            "        * ProtocolError\n    * DecodingError\n"
        )
        texts = [text for text, _, _ in units]
        assert "NetworkError:\n- ConnectError\n- ReadError" in texts, texts
        # Its own children only: the grandchildren stay with their parent.
        assert "HTTPError:\n- TransportError\n- DecodingError" in texts, texts
        assert "ConnectError" in texts, texts


class TestHeadingsOfTheKindAsked:
    @pytest.fixture
    def root(self, tmp_path: Path) -> Path:
        root = tmp_path / "docs"
        page = (
            "# {name} Pattern\n\n## Also known as\n\n* {alias}\n\n"
            "## Intent of the {name} Pattern\n\nThe {name} pattern {intent}.\n\n"
            "## Benefits and Trade-offs of the {name} Pattern\n\n"
            "### Benefits\n\n* {benefit}\n\n### Trade-offs\n\n* {cost}\n"
        )
        _write(
            root,
            {
                "bridge/README.md": page.format(
                    name="Bridge",
                    alias="Handle/Body",
                    intent="decouples an abstraction from its implementation in Java",
                    benefit="Abstraction and implementation vary independently.",
                    cost="More classes and indirection to follow.",
                ),
                "locking/README.md": page.format(
                    name="Double-Checked Locking",
                    alias="Lock hint",
                    intent="reduces the overhead of acquiring a lock in Java",
                    benefit="Less locking once the object exists.",
                    cost="Memory visibility issues unless the field is volatile.",
                ),
            },
        )
        return root

    @pytest.mark.parametrize(
        ("question", "fact"),
        [
            ("What's the other name the catalogue gives for the Bridge pattern?", "Handle/Body"),
            ("Why is double-checked locking fragile, what can go wrong with it?", "volatile"),
        ],
    )
    def test_the_section_whose_heading_names_what_is_asked_answers(
        self, tmp_path: Path, root: Path, question: str, fact: str
    ) -> None:
        answer, _ = _run(_config(tmp_path, root), question, "h1")
        body, sources = answer.split("## Sources")
        assert fact in body.split("\n\n")[0], answer
        # The section under that heading is the best evidence, cited first.
        assert ("Also known as" if fact == "Handle/Body" else "Trade-offs") in sources.split(
            "\n- [2]"
        )[0]

    @pytest.mark.parametrize(
        ("question", "asks"),
        [
            ("Why is thread-local storage risky with pooled threads?", True),
            ("What are the downsides of the Bridge pattern?", True),
            ("When should I use a bridge?", True),
            ("Does it have an alias?", True),
            # "low-risk" says what kind of app, not that the drawbacks are asked for.
            ("What idle timeouts suit high-value apps versus low-risk ones?", False),
            ("How does the SameSite attribute reduce CSRF risk?", False),
            ("How do I take advantage of HTTP/2?", False),
            ("What are the risks of caching tokens?", True),
            ("What does the Bridge pattern decouple?", False),
            ("What should I consider before sharding my data store?", True),
            ("Any considerations for caching static data?", True),
            ("What does the Cache-Aside pattern assume about the data store?", True),
            ("Do you consider SQLite a server database?", False),
            ("What problem does the Claim Check pattern solve?", True),
            ("What problem did you hit?", False),
        ],
    )
    def test_what_kind_of_content_a_question_asks_for(self, question: str, asks: bool) -> None:
        assert bool(asked_facets(question)) is asks

    def test_what_to_consider_is_answered_under_considerations(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "sharding.md": (
                    "# Sharding pattern\n\nDivide a data store into horizontal partitions.\n\n"
                    "## Solution\n\nDivide the data store into shards. Each shard holds "
                    "a subset of the data store's rows.\n\n"
                    "## Issues and considerations\n\n* Rebalancing shards is expensive: "
                    "plan the shard key so that shards stay even.\n"
                ),
            },
        )
        answer, _ = _run(
            _config(tmp_path, root), "What should I consider before sharding a data store?", "c1"
        )
        assert answer.startswith("Rebalancing shards is expensive"), answer


class TestDefinitions:
    @pytest.fixture
    def root(self, tmp_path: Path) -> Path:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "sidecar.md": (
                    "# Sidecar pattern\n\nDeploy components of an application into a "
                    "separate process or container to provide isolation.\n\n"
                    "This pattern is named Sidecar because it resembles a sidecar attached to "
                    "a motorcycle. The sidecar pattern is sometimes called the sidekick "
                    "pattern.\n\n## Solution\n\nCo-locate a cohesive set of tasks with "
                    "the primary application.\n"
                ),
                "gatekeeper.md": (
                    "# Gatekeeper pattern\n\nProtect services with a dedicated host.\n\n"
                    "## Related patterns\n\nThe [Sidecar pattern](./sidecar.md) might "
                    "also be relevant.\n"
                ),
            },
        )
        return root

    @pytest.mark.parametrize(
        "question", ["What is the Sidecar pattern?", "what's the sidecar pattern about?"]
    )
    def test_asked_what_a_thing_is_the_opening_of_its_page_leads(
        self, tmp_path: Path, root: Path, question: str
    ) -> None:
        answer, _ = _run(_config(tmp_path, root), question, "d1")
        assert answer.startswith("Deploy components of an application"), answer

    def test_a_longer_question_is_no_definition(self, tmp_path: Path, root: Path) -> None:
        answer, _ = _run(
            _config(tmp_path, root), "What is the Sidecar pattern named after, and why?", "d2"
        )
        assert not answer.startswith("Deploy components"), answer


class TestFrontMatterLabels:
    @staticmethod
    def _page(title: str, category: str, tags: list[str], text: str) -> str:
        tag_lines = "".join(f"  - {t}\n" for t in tags)
        return (
            f"---\ntitle: {title}\ncategory: {category}\ntag:\n{tag_lines}tags:\n{tag_lines}---\n\n"
            f"## Intent\n\n{text}\n"
        )

    @classmethod
    def _catalogue(cls, root: Path, pages: dict[str, tuple[str, str, str]]) -> None:
        """One page per folder: (title, category, opening text), each tagged "Java"."""
        _write(
            root,
            {
                f"{folder}/README.md": cls._page(title, category, ["Java"], text)
                for folder, (title, category, text) in pages.items()
            },
        )

    def test_labels_are_the_category_and_tags_of_the_front_matter(self) -> None:
        page = self._page("Retry", "Resilience", ["Fault tolerance", "Performance"], "Retry.")
        sections = split_markdown(page, "retry/README.md")
        assert sections[0].labels == (
            "category: Resilience",
            "tag: Fault tolerance",
            "tag: Performance",
        )
        # Tags in one string, a capitalised key, a date: as site generators read them.
        page = "---\nCategory: Guides\ntags: php, security\ndate: 2024-01-02\n---\n\nText.\n"
        assert split_markdown(page, "a.md")[0].labels == (
            "category: Guides",
            "tag: php",
            "tag: security",
        )

    def test_a_list_of_documents_in_a_category_lists_exactly_that_category(
        self, tmp_path: Path
    ) -> None:
        root = tmp_path / "docs"
        pages = {
            "retry": ("Retry Pattern", "Resilience", "Call again after a failure."),
            "circuit-breaker": (
                "Circuit Breaker Pattern",
                "Resilience",
                "Stop calling a sick service.",
            ),
            "bulkhead": ("Bulkhead Pattern", "Resilience", "Partition resources per consumer."),
            "singleton": ("Singleton Pattern", "Creational", "One instance of a class."),
            "builder": ("Builder Pattern", "Creational", "Build complex objects step by step."),
        }
        self._catalogue(root, pages)
        config = _config(tmp_path, root)
        answer, bundle = _run(config, "Which patterns fall under the Resilience category?", "l1")
        cited = {e["path"] for e in bundle["evidence"]}  # type: ignore[attr-defined]
        assert {"retry/README.md", "circuit-breaker/README.md", "bulkhead/README.md"} <= cited
        for title in ("Retry Pattern", "Circuit Breaker Pattern", "Bulkhead Pattern"):
            assert title in answer
        assert "Singleton" not in answer
        assert "Builder" not in answer

        # A label spelled another way is the same label.
        (root / "bulkhead/README.md").write_text(
            self._page("Bulkhead Pattern", "resilience", ["Java"], "Partition resources.")
        )
        answer, _ = _run(config, "Which patterns fall under the Resilience category?", "l3")
        assert "Bulkhead Pattern" in answer

        # The labels follow the files: a page moved to another category leaves the list.
        (root / "bulkhead/README.md").write_text(
            self._page("Bulkhead Pattern", "Structural", ["Java"], "Partition resources.")
        )
        answer, _ = _run(config, "Which patterns fall under the Resilience category?", "l2")
        assert "Retry Pattern" in answer
        assert "Bulkhead" not in answer

    def test_a_label_is_not_the_list_when_the_question_asks_more_or_every_page_has_it(
        self, tmp_path: Path
    ) -> None:
        root = tmp_path / "docs"
        pages = {
            "retry": ("Retry Guide", "Guides", "Call again after a failure of the service."),
            "breaker": ("Circuit Breaker Guide", "Guides", "Stop calling after a failure."),
            "singleton": ("Singleton Guide", "Guides", "One instance of a class."),
            "builder": ("Builder Reference", "Reference", "Build objects step by step."),
            "factory": ("Factory Reference", "Reference", "Create objects by kind."),
        }
        self._catalogue(root, pages)
        config = _config(tmp_path, root)
        # "failures" is a subject of the question's own: not every guide answers it.
        answer, _ = _run(config, "Which guides cover failures?", "m1")
        assert "Singleton" not in answer
        # A tag every page carries sorts nothing out; a label with a subject beside it is
        # not the whole question.
        with SectionIndex.open(index_path_for(config.index_root, root)) as index:
            for question in ("Which Java documents are there?", "Which guides cover failures?"):
                part = Part(id=1, text=question, query=Query.from_text(question))
                assert _labelled(index, part) == [], question
            part = Part(id=1, text="Which guides are there?", query=Query.from_text("guides"))
            assert len(_labelled(index, part)) == 3


class TestKindOfAnswerAsked:
    def test_the_kind_of_thing_asked_for_need_not_be_said_by_the_passage(self) -> None:
        question = "Which Relationship() parameter sets up the many-to-many between Hero and Team?"
        query = Query.from_text(question)
        document = (
            "Pass `link_model=HeroTeamLink` to Relationship() on Hero and on Team; "
            "it sets up both sides."
        )
        passage = Evidence(
            id=1,
            kind="section",
            text=document,
            score=1.0,
            path="tutorial/many-to-many.md",
            stems=frozenset(stems(document)),
        )
        part = Part(id=1, text=question, query=query, evidence_ids=[1])
        assert asked_kind(question) == stem("parameter")
        assert stem("parameter") not in passage.stems
        # "parameter" weighs most of what is asked about the named things, and the passage
        # answers with one ("link_model=") without saying the word.
        idf = {**dict.fromkeys(query.terms, 2.0), stem("parameter"): 5.0}
        assess_gaps([part], [passage], idf, set())
        assert part.gap is False, part


class TestValueAskedInTheAskingSentence:
    def test_a_when_clause_in_the_scene_asks_for_no_time(self) -> None:
        # The scene ("when someone passes --quiet first ...") is not a question about a
        # time; the asking sentence ("Why does that happen?") wants a reason.
        part = _assessed(
            "when someone passes --quiet first its validation callback fires and errors "
            "before the banner is shown. Why does that happen",
            "# Eager options\n\nA validation callback fires in the order the options are "
            "passed, so the --quiet callback errors before the banner is shown.\n",
        )
        assert part.typed_coverage == 1.0
        assert not part.gap


class TestValueAmongTheQuestionsWords:
    def test_a_value_beside_nearly_all_the_covered_words_answers_a_wordy_question(
        self,
    ) -> None:
        # "long" weighs much and no passage says it; "tenant" is only in a sentence far from
        # the value. The value's sentences cover less than half the question, and nearly
        # all that the passage covers.
        part = _assessed(
            "How long does the cache keep an entry for a tenant",
            "# Cache\n\nThe cache keeps an entry for ten minutes.\n\nPools are separate.\n\n"
            "Logs are kept.\n\nEach tenant has its own pool.\n",
            {"long": 30.0, "tenant": 0.3},
        )
        assert part.coverage >= 0.5
        assert 0.9 * part.coverage <= part.typed_coverage < 0.5
        assert not part.gap

    def test_a_value_near_the_few_words_of_a_poorly_covered_question_is_no_answer(self) -> None:
        # One word no document uses ("compensation") is not what makes this a gap (it may
        # be the asker's word); the passage covering a third of the question is.
        part = _assessed(
            "How long can a chapter run in the saga before compensation",
            "# Saga\n\nThe saga runs each chapter for at most 2 seconds.\n",
            {"compens": 6.0},
        )
        assert part.typed_coverage == part.coverage < 0.5
        assert part.gap


class TestFollowingPartsAnswerFromTheFirstPassage:
    def test_the_answer_beside_the_first_parts_is_read_for_a_part_in_other_words(
        self, tmp_path: Path
    ) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "reference/storage.md": (
                    "# Storage\n\n## Tools\n\n"
                    "By default, tools are installed in `~/.local/share/tool-home`.\n\n"
                    "Use `tool dir` to show the tool installation directory.\n\n"
                    "Use the `TOOL_HOME` environment variable to configure the installation "
                    "directory.\n"
                ),
                "guides/cooldown.md": (
                    "# Cooldown\n\n## Moving versions\n\n"
                    "Tags can be moved across commits, so pin a digest somewhere else.\n"
                ),
            },
        )
        answer, _ = _run(
            _config(tmp_path, root),
            "Where do installed tools end up on disk by default, and how do I move them "
            "somewhere else?",
            "f1",
        )
        second = answer.split("**how do I move them somewhere else?**", 1)[1]
        assert "TOOL_HOME" in second.split("## Sources")[0], answer


class TestAdverbs:
    @pytest.mark.parametrize(
        ("adverb", "adjective"),
        [
            ("irregularly", "irregular"),
            ("manually", "manual"),
            ("automatically", "automatic"),
            ("critically", "critical"),
            ("easily", "easy"),
            ("reliably", "reliable"),
        ],
    )
    def test_an_adverb_stems_as_its_adjective(self, adverb: str, adjective: str) -> None:
        assert stem(adverb) == stem(adjective)
        assert adverb in variants(adjective)  # the full-text query finds either

    @pytest.mark.parametrize("word", ["assembly", "only", "family", "supply", "likely", "daily"])
    def test_a_word_that_only_ends_in_ly_is_left_alone(self, word: str) -> None:
        assert adjective(word) == word
        assert variants(word) == [word]

    def test_the_adverb_in_the_question_is_covered_by_the_adjective_in_the_passage(
        self,
    ) -> None:
        part = _assessed(
            "how do I advance the progress bar when I process things irregularly",
            "# Progress bar\n\nTo advance the progress bar by irregular steps as you process "
            "things, call `.update()` with the number of items.\n",
        )
        assert part.absent == []
        assert part.coverage == 1.0


class TestDocfxAndGithubMarkers:
    def test_include_lines_and_alert_markers_say_nothing(self) -> None:
        units = split_units(
            "[!INCLUDE [header](../_includes/header.md)]\n\n"
            "Enable several consumers to process messages from one channel.\n\n"
            "> [!NOTE]\n> Queues keep messages until a consumer takes them.\n\n"
            "{* docs_src/consumers/tutorial001_py310.py hl[9] *}\n"
        )
        assert [text for text, _, _ in units] == [
            "Enable several consumers to process messages from one channel.",
            "Queues keep messages until a consumer takes them.",
        ]


class TestImages:
    def test_an_image_line_is_no_sentence(self) -> None:
        units = split_units(
            "Load data on demand into a cache.\n\n"
            "![Using the Cache-Aside pattern](./_images/cache-aside-diagram.png)\n\n"
            "[![Build](https://example.com/badge.svg)](https://example.com/ci)\n\n"
            "The ![icon](icon.png) inline image stays in its sentence.\n"
        )
        assert [text for text, _, _ in units] == [
            "Load data on demand into a cache.",
            "The ![icon](icon.png) inline image stays in its sentence.",
        ]


class TestHubPages:
    def test_a_page_the_question_names_lists_the_pages_it_links_to(self, tmp_path: Path) -> None:
        # "Messaging patterns" links to its patterns in a table; the pattern pages that say
        # "message" most are not the list (one of them is not in the category at all).
        patterns = {
            "claim-check": ("Claim Check", "Split a large message into a claim check."),
            "priority-queue": ("Priority Queue", "Prioritize requests sent to services."),
            "pipes-and-filters": ("Pipes and Filters", "Break a task into reusable steps."),
            "retry": ("Retry", "Retry a failed message, message after message, messaging."),
        }
        files = {
            f"{name}.md": f"# {title} pattern\n\n{opening}\n\n## Context\n\nMore text.\n"
            for name, (title, opening) in patterns.items()
        }
        files["category/messaging.md"] = (
            "# Messaging patterns\n\nCloud applications need a messaging infrastructure.\n\n"
            "| Pattern | Summary |\n| --- | --- |\n"
            "| [Claim Check](../claim-check.md) | Split a large message. |\n"
            "| [Priority Queue](../priority-queue.md) | Prioritize requests. |\n"
            "| [Pipes and Filters](../pipes-and-filters.md) | Reusable steps. |\n"
            "| [Azure docs](https://example.com/azure) | Elsewhere. |\n"
        )
        root = tmp_path / "docs"
        _write(root, files)
        answer, bundle = _run(_config(tmp_path, root), "which patterns are about messaging?", "h1")
        listed = re.findall(r"^- \*\*(.+?)\*\*", answer.split("## Sources")[0], re.M)
        assert listed == [
            "Messaging patterns",
            "Claim Check pattern",
            "Priority Queue pattern",
            "Pipes and Filters pattern",
        ], answer
        evidence = bundle["evidence"]
        assert isinstance(evidence, list)
        assert evidence[0]["path"] == "category/messaging.md"

    @pytest.mark.parametrize("title", ["Catalogue", "Patterns"])
    def test_a_page_whose_title_the_question_does_not_say_is_no_hub(
        self, tmp_path: Path, title: str
    ) -> None:
        # "Patterns" is the kind of document asked for, not what they are about: as a hub
        # it would list every pattern it links to, whatever the question's subject.
        files = {
            f"{name}.md": f"# {name.title()} pattern\n\nAbout {name} and messages.\n"
            for name in ("queue", "topic", "relay")
        }
        files["cache.md"] = "# Cache pattern\n\nKeep data close to where it is read.\n"
        files["index.md"] = f"# {title}\n\n" + "".join(
            f"- [{n}](./{n}.md)\n" for n in ("cache", "queue", "topic", "relay")
        )
        root = tmp_path / "docs"
        _write(root, files)
        answer, _ = _run(_config(tmp_path, root), "which patterns are about messages?", "h2")
        listed = re.findall(r"^- \*\*(.+?)\*\*", answer.split("## Sources")[0], re.M)
        # The pages that match, best first; the catalogue is not the list that introduces them.
        assert listed[0] != title, answer
        assert {"Queue pattern", "Topic pattern", "Relay pattern"} <= set(listed), answer


class TestCountedInTimes:
    def test_n_times_counts_the_attempts_its_sentence_speaks_of(self) -> None:
        question = "after how many failed attempts does the loop treat the exception as lasting?"
        wanted = answer_pattern(question, identifiers=False)
        assert wanted is not None
        assert _answers(
            wanted,
            "The loop tracks the number of times the operation has been attempted, and if "
            "the code fails three times the exception is assumed to be lasting.",
            question,
        )
        # "three times as long" in a sentence about something else counts no attempts.
        assert not _answers(wanted, "The loop then waits three times as long.", question)


class TestTheStoryIsTheAskersWords:
    def test_a_word_only_the_story_uses_is_not_what_the_passages_lack(self) -> None:
        # "What do I pass?" says little: the story carries the subject, in the asker's words
        # ("quick", "server"), which the documents say otherwise.
        scene = (
            "For a quick local test I am hitting a server whose certificate has expired, and "
            "I just want the client to stop complaining."
        )
        question = f"{scene} What do I pass?"
        text = "To disable certificate verification for a local test, pass `verify=False`."
        evidence = _passage(1, text, title="SSL", path="docs/ssl.md")
        query = Query.from_text(question)
        part = Part(id=1, text=question, query=query, evidence_ids=[1], scene=scene)
        idf = dict.fromkeys(query.terms, 2.0) | {"quick": 6.0, "server": 6.0}
        assess_gaps([part], [evidence], idf, unknown=set())
        assert part.coverage < 0.5
        assert not part.gap, part.missing


class TestWhatIsAskedOfANamedSubject:
    def test_a_verb_the_passage_does_not_use_leaves_nothing_unsaid(self) -> None:
        part = _assessed(
            "Which class does the Thread-Specific Storage example rely on for its UserContext?",
            "# Thread-Specific Storage\n\nThe Thread-Specific Storage example keeps each "
            "UserContext in a ThreadLocal class.\n",
        )
        assert not part.gap, part.missing

    def test_a_noun_the_passage_does_not_use_is_what_it_leaves_unsaid(self) -> None:
        part = _assessed(
            "What is the Ostervale Dairy water consumption target of Verdant?",
            "# Verdant at Ostervale Dairy\n\nVerdant runs the Ostervale Dairy site with a "
            "staff of forty and two milking halls.\n",
        )
        assert part.gap


class TestValueFurtherDown:
    def test_the_value_may_sit_below_the_passages_that_cover_the_question_best(self) -> None:
        question = "What is the minimum Typer version that supports Annotated?"
        query = Query.from_text(question)
        texts = [f"Typer supports Annotated parameters in form {n}." for n in "abcdef"]
        texts.append("Typer added support for Annotated in version 0.9.0.")

        evidence = [
            _passage(n, text, title="Annotated", path=f"docs/page{n}.md")
            for n, text in enumerate(texts, start=1)
        ]
        part = Part(id=1, text=question, query=query, evidence_ids=[e.id for e in evidence])
        assess_gaps([part], evidence, dict.fromkeys(query.terms, 2.0), unknown=set())
        assert part.typed_coverage >= 0.5
        assert not part.gap, part.missing


class TestDocumentsNamedInSentences:
    def test_a_sentence_answering_which_patterns_says_which_pattern(self, tmp_path: Path) -> None:
        # Neither page is about memory throughout, so no list of documents is made; the
        # sentences answer, each led by the title of its page.
        def page(title: str, memory: str) -> str:
            return (
                f"# {title}: a pattern page\n\n## Intent\n\nThe intent is to organise code.\n\n"
                "## Structure\n\nClasses and interfaces.\n\n## Example\n\nA small example.\n\n"
                f"## Benefits\n\n{memory}\n\n## Related\n\nOther patterns.\n"
            )

        root = tmp_path / "docs"
        _write(
            root,
            {
                "lazy.md": page(
                    "Lazy Loading Pattern", "Reduces memory usage by creating objects on use."
                ),
                "flyweight.md": page(
                    "Flyweight Pattern", "Sharing state between objects reduces memory usage."
                ),
                "visitor.md": page("Visitor Pattern", "Adds operations without changing types."),
            },
        )
        answer, _ = _run(_config(tmp_path, root), "Which patterns reduce memory usage?", "n1")
        body = answer.split("## Sources")[0]
        assert "**Lazy Loading Pattern**: Reduces memory usage" in body, answer
        assert "**Flyweight Pattern**: Sharing state" in body, answer


class TestReviewOfTheSeventhRound:
    """Over-reach a review found in the round's rules, each pinned."""

    def test_a_value_of_the_pages_subject_is_no_definition(self, tmp_path: Path) -> None:
        root = tmp_path / "docs"
        _write(
            root,
            {
                "vacation.md": (
                    "# Vacation\n\nThis page describes how vacation time is requested and "
                    "approved.\n\n## Allowance\n\nEvery full-time employee receives 25 "
                    "vacation days per year as their allowance.\n"
                ),
            },
        )
        answer, _ = _run(_config(tmp_path, root), "What is the vacation allowance?", "v1")
        assert answer.startswith("Every full-time employee receives 25"), answer

    def test_a_yes_or_no_question_stands_on_its_predicate(self) -> None:
        part = _assessed(
            "Is the Strangler pattern deprecated?",
            "# Strangler pattern\n\nIncrementally migrate a legacy system by replacing "
            "pieces of functionality with new applications and services.\n",
            {"pattern": 0.0},  # a catalogue: every page says "pattern"
        )
        assert part.gap

    def test_an_abbreviation_does_not_end_the_asking_sentence(self) -> None:
        question = "How many vacation days does an employee get per year, e.g. in year one?"
        assert asked_sentence(question) == question
        assert answer_pattern(question) is not None

    @pytest.mark.parametrize(
        ("question", "asks_a_time"),
        [
            ("When should I apply for parental leave?", True),
            ("When can I use my remaining vacation days?", True),
            ("When should I use the Strangler pattern?", False),
        ],
    )
    def test_when_to_apply_for_leave_asks_a_time(self, question: str, asks_a_time: bool) -> None:
        assert (answer_pattern(question) is not None) is asks_a_time

    @pytest.mark.parametrize(
        ("text", "a_time"),
        [
            ("Open enrollment closes at the end of May.", True),
            ("It closes on 3 May 2024.", True),
            ("Python 3 may not be supported.", False),
            ("Between 1 and 5 may be late.", False),
        ],
    )
    def test_may_is_the_month_beside_a_date_or_a_preposition(self, text: str, a_time: bool) -> None:
        wanted = answer_pattern("When does open enrollment close?")
        assert wanted is not None
        assert (wanted.search(text) is not None) is a_time

    @pytest.mark.parametrize(("word", "other"), [("plotly", "plot"), ("really", "real")])
    def test_a_name_or_a_shifted_adverb_keeps_its_own_stem(self, word: str, other: str) -> None:
        assert stem(word) != stem(other)

    def test_assuming_a_premise_asks_for_no_assumptions(self) -> None:
        assert asked_facets("Assuming I have Python installed, how do I install FastAPI?") == []
        assert asked_facets("What does the Cache-Aside pattern assume?") != []

    def test_a_hub_is_no_answer_when_the_question_asks_for_part_of_its_list(
        self, tmp_path: Path
    ) -> None:
        files = {
            f"{name}.md": f"# {title} pattern\n\n{opening}\n"
            for name, title, opening in (
                ("claim-check", "Claim Check", "Split a large message into a claim check."),
                ("priority-queue", "Priority Queue", "Use a queue to prioritize requests."),
                ("pipes", "Pipes and Filters", "Break a message task into reusable steps."),
            )
        }
        files["category/messaging.md"] = (
            "# Messaging patterns\n\nCloud applications need a messaging infrastructure.\n\n"
            "| Pattern | Summary |\n| --- | --- |\n"
            "| [Claim Check](../claim-check.md) | Split a large message. |\n"
            "| [Pipes and Filters](../pipes.md) | Reusable steps. |\n"
            "| [Priority Queue](../priority-queue.md) | Prioritize requests with a queue. |\n"
        )
        root = tmp_path / "docs"
        _write(root, files)
        answer, _ = _run(
            _config(tmp_path, root),
            "Which patterns about messaging use a queue to prioritize requests?",
            "h3",
        )
        assert not answer.startswith("- **Messaging patterns**"), answer
