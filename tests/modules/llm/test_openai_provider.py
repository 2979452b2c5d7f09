"""The `openai` provider against a real local server speaking the chat-completions protocol."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from app.config import AppConfig
from app.modules.evidence import Part
from app.modules.llm.openai_provider import uncovered_statements
from app.modules.orchestrator.gaps import combine_model_gaps
from app.modules.orchestrator.module import PipelineError, run_pipeline
from app.modules.retrieval.retriever import Query
from tests.fake_openai import FakeOpenAI

QUESTION = "What are Northwind's Scope 1 and 2 targets for 2030?"


def _model_config(config: AppConfig, server: FakeOpenAI, **extra: Any) -> AppConfig:
    return config.model_copy(
        update={
            "llm_provider": "auto",
            "llm_base_url": server.base_url,
            "llm_model": "test-model",
            "llm_max_retries": 0,
            "llm_timeout_s": 10.0,
            **extra,
        }
    )


class TestStreaming:
    def test_answer_streams_token_pieces_and_keeps_valid_citations(
        self, config: AppConfig, fake_openai: FakeOpenAI
    ) -> None:
        fake_openai.script.text = "Northwind will halve Scope 1 and 2 emissions by 2030 [1][2]."
        events: list[dict[str, Any]] = []
        result = run_pipeline(
            _model_config(config, fake_openai), QUESTION, "r1", on_event=events.append
        )

        assert result.status == "completed"
        deltas = [e["text"] for e in events if e["type"] == "answer_delta"]
        assert len(deltas) > 3, "the model's stream should arrive in several pieces"
        assert "".join(deltas).startswith(fake_openai.script.text)
        final = result.final_output_path.read_text()  # type: ignore[union-attr]
        assert final.startswith(fake_openai.script.text)
        assert "## Sources" in final
        assert "- [1] " in final
        assert "- [2] " in final

        request = fake_openai.script.requests[0]
        assert request["stream"] is True
        assert request["model"] == "test-model"
        prompt = request["messages"][1]["content"]
        assert "[1] northwind/" in prompt, "evidence is numbered in the prompt"

    def test_invalid_citations_are_removed_and_recorded(
        self, config: AppConfig, fake_openai: FakeOpenAI
    ) -> None:
        fake_openai.script.text = "Half by 2030 [1], and something invented [99]."
        result = run_pipeline(_model_config(config, fake_openai), QUESTION, "r2")

        final = result.final_output_path.read_text()  # type: ignore[union-attr]
        bundle = json.loads(result.context_bundle_path.read_text())  # type: ignore[union-attr]
        assert "[99]" not in final
        assert bundle["invalid_citations"] == [99]
        assert [c["evidence_id"] for c in bundle["citations"]] == [1]
        assert bundle["engine"] == {
            "provider": "openai",
            "model": "test-model",
            "index": bundle["engine"]["index"],
            "retrieval": "sqlite-fts5-bm25+wordllama-rrf",
        }

    def test_api_key_is_sent_and_never_logged(
        self, config: AppConfig, fake_openai: FakeOpenAI
    ) -> None:
        secret = "sk-test-secret-value-123"
        cfg = _model_config(
            config, fake_openai, llm_api_key=SecretStr(secret), log_llm_payload=True
        )
        result = run_pipeline(cfg, QUESTION, "r3")

        assert fake_openai.script.headers[0]["authorization"] == f"Bearer {secret}"
        run_dir = result.final_output_path.parent  # type: ignore[union-attr]
        lines = (run_dir / "llm_payloads.jsonl").read_text().splitlines()
        assert [json.loads(line)["direction"] for line in lines] == ["request", "response"]
        assert json.loads(lines[1])["content"] == fake_openai.script.text
        for path in run_dir.iterdir():
            assert secret not in path.read_text(), f"the key leaked into {path.name}"


class TestGaps:
    """The model path's gap decision joins the detector's to the model's own words."""

    def test_the_models_not_covered_makes_a_gap_in_its_own_words(
        self, config: AppConfig, fake_openai: FakeOpenAI
    ) -> None:
        fake_openai.script.text = (
            "Northwind will halve Scope 1 and 2 emissions by 2030 [1]. "
            "The documents do not cover how the 2030 target will be financed."
        )
        result = run_pipeline(_model_config(config, fake_openai), QUESTION, "g1")

        bundle = json.loads(result.context_bundle_path.read_text())  # type: ignore[union-attr]
        final = result.final_output_path.read_text()  # type: ignore[union-attr]
        assert result.status == "completed_with_gaps"
        assert [(g["source"], g["statement"]) for g in bundle["gaps"]] == [
            ("model", "The documents do not cover how the 2030 target will be financed.")
        ]
        assert bundle["plan"][0]["model_statements"] == [
            "The documents do not cover how the 2030 target will be financed."
        ]
        assert "## What the documents do not cover" in final

    def test_a_name_in_no_document_stays_a_gap_whatever_the_model_says(
        self, config: AppConfig, fake_openai: FakeOpenAI
    ) -> None:
        fake_openai.script.text = "Verdant operates four electric ferries [1]."
        question = "How many electric ferries does Verdant Foods Cooperative operate?"
        result = run_pipeline(_model_config(config, fake_openai), question, "g2")

        bundle = json.loads(result.context_bundle_path.read_text())  # type: ignore[union-attr]
        assert result.status == "completed_with_gaps"
        assert [g["source"] for g in bundle["gaps"]] == ["detector"]
        assert "ferries" in bundle["gaps"][0]["statement"]
        prompt = fake_openai.script.requests[0]["messages"][1]["content"]
        assert "The search found little evidence for: How many electric ferries" in prompt

    def test_an_answered_part_is_complete_when_the_model_finds_it(
        self, config: AppConfig, fake_openai: FakeOpenAI
    ) -> None:
        # The detector doubts "salary" (the passages hold only some of its words); a model
        # that answers it from the evidence without saying it is missing settles it.
        fake_openai.script.text = "Northwind had 186 trucks [1]; the chief executive earns X [2]."
        question = (
            "How many battery-electric trucks did Northwind have at the end of 2024, "
            "and what is the salary of its chief executive?"
        )
        result = run_pipeline(_model_config(config, fake_openai), question, "g3")

        bundle = json.loads(result.context_bundle_path.read_text())  # type: ignore[union-attr]
        assert result.status == "completed"
        assert bundle["gaps"] == []
        assert [p["gap_source"] for p in bundle["plan"]] == [None, None]


def _part(number: int, text: str, *, gap: bool = False, decisive: list[str] | None = None) -> Part:
    return Part(number, text, Query.from_text(text), gap=gap, decisive=decisive or [])


class TestCombineModelGaps:
    def test_each_statement_goes_to_the_part_it_is_about(self) -> None:
        parts = [
            _part(1, "What is the fleet size?"),
            _part(2, "Who audits the emissions report?", gap=True),
        ]
        combine_model_gaps(parts, ["The documents do not say who audits the emissions report."])
        assert [(p.gap, p.gap_source) for p in parts] == [(False, None), (True, "model")]

    def test_detector_and_model_agreeing_are_both_named(self) -> None:
        parts = [_part(1, "How many ferries run?", gap=True, decisive=["ferries"])]
        combine_model_gaps(parts, ["The evidence does not mention ferries."])
        assert (parts[0].gap, parts[0].gap_source) == (True, "detector+model")


@pytest.mark.parametrize(
    ("answer", "statements"),
    [
        (
            "Half by 2030 [1]. The documents do not cover Scope 3.",
            ["The documents do not cover Scope 3."],
        ),
        (
            "The evidence does not mention a budget [2].",
            ["The evidence does not mention a budget [2]."],
        ),
        (
            "- This is not covered by the provided documents.",
            ["This is not covered by the provided documents."],
        ),
        (
            "There is no information in the sources about ferries.",
            ["There is no information in the sources about ferries."],
        ),
        (
            "The evidence contains no details on water use.",
            ["The evidence contains no details on water use."],
        ),
        ("The emissions sources do not include shipping [2].", []),
        ("The documents describe the 2030 target [1].", []),
        ("Scope 3 does not cover business travel [3].", []),
    ],
)
def test_uncovered_statements_find_the_models_not_covered(
    answer: str, statements: list[str]
) -> None:
    assert uncovered_statements(answer) == statements


class TestFailures:
    def test_server_error_fails_the_run_with_the_providers_message(
        self, config: AppConfig, fake_openai: FakeOpenAI
    ) -> None:
        fake_openai.script.status = 503
        fake_openai.script.error_message = "model is loading, try later"
        with pytest.raises(PipelineError) as caught:
            run_pipeline(_model_config(config, fake_openai), QUESTION, "r4")

        assert caught.value.code == "llm_error"
        assert "HTTP 503" in caught.value.message
        assert "model is loading, try later" in caught.value.message
        run = json.loads((config.output_root / "r4" / "run.json").read_text())
        assert run["outcome"]["status"] == "failed"
        assert run["outcome"]["error"]["code"] == "llm_error"

    def test_unreachable_server_fails_with_a_clear_message(
        self, config: AppConfig, fake_openai: FakeOpenAI
    ) -> None:
        base_url = fake_openai.base_url
        fake_openai.__exit__(None, None, None)  # nothing listens there any more
        cfg = config.model_copy(
            update={"llm_provider": "openai", "llm_base_url": base_url, "llm_max_retries": 0}
        )
        with pytest.raises(PipelineError, match="cannot reach the model server"):
            run_pipeline(cfg, QUESTION, "r5")


class TestStop:
    def test_stop_while_tokens_stream_returns_a_stopped_result(
        self, config: AppConfig, fake_openai: FakeOpenAI
    ) -> None:
        fake_openai.script.text = "word " * 400
        fake_openai.script.chunk_size = 5
        seen: list[str] = []

        def on_event(event: dict[str, Any]) -> None:
            if event["type"] == "answer_delta":
                seen.append(event["text"])

        result = run_pipeline(
            _model_config(config, fake_openai),
            QUESTION,
            "r6",
            on_event=on_event,
            should_stop=lambda: bool(seen),
        )
        assert result.status == "stopped"
        assert result.finish_reason == "cancelled"
        assert len(seen) < 10, "the stream must stop soon after should_stop turns true"
        assert not (config.output_root / "r6" / "final.md").exists()
        run = json.loads((config.output_root / "r6" / "run.json").read_text())
        assert run["outcome"]["status"] == "stopped"
