"""Your own folder in one setting (APP_DOCS / `serve --docs`), the documents listing, `/`.

Real uvicorn, the real offline engine, real folders outside the server's base directory.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import (
    REPO,
    TERMINAL,
    Server,
    poll_status,
)
from tests.support.processes import (
    ProcessFailed,
    clean_env,
    free_port,
    start_command,
    wait_http,
    wait_log,
)

pytestmark = pytest.mark.slow  # real uvicorn and `python -m app` processes

RUNS = "/api/v1/runs"
StartServer = Callable[..., AbstractContextManager[Server]]


@pytest.fixture
def handbook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of markdown the server's base directory knows nothing about."""
    folder = tmp_path_factory.mktemp("elsewhere") / "handbook"
    (folder / "travel").mkdir(parents=True)
    (folder / "leave.md").write_text(
        "# Leave\n\n## Annual leave\n\nEvery employee gets 26 days of annual leave a year.\n"
    )
    (folder / "travel" / "trains.md").write_text(
        "# Trains\n\nBook trains through the travel desk; first class is never refunded.\n"
    )
    return folder


@pytest.fixture
def elsewhere(tmp_path: Path) -> dict[str, str]:
    """A base directory and output folder that do not contain the documents."""
    base = tmp_path / "base"
    base.mkdir()
    return {"APP_BASE_DIR": str(base), "APP_OUTPUT_DIR": str(tmp_path / "output")}


def _finish(client: httpx.Client, run_id: str) -> dict[str, object]:
    return poll_status(client, run_id, TERMINAL, timeout=20)


class TestOneSetting:
    def test_app_docs_serves_an_outside_folder_end_to_end(
        self, uvicorn: StartServer, handbook: Path, elsewhere: dict[str, str]
    ) -> None:
        with (
            uvicorn(**elsewhere, APP_DOCS=str(handbook)) as server,
            httpx.Client(base_url=server.base_url, timeout=10) as client,
        ):
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            created = client.post(
                RUNS, json={"question": "How many days of annual leave?", "run_id": "a1"}
            )
            assert created.status_code == 202, created.text
            assert _finish(client, "a1")["status"] == "completed"
            record = client.get(f"{RUNS}/a1").json()
            assert record["markdown_path"] == "handbook"
            assert "26 days" in client.get(f"{RUNS}/a1/output").json()["content"]
            context = client.get(f"{RUNS}/a1/context").json()["context_bundle"]
            assert {e["path"] for e in context["evidence"]} <= {"leave.md", "travel/trains.md"}

            # An absolute path inside the root is accepted and shown relative.
            sub = client.post(
                RUNS,
                json={
                    "question": "Is first class refunded?",
                    "run_id": "a2",
                    "markdown_path": str(handbook / "travel"),
                },
            )
            assert sub.status_code == 202, sub.text
            _finish(client, "a2")
            assert client.get(f"{RUNS}/a2").json()["markdown_path"] == "handbook/travel"

            # Outside the root: refused, and the server's paths are not shown.
            outside = client.post(
                RUNS, json={"question": "q?", "markdown_path": elsewhere["APP_BASE_DIR"]}
            )
            assert outside.status_code == 422
            assert elsewhere["APP_BASE_DIR"] not in outside.text
            assert "'handbook'" in outside.json()["message"]

    def test_documents_roots_alone_make_the_first_root_the_default(
        self, uvicorn: StartServer, handbook: Path, elsewhere: dict[str, str]
    ) -> None:
        with (
            uvicorn(**elsewhere, APP_DOCUMENTS_ROOTS=str(handbook)) as server,
            httpx.Client(base_url=server.base_url, timeout=10) as client,
        ):
            created = client.post(RUNS, json={"question": "Annual leave?", "run_id": "r1"})
            assert created.status_code == 202, created.text
            assert _finish(client, "r1")["status"] == "completed"
            assert client.get(f"{RUNS}/r1").json()["markdown_path"] == "handbook"

    def test_readyz_is_not_ready_when_the_default_folder_holds_no_markdown(
        self, uvicorn: StartServer, tmp_path: Path, elsewhere: dict[str, str]
    ) -> None:
        empty = tmp_path / "empty"
        empty.mkdir()
        (empty / "notes.txt").write_text("not markdown\n")
        with (
            uvicorn(**elsewhere, APP_DOCS=str(empty)) as server,
            httpx.Client(base_url=server.base_url, timeout=10) as client,
        ):
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["default_documents"] is False


class TestListing:
    def test_roots_folders_counts_and_index_state(
        self, uvicorn: StartServer, handbook: Path, elsewhere: dict[str, str]
    ) -> None:
        with (
            uvicorn(**elsewhere, APP_DOCS=str(handbook)) as server,
            httpx.Client(base_url=server.base_url, timeout=10) as client,
        ):
            before = client.get("/api/v1/documents").json()
            assert before["default"] == "handbook"
            (root,) = before["roots"]
            assert root["name"] == "handbook"
            assert root["files"] == 2
            assert root["folders"] == [
                {"path": "handbook", "files": 2},
                {"path": "handbook/travel", "files": 1},
            ]
            assert root["index"] == {"indexed_files": None, "updated_at": None}
            assert str(handbook) not in client.get("/api/v1/documents").text

            client.post(RUNS, json={"question": "Annual leave?", "run_id": "l1"})
            _finish(client, "l1")
            after = client.get("/api/v1/documents").json()["roots"][0]["index"]
            assert after["indexed_files"] == 2
            assert after["updated_at"].endswith("Z")


class TestFrontDoor:
    def test_root_leads_to_the_demo(self, uvicorn: StartServer, elsewhere: dict[str, str]) -> None:
        with (
            uvicorn(APP_BASE_DIR=str(REPO), APP_OUTPUT_DIR=elsewhere["APP_OUTPUT_DIR"]) as server,
            httpx.Client(base_url=server.base_url, timeout=10) as client,
        ):
            response = client.get("/")
            assert response.status_code == 307
            assert response.headers["location"] == "/demo/"
            assert client.get("/", follow_redirects=True).status_code == 200

    def test_start_up_log_says_what_is_served(
        self, uvicorn: StartServer, handbook: Path, elsewhere: dict[str, str]
    ) -> None:
        with uvicorn(**elsewhere, APP_DOCS=str(handbook)) as server:
            # Logged once the roots are read, which does not hold up readiness.
            wait_log(server, "backend: files+threads", timeout=10)
            log = server.log_path.read_text()
        assert "documents: 'handbook' (2 markdown files, not indexed yet)" in log
        assert "writer: offline extractive (no model)" in log
        assert "backend: files+threads" in log


@pytest.fixture
def serve_command(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """`python -m app serve ...` as a person types it, on a free port."""
    servers: list[Server] = []

    def start(*args: str, cwd: Path) -> Server:
        env = clean_env(APP_OUTPUT_DIR=str(tmp_path / "output"), PYTHONPATH=str(REPO))
        port = free_port()
        command = [sys.executable, "-m", "app", "serve", "--port", str(port), *args]
        server = start_command(command, env, tmp_path / f"serve-{port}.log", port=port, cwd=cwd)
        servers.append(server)
        try:
            wait_http(server, "/healthz", timeout=30)
        except ProcessFailed as exc:
            pytest.fail(str(exc))
        return server

    yield start
    for server in servers:
        server.stop()


class TestServeCommand:
    def test_serve_docs_path_is_the_one_setting(
        self, serve_command: Callable[..., Server], handbook: Path, tmp_path: Path
    ) -> None:
        somewhere = tmp_path / "cwd"
        somewhere.mkdir()
        server = serve_command("--docs", str(handbook), cwd=somewhere)
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            created = client.post(RUNS, json={"question": "Annual leave?", "run_id": "s1"})
            assert created.status_code == 202, created.text
            assert _finish(client, "s1")["status"] == "completed"
            assert "26 days" in client.get(f"{RUNS}/s1/output").json()["content"]
        log = server.log_path.read_text()
        assert f"demo: {server.base_url}/demo/" in log
        assert f"API docs: {server.base_url}/docs" in log

    def test_serve_docs_refuses_a_missing_folder(self, tmp_path: Path) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "app", "serve", "--docs", str(tmp_path / "nope")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2
        assert "no such folder" in done.stderr
