"""`python -m app ask` and `python -m app eval`, run as a person would, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "OPENAI_"))}
    env["APP_BASE_DIR"] = str(REPO)
    env["APP_OUTPUT_DIR"] = str(cwd / "output")
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=cwd,
        env=env,
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
        assert summary["gaps_reported_on_unanswerable"] == 1.0, summary
        assert summary["false_gaps_on_answerable"] <= 0.15, summary
        assert "hit_at_5" in done.stdout

    def test_a_broken_question_file_is_reported(self, tmp_path: Path) -> None:
        bad = tmp_path / "q.jsonl"
        bad.write_text('{"id": "1", "question": "ok?"}\nnot json\n')
        done = _run("eval", str(bad), cwd=tmp_path)
        assert done.returncode == 2
        assert "q.jsonl, line 2: not a question" in done.stderr
