"""`python -m app ask` and `python -m app eval`, run as a person would, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # `python -m app` in subprocesses


def _env(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "OPENAI_"))}
    env["APP_BASE_DIR"] = str(REPO)
    env["APP_OUTPUT_DIR"] = str(cwd / "output")
    return env


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=cwd,
        env=_env(cwd),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


class TestAsk:
    def test_prints_progress_and_answer_and_writes_artifacts(self, tmp_path: Path) -> None:
        done = _run(
            "ask",
            "When does Aurora's sustainability committee meet?",
            "--run-id",
            "cli-1",
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        assert "[1/6] Indexing markdown under documents" in done.stderr
        assert "status: completed" in done.stderr
        assert "## Sources" in done.stdout
        run_dir = tmp_path / "output" / "cli-1"
        assert (run_dir / "final.md").read_text().strip() == done.stdout.strip()
        assert json.loads((run_dir / "run.json").read_text())["outcome"]["status"] == "completed"

    def test_missing_folder_is_a_clear_error(self, tmp_path: Path) -> None:
        done = _run("ask", "anything?", "--markdown-path", "nowhere", cwd=tmp_path)
        assert done.returncode == 1
        assert "error: the documents folder 'nowhere' does not exist" in done.stderr

    def test_docs_reads_a_folder_anywhere_and_stages_do_not_split_the_answer(
        self, tmp_path: Path
    ) -> None:
        folder = tmp_path / "elsewhere" / "handbook"
        folder.mkdir(parents=True)
        (folder / "leave.md").write_text("# Leave\n\nEvery employee gets 26 days of leave.\n")
        done = subprocess.run(
            [sys.executable, "-m", "app", "ask", "How many days of leave?", "--docs", str(folder),
             "--run-id", "cli-docs"],
            cwd=tmp_path,
            env={**_env(tmp_path)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # one stream, in the order a person sees it
            text=True,
            timeout=300,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout
        assert "26 days" in done.stdout
        # The answer and its Sources read as one piece; later stages are reported after.
        answer_start = done.stdout.index("Every employee")
        assert done.stdout.index("## Sources") > answer_start
        assert done.stdout.index("[5/6] Checking citations") > done.stdout.index("## Sources")
        assert "[1/6] Indexing markdown under handbook" in done.stdout

    def test_help_explains_every_argument(self, tmp_path: Path) -> None:
        done = _run("ask", "--help", cwd=tmp_path)
        assert done.returncode == 0
        for words in ("what to ask", "--docs PATH", "--markdown-path PATH", "--sql", "--run-id"):
            assert words in done.stdout, words


class TestEval:
    def test_bundled_questions_meet_the_quality_bar(self, tmp_path: Path) -> None:
        out = tmp_path / "eval.json"
        done = _run(
            "eval",
            str(REPO / "documents" / "eval" / "questions.jsonl"),
            "--out",
            str(out),
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        summary = json.loads(out.read_text())["summary"]
        assert summary["questions"] >= 30
        assert summary["hit_at_5"] >= 0.9, summary
        assert summary["key_fact_recall"] >= 0.7, summary
        assert summary["citation_validity"] == 1.0, summary
        assert summary["gap_on_unanswerable"] >= 0.7, summary
        assert summary["false_gap_rate"] <= 0.15, summary
        assert "hit_at_5" in done.stdout
        # The per-kind table and the baseline comparison are printed for a person.
        assert "kind" in done.stdout
        again = _run(
            "eval",
            str(REPO / "documents" / "eval" / "questions.jsonl"),
            "--baseline",
            str(out),
            "--out",
            str(tmp_path / "again.json"),
            cwd=tmp_path,
        )
        assert again.returncode == 0, again.stderr
        compared = json.loads((tmp_path / "again.json").read_text())["compared_with"]
        # The engine is deterministic: the same run neither wins nor loses a question.
        assert compared["won"] == []
        assert compared["lost"] == []

    def test_one_half_of_a_split_set(self, tmp_path: Path) -> None:
        out = tmp_path / "eval.json"
        questions = REPO / "benchmarks" / "corpora" / "npm" / "questions.jsonl"
        done = _run(
            "eval",
            str(questions),
            "--markdown-path",
            str(questions.parent / "docs"),
            "--split",
            "test",
            "--out",
            str(out),
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(out.read_text())
        assert {r["split"] for r in report["results"]} == {"test"}
        assert "unanswerable" in report["by_kind"]

    def test_a_broken_question_file_is_reported(self, tmp_path: Path) -> None:
        bad = tmp_path / "q.jsonl"
        bad.write_text('{"id": "1", "question": "ok?"}\nnot json\n')
        done = _run("eval", str(bad), cwd=tmp_path)
        assert done.returncode == 2
        assert "q.jsonl, line 2: not a question" in done.stderr
