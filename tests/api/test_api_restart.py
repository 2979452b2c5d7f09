"""What survives the process: a new app over the same output/ serves, reconciles, or flags runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.modules.run_logger import RunLogger
from tests.api import gated_pipeline
from tests.api.conftest import BLOCKING, REPO, TERMINAL, _wait_for_status, wait_for_state_file

pytestmark = pytest.mark.anyio

RUNS = "/api/v1/runs"


def _every_json_file_parses(output: Path) -> list[Path]:
    files = [p for p in output.rglob("*.json") if ".index" not in p.parts]
    for path in files:
        json.loads(path.read_text())  # raises (and fails the test) on a half-written file
    return files


async def _snapshot(client: httpx.AsyncClient, run_ids: list[str]) -> dict[str, Any]:
    """Every read endpoint's status and body for ``run_ids``, and the list."""
    seen: dict[str, Any] = {"list": (await client.get(RUNS)).json()}
    for run_id in run_ids:
        for suffix in ("/status", "/output", "/context", ""):
            response = await client.get(f"{RUNS}/{run_id}{suffix}")
            seen[f"{run_id}{suffix}"] = (response.status_code, response.json())
    return seen


class TestRestart:
    async def test_a_new_app_serves_finished_runs_identically(
        self, serve, settings, wait_for_status
    ) -> None:
        gated_pipeline.gate("gaps", "complete_with_gaps").release.set()
        gated_pipeline.gate("broken", "pipeline_error").release.set()
        gated_pipeline.gate("cancelled", "block")
        run_ids = ["plain", "gaps", "broken", "cancelled"]
        config = settings()
        async with serve(config) as client:
            for run_id in run_ids:
                response = await client.post(RUNS, json={"question": "q?", "run_id": run_id})
                assert response.status_code == 202, response.text
            await client.post(f"{RUNS}/cancelled/cancel")
            for run_id in run_ids:
                await wait_for_status(client, run_id, TERMINAL)
            before = await _snapshot(client, run_ids)

        async with serve(settings()) as client:
            after = await _snapshot(client, run_ids)

        assert after == before
        assert [before[f"{r}/status"][1]["status"] for r in run_ids] == [
            "completed",
            "completed_with_gaps",
            "failed",
            "stopped",
        ]
        assert before["plain/output"][0] == 200
        assert before["gaps/context"][0] == 200

    async def test_a_killed_server_leaves_its_running_run_interrupted(
        self, uvicorn, serve, settings, base_dir, error
    ) -> None:
        config = settings()
        with uvicorn(
            APP_BASE_DIR=str(base_dir),
            APP_OUTPUT_DIR=str(config.output_root),
            APP_PIPELINE=BLOCKING,
        ) as server:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as client:
                response = await client.post(RUNS, json={"question": "q?", "run_id": "doomed"})
                assert response.status_code == 202, response.text
                await _wait_for_status(client, "doomed", {"running"}, timeout=10)
                wait_for_state_file(config.output_root / "doomed" / "api_state.json", "running")
            server.process.send_signal(signal.SIGKILL)
            # Reap it: a zombie keeps its /proc entry and would still look alive.
            assert server.process.wait(timeout=10) == -signal.SIGKILL

        state = json.loads((config.output_root / "doomed" / "api_state.json").read_text())
        assert state["status"] == "running"  # what the dead process left behind

        async with serve(settings()) as client:
            response = await client.get(f"{RUNS}/doomed/status")
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["status"] == "failed"
            assert body["finish_reason"] == "interrupted"
            assert body["error"]["code"] == "interrupted"
            assert body["error"]["message"]
            error(await client.get(f"{RUNS}/doomed/output"), 409, "no_output")
            listed = (await client.get(RUNS)).json()["items"]
            assert [(i["run_id"], i["status"]) for i in listed] == [("doomed", "failed")]
        assert _every_json_file_parses(config.output_root)
        reconciled = json.loads((config.output_root / "doomed" / "api_state.json").read_text())
        assert reconciled["status"] == "failed"

    @pytest.mark.parametrize(
        "corrupt",
        [
            b'{"run_id": "bad", "status": "comp',
            b"",
            b"[]",
            b"\xff\xfe not utf-8",
            b'{"run_id": "bad", "status": "exploded", "question": "q?"}',
            b'{"status": "completed"}',
            b'{"run_id": "good-1", "status": "completed", "question": "q?"}',
            b'{"run_id": "bad", "status": "completed", "question": "q?", "created_at": 5}',
        ],
    )
    async def test_a_corrupt_state_file_fails_only_its_run(
        self, serve, settings, wait_for_status, corrupt: bytes
    ) -> None:
        config = settings()
        async with serve(config) as client:
            for run_id in ("good-1", "bad", "good-2"):
                response = await client.post(RUNS, json={"question": "q?", "run_id": run_id})
                assert response.status_code == 202, response.text
                await wait_for_status(client, run_id, {"completed"})
        (config.output_root / "bad" / "api_state.json").write_bytes(corrupt)

        async with serve(settings()) as client:
            response = await client.get(f"{RUNS}/bad/status")
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["status"] == "failed"
            assert body["error"]["code"] == "state_unreadable"
            assert "api_state.json" in body["error"]["message"]
            assert str(config.base_dir) not in response.text
            assert (await client.get(f"{RUNS}/bad")).status_code == 200
            for run_id in ("good-1", "good-2"):
                status = (await client.get(f"{RUNS}/{run_id}/status")).json()
                assert status["status"] == "completed"
                assert (await client.get(f"{RUNS}/{run_id}/output")).status_code == 200
            listed = (await client.get(RUNS)).json()
            assert listed["next_cursor"] is None
            assert {i["run_id"] for i in listed["items"]} == {"good-1", "bad", "good-2"}

    @pytest.mark.parametrize(
        "run_log",
        [
            {
                "outcome": {"status": "completed", "finish_reason": "answered", "error": None},
                "started_at": "2026-11-25T10:00:00Z",
                "completed_at": "2026-11-25T10:00:01Z",
            },
            {"outcome": "not an object", "started_at": 5},
            {"outcome": {"status": "completed", "finish_reason": 7, "error": "boom"}},
        ],
    )
    async def test_a_run_folder_without_api_state_is_read_from_run_json(
        self, serve, settings, run_log: dict[str, object]
    ) -> None:
        """A CLI run (run.json only) is listed; a damaged one fails alone, never a 500."""
        config = settings()
        (config.output_root / "cli-run").mkdir(parents=True)
        (config.output_root / "cli-run" / "run.json").write_text(json.dumps(run_log))
        async with serve(config) as client:
            response = await client.get(f"{RUNS}/cli-run/status")
            assert response.status_code == 200, response.text
            body = response.json()
            outcome = run_log["outcome"]
            if isinstance(outcome, dict) and outcome.get("finish_reason") == "answered":
                assert body["status"] == "completed"
                assert body["completed_at"] == "2026-11-25T10:00:01Z"
            else:
                assert body["status"] == "failed"
                assert body["error"]["code"] == "state_unreadable"
            assert (await client.get(RUNS)).status_code == 200


class TestRunsMadeWithoutTheApi:
    """`python -m app ask` shares output/: its runs are listed like API runs."""

    @staticmethod
    def _env(output: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "OPENAI_"))}
        return {**env, "APP_BASE_DIR": str(REPO), "APP_OUTPUT_DIR": str(output)}

    @pytest.mark.slow
    async def test_an_ask_run_is_listed_with_its_question(self, serve, settings) -> None:
        config = settings()
        question = "How many battery-electric trucks did Northwind have at the end of 2024?"
        done = subprocess.run(
            [sys.executable, "-m", "app", "ask", question, "--run-id", "from-cli"],
            cwd=REPO,
            env=self._env(config.output_root),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        async with serve(config) as client:
            items = (await client.get(RUNS)).json()["items"]
            (item,) = [i for i in items if i["run_id"] == "from-cli"]
            assert item["question"] == question
            assert item["status"] == "completed"
            assert (await client.get(f"{RUNS}/from-cli/output")).status_code == 200

    async def test_one_whose_process_died_is_interrupted_not_running(self, serve, settings) -> None:
        config = settings()
        # A process that starts a run's record and dies without an outcome, as a killed
        # `ask` does.
        script = (
            "import os, sys; from pathlib import Path;"
            "from app.modules.run_logger import RunLogger;"
            "d = Path(sys.argv[1]); d.mkdir(parents=True);"
            "RunLogger(d, 'dead-cli', config={}, question='Who runs the fleet?');"
            "os._exit(9)"
        )
        died = subprocess.run(
            [sys.executable, "-c", script, str(config.output_root / "dead-cli")],
            cwd=REPO,
            env=self._env(config.output_root),
            timeout=60,
            check=False,
        )
        assert died.returncode == 9
        async with serve(config) as client:
            status = (await client.get(f"{RUNS}/dead-cli/status")).json()
            assert status["status"] == "failed"
            assert status["finish_reason"] == "interrupted"
            record = (await client.get(f"{RUNS}/dead-cli")).json()
            assert record["question"] == "Who runs the fleet?"

    async def test_one_whose_process_lives_is_running(self, serve, settings) -> None:
        config = settings()
        run_dir = config.output_root / "live-cli"
        run_dir.mkdir(parents=True)
        RunLogger(run_dir, "live-cli", config={}, question="Still going?")  # this process
        async with serve(config) as client:
            status = (await client.get(f"{RUNS}/live-cli/status")).json()
            assert status["status"] == "running"
