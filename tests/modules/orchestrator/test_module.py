"""run_pipeline end to end over real folders: artifacts, events, citations, gaps, SQL, stop."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from app.config import AppConfig
from app.modules.evidence import cited_ids
from app.modules.orchestrator.module import PipelineError, PipelineResult, run_pipeline

ANSWERABLE = "How many battery-electric trucks did Northwind have at the end of 2024?"
UNANSWERABLE = "How many electric ferries does Verdant Foods Cooperative operate?"


def _bundle(result: PipelineResult) -> dict[str, Any]:
    assert result.context_bundle_path is not None
    data: dict[str, Any] = json.loads(result.context_bundle_path.read_text())
    return data


def _final(result: PipelineResult) -> str:
    assert result.final_output_path is not None
    return result.final_output_path.read_text()


class TestArtifacts:
    def test_a_run_writes_answer_bundle_and_log(self, config: AppConfig) -> None:
        result = run_pipeline(config, ANSWERABLE, "run-a")

        run_dir = config.output_root / "run-a"
        assert result.status == "completed"
        assert result.finish_reason == "answered"
        assert result.final_output_path == run_dir / "final.md"
        assert "186 battery-electric trucks" in _final(result)
        bundle = _bundle(result)
        assert bundle["question"] == ANSWERABLE
        assert bundle["evidence"][0]["path"].startswith("northwind/")
        assert set(bundle["evidence"][0]) >= {
            "id",
            "kind",
            "path",
            "heading_path",
            "line_start",
            "line_end",
            "score",
            "text",
        }
        run = json.loads((run_dir / "run.json").read_text())
        assert run["outcome"] == {"status": "completed", "finish_reason": "answered", "error": None}
        assert [s["name"] for s in run["steps"]] == [
            "load_documents",
            "plan",
            "retrieve",
            "write",
            "check",
            "save",
        ]
        assert all(s["status"] == "ok" and s["seconds"] >= 0 for s in run["steps"])
        assert run["engine"]["provider"] == "extractive"
        assert run["counts"]["evidence"] == len(bundle["evidence"])
        assert "llm_api_key" not in run["config"]
        assert not (run_dir / "llm_payloads.jsonl").exists()

    def test_evidence_lines_point_at_the_quoted_text(self, config: AppConfig) -> None:
        bundle = _bundle(run_pipeline(config, ANSWERABLE, "run-lines"))
        for item in bundle["evidence"]:
            source = (config.base_dir / "documents" / item["path"]).read_text().splitlines()
            quoted = "\n".join(source[item["line_start"] - 1 : item["line_end"]])
            assert item["text"].splitlines()[0].strip() in quoted

    def test_events_report_every_stage_and_the_answer_in_pieces(self, config: AppConfig) -> None:
        events: list[dict[str, Any]] = []
        result = run_pipeline(config, ANSWERABLE, "run-events", on_event=events.append)

        progress = [e for e in events if e["type"] == "progress"]
        assert [e["stage"] for e in progress] == [
            "load_documents",
            "plan",
            "retrieve",
            "write",
            "check",
            "save",
        ]
        assert [e["step"] for e in progress] == list(range(1, 7))
        assert {e["total_steps"] for e in progress} == {6}
        deltas = [e["text"] for e in events if e["type"] == "answer_delta"]
        assert len(deltas) > 2
        assert "".join(deltas) == _final(result)


class TestCitations:
    @pytest.mark.parametrize(
        "question",
        [
            ANSWERABLE,
            "What are the main climate initiatives of Harbor City Council?",
            "Compare the net zero years of Northwind and Aurora.",
        ],
    )
    def test_every_citation_resolves_to_evidence(self, config: AppConfig, question: str) -> None:
        result = run_pipeline(config, question, "run-cite")
        final, bundle = _final(result), _bundle(result)
        ids = {e["id"] for e in bundle["evidence"]}
        cited = cited_ids(final)
        assert cited, "an answer cites its evidence"
        assert set(cited) <= ids
        sources = final.split("## Sources", 1)[1]
        for number in cited:
            assert f"- [{number}] " in sources
        assert [c["evidence_id"] for c in bundle["citations"]] == cited


class TestGaps:
    def test_unanswerable_question_ends_with_gaps_and_says_so(self, config: AppConfig) -> None:
        result = run_pipeline(config, UNANSWERABLE, "run-gap")

        assert result.status == "completed_with_gaps"
        assert result.finish_reason == "answered_with_gaps"
        assert "The documents do not cover" in _final(result)
        gaps = _bundle(result)["gaps"]
        assert len(gaps) == 1
        assert "ferries" in gaps[0]["missing_terms"]
        assert "ferries" in gaps[0]["statement"]

    def test_one_part_answered_and_one_not(self, config: AppConfig) -> None:
        question = (
            "How many battery-electric trucks did Northwind have at the end of 2024, "
            "and what is the salary of its chief executive?"
        )
        result = run_pipeline(config, question, "run-mixed")
        final, bundle = _final(result), _bundle(result)

        assert result.status == "completed_with_gaps"
        assert [p["gap"] for p in bundle["plan"]] == [False, True]
        assert "186 battery-electric trucks" in final
        assert "## What the documents do not cover" in final
        assert "salary" in final.split("## What the documents do not cover", 1)[1]

    def test_answerable_question_has_no_gap(self, config: AppConfig) -> None:
        result = run_pipeline(config, "When did Harbor City adopt its climate action plan?", "ok")
        assert result.status == "completed"
        assert _bundle(result)["gaps"] == []


class TestSql:
    def test_sql_evidence_records_the_exact_query_and_rows(self, config: AppConfig) -> None:
        cfg = config.model_copy(update={"enable_sql": True})
        events: list[dict[str, Any]] = []
        result = run_pipeline(
            cfg, "What were Verdant's Scope 1 emissions in 2023?", "sql", on_event=events.append
        )
        bundle = _bundle(result)

        sql = [e for e in bundle["evidence"] if e["kind"] == "sql"]
        assert sql, bundle["sql"]
        emissions = next(e for e in sql if e["table"] == "emissions")
        assert "'Verdant Foods Cooperative'" in emissions["sql"]
        assert "2023" in emissions["sql"]
        assert emissions["columns"] == ["organisation", "year", "scope", "tonnes_co2e"]
        assert ["Verdant Foods Cooperative", 2023, "Scope 1", 20700] in emissions["rows"]
        assert all(row[0] == "Verdant Foods Cooperative" for row in emissions["rows"])
        assert "## Data" in _final(result)
        assert "sql" in [e["stage"] for e in events if e["type"] == "progress"]


class TestStop:
    def test_stop_between_stages(self, config: AppConfig) -> None:
        events: list[dict[str, Any]] = []
        result = run_pipeline(
            config,
            ANSWERABLE,
            "stop-1",
            on_event=events.append,
            should_stop=lambda: any(e.get("stage") == "retrieve" for e in events),
        )
        assert result.status == "stopped"
        assert result.finish_reason == "cancelled"
        assert [e["stage"] for e in events] == ["load_documents", "plan", "retrieve"]
        run = json.loads((config.output_root / "stop-1" / "run.json").read_text())
        assert run["outcome"]["status"] == "stopped"
        assert not (config.output_root / "stop-1" / "final.md").exists()

    def test_stop_while_the_answer_streams(self, config: AppConfig) -> None:
        events: list[dict[str, Any]] = []
        result = run_pipeline(
            config,
            "What are the main climate initiatives of Harbor City Council?",
            "stop-2",
            on_event=events.append,
            should_stop=lambda: any(e["type"] == "answer_delta" for e in events),
        )
        assert result.status == "stopped"
        assert sum(e["type"] == "answer_delta" for e in events) == 1


class TestFailures:
    def test_missing_folder_raises_a_clear_error(self, config: AppConfig) -> None:
        cfg = config.model_copy(update={"markdown_path": "no-such-folder"})
        with pytest.raises(PipelineError) as caught:
            run_pipeline(cfg, ANSWERABLE, "fail-1")
        assert caught.value.code == "markdown_path_missing"
        assert "no-such-folder" in caught.value.message
        run = json.loads((config.output_root / "fail-1" / "run.json").read_text())
        assert run["outcome"]["status"] == "failed"
        assert run["outcome"]["error"]["code"] == "markdown_path_missing"
        assert "Traceback" in run["traceback"]

    def test_undecodable_file_is_skipped_with_a_warning(self, tmp_path: Path) -> None:
        docs = tmp_path / "docs"
        docs.mkdir()
        (docs / "good.md").write_text("# Solar\n\nThe roof array produces 420 kWp of power.\n")
        (docs / "bad.md").write_bytes(b"# Broken\n\n\xff\xfe not utf-8 \xc3\x28\n")
        (docs / "empty.md").write_text("")
        cfg = AppConfig(base_dir=tmp_path, markdown_path="docs", llm_provider="extractive")
        result = run_pipeline(cfg, "How big is the roof solar array?", "warn")

        assert "420 kWp" in _final(result)
        run = json.loads((tmp_path / "output" / "warn" / "run.json").read_text())
        assert any(w.startswith("bad.md: skipped") for w in run["warnings"])

    def test_empty_question_is_refused(self, config: AppConfig) -> None:
        with pytest.raises(PipelineError, match="empty"):
            run_pipeline(config, "   ", "fail-2")


class TestConcurrentRuns:
    QUESTIONS = (
        "What are the main climate initiatives of Harbor City Council?",
        "How many battery-electric trucks does Northwind run?",
        "What does Verdant report about emissions?",
    )

    @staticmethod
    def _answer(config: AppConfig, question: str, run_id: str) -> tuple[str, list[object]]:
        result = run_pipeline(config, question, run_id)
        evidence = _bundle(result)["evidence"]
        return result.status, [(e["path"], e["line_start"], e["score"]) for e in evidence]

    def test_runs_at_once_on_a_fresh_index_answer_as_runs_one_by_one(self, tmp_path: Path) -> None:
        # Runs opening a new index together once dropped each other's tables (the schema
        # version was read outside the write lock), failed on the switch to WAL, and shared
        # one stemmer that is not thread-safe: answers then depended on timing.
        def config(name: str) -> AppConfig:
            return AppConfig(
                base_dir=Path(__file__).resolve().parents[3],
                output_dir=tmp_path / name / "output",
                index_dir=tmp_path / name / "index",
                markdown_path="documents",
                llm_provider="extractive",
            )

        alone = config("alone")
        expected = [self._answer(alone, q, f"a{i}") for i, q in enumerate(self.QUESTIONS)]
        for trial in range(8):
            together = config(f"together-{trial}")
            with ThreadPoolExecutor(max_workers=len(self.QUESTIONS)) as pool:
                runs = [f"t{i}" for i in range(len(self.QUESTIONS))]
                configs = [together] * len(self.QUESTIONS)
                answers = list(pool.map(self._answer, configs, self.QUESTIONS, runs))
            assert answers == expected, f"trial {trial}"
