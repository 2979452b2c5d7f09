"""BE-008: the pre-frontend smoke script, run as the frontend team will run it (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.api.conftest import BLOCKING, REPO
from tests.support.processes import free_port

pytestmark = pytest.mark.slow

SCRIPT = "app.scripts.test_async_backend_flow"
QUESTION = "How many battery-electric trucks did Northwind have at the end of 2024?"


def smoke(*args: str, timeout: float = 60, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "OPENAI_"))}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", SCRIPT, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def saved(out: Path) -> list[str]:
    return sorted(path.name for path in out.iterdir())


class TestRealEngine:
    def test_polling_and_sse_pass(self, uvicorn, tmp_path: Path) -> None:
        env = {"APP_BASE_DIR": str(REPO), "APP_OUTPUT_DIR": str(tmp_path / "output")}
        with uvicorn(**env) as server:
            polled = smoke(
                "--base-url",
                server.base_url,
                "--question",
                QUESTION,
                "--out",
                str(tmp_path / "poll"),
                "--poll",
                "0.2",
                "--run-id",
                "smoke-poll",
            )
            streamed = smoke(
                "--base-url",
                server.base_url,
                "--question",
                QUESTION,
                "--out",
                str(tmp_path / "sse"),
                "--sse",
                "--run-id",
                "smoke-sse",
            )

        assert polled.returncode == 0, polled.stdout + polled.stderr + server.log()
        assert polled.stdout.startswith("OK smoke-poll: completed (answered) via polling")
        assert len(polled.stdout.strip().splitlines()) == 1
        names = saved(tmp_path / "poll")
        assert names[0] == "01-post.json"
        assert names[1] == "02-status.json"
        assert names[-3:] == [
            f"{len(names) - 2:02d}-output.json",
            f"{len(names) - 1:02d}-context.json",
            f"{len(names):02d}-unknown-run.json",
        ]
        post = json.loads((tmp_path / "poll" / "01-post.json").read_text())
        assert post["status_code"] == 202
        assert post["headers"]["location"] == "/api/v1/runs/smoke-poll/status"
        assert post["body"]["run_id"] == "smoke-poll"
        output = json.loads((tmp_path / "poll" / names[-3]).read_text())
        assert "186" in output["body"]["content"]
        assert output["body"]["final_output_path"] == "output/smoke-poll/final.md"
        unknown = json.loads((tmp_path / "poll" / names[-1]).read_text())
        assert unknown["status_code"] == 404
        assert unknown["body"]["code"] == "run_not_found"

        assert streamed.returncode == 0, streamed.stdout + streamed.stderr + server.log()
        assert streamed.stdout.startswith("OK smoke-sse: completed (answered) via SSE")
        assert saved(tmp_path / "sse") == [
            "01-post.json",
            "02-events.json",
            "03-status.json",
            "04-output.json",
            "05-context.json",
            "06-unknown-run.json",
        ]
        events = json.loads((tmp_path / "sse" / "02-events.json").read_text())["events"]
        assert [e["id"] for e in events] == [str(n) for n in range(1, len(events) + 1)]
        assert events[-1]["event"] == "status"
        assert events[-1]["data"]["status"] == "completed"


class TestDefaults:
    def test_only_a_server_needed_responses_go_to_a_git_ignored_folder(
        self, uvicorn, tmp_path: Path
    ) -> None:
        with uvicorn(APP_BASE_DIR=str(REPO), APP_OUTPUT_DIR=str(tmp_path / "srv-out")) as server:
            done = smoke("--base-url", server.base_url, "--run-id", "defaults", cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        folder = tmp_path / "output" / "smoke" / "defaults"
        assert "01-post.json" in saved(folder)
        assert done.stdout.rstrip().endswith("responses saved in output/smoke/defaults")
        # Numbered in order: how many status polls come first depends on the run's pace.
        (context_file,) = [name for name in saved(folder) if name.endswith("-context.json")]
        context = json.loads((folder / context_file).read_text())
        assert context["body"]["context_bundle"]["question"] == QUESTION  # the default one

    def test_the_default_server_is_the_one_serve_starts(self) -> None:
        done = smoke("--help")
        assert "default: http://127.0.0.1:8000" in done.stdout
        assert "output/smoke/<run_id>/" in done.stdout


class TestBrokenServer:
    @pytest.mark.parametrize(
        ("mode", "step", "field"),
        [
            ("extra_field", "POST /api/v1/runs", "extra field(s) 'debug_info'"),
            ("missing_key", "GET status (poll 1)", "missing field(s) 'finish_reason'"),
        ],
    )
    def test_contract_break_exits_1_naming_the_field(
        self, broken_server, tmp_path: Path, mode: str, step: str, field: str
    ) -> None:
        out = tmp_path / "out"
        with broken_server(mode) as server:
            done = smoke("--base-url", server.base_url, "--question", QUESTION, "--out", str(out))
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"CONTRACT BROKEN at step '{step}'" in done.stderr
        assert field in done.stderr
        assert "01-post.json" in saved(out)  # the response that broke it is kept


def test_unreachable_server_exits_2(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = smoke("--base-url", url, "--question", QUESTION, "--out", str(tmp_path / "out"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "UNREACHABLE" in done.stderr
    assert f"cannot connect to {url}" in done.stderr
    assert not (tmp_path / "out").exists()


def test_sse_without_httpx_sse_exits_2() -> None:
    code = (
        "import sys; sys.modules['httpx_sse'] = None; "
        f"from {SCRIPT} import main; "
        "sys.exit(main(['--base-url', 'http://127.0.0.1:9', '--question', 'q', '--sse']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--sse needs the httpx-sse package" in done.stderr


def test_run_that_never_finishes_times_out(uvicorn, tmp_path: Path) -> None:
    env = {
        "APP_BASE_DIR": str(REPO),
        "APP_OUTPUT_DIR": str(tmp_path / "output"),
        "APP_PIPELINE": BLOCKING,
    }
    with uvicorn(**env) as server:
        runs = []
        for name, mode in (("poll", []), ("sse", ["--sse"])):
            start = time.monotonic()
            done = smoke(
                "--base-url",
                server.base_url,
                "--question",
                QUESTION,
                "--timeout",
                "2",
                "--poll",
                "0.2",
                "--out",
                str(tmp_path / name),
                *mode,
            )
            runs.append((mode, done, time.monotonic() - start))
    for mode, done, elapsed in runs:
        assert done.returncode == 1, (mode, done.stdout, done.stderr)
        assert "timeout" in done.stderr, (mode, done.stderr)
        assert "last status 'running'" in done.stderr, (mode, done.stderr)
        assert elapsed < 10, (mode, elapsed)
    assert saved(tmp_path / "poll")[:2] == ["01-post.json", "02-status.json"]
    assert saved(tmp_path / "sse") == ["01-post.json", "02-events.json"]
