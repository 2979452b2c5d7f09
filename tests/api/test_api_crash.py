"""Crash safety with real uvicorn processes: SIGKILL mid-run, damaged state, hostile paths.

test_api_restart.py covers a new app over the same output/ in process, one killed server
with one blocked run, and hand-written corrupt state files. This module goes further with
real servers: completed runs of the real offline engine survive a SIGKILL byte for byte,
interrupted runs are reconciled with a terminal status event in their events.jsonl (also
after a torn last line), every JSON file on disk parses, a state file truncated on disk
fails only its own run, and hostile ids and paths over real HTTP are 404/422 and write
nothing outside output/.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import BLOCKING, GATED, REPO, TERMINAL, poll_status, wait_for_state_file

pytestmark = pytest.mark.slow

RUNS = "/api/v1/runs"
Uvicorn = Callable[..., AbstractContextManager[Any]]
QUESTIONS = {
    "done-1": "What are the main climate initiatives of Harbor City Council?",
    "done-2": "How many battery-electric trucks does Northwind run?",
    "done-3": "What does Verdant report about emissions?",
}


def _snapshot(client: httpx.Client, run_id: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for suffix in ("/status", "/output", "/context", ""):
        response = client.get(f"{RUNS}/{run_id}{suffix}")
        seen[suffix] = (response.status_code, response.json())
    return seen


def _kill(server: Any) -> None:
    server.process.send_signal(signal.SIGKILL)
    # Reap it: a zombie keeps its /proc entry and its pid would still look alive.
    assert server.process.wait(timeout=10) == -signal.SIGKILL


def _events(path: Path) -> tuple[list[dict[str, Any]], bytes]:
    """The complete lines of an events.jsonl (each must parse), and a trailing partial line."""
    raw = path.read_bytes()
    complete, _, torn = raw.rpartition(b"\n")
    if not complete and not raw.endswith(b"\n"):
        complete, torn = b"", raw
    return [json.loads(line) for line in complete.splitlines()], torn


def _sse(client: httpx.Client, run_id: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every event of a finished run's stream; the server must end the stream by itself."""
    found: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    with client.stream("GET", f"{RUNS}/{run_id}/events", timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            assert time.monotonic() < deadline, f"stream of {run_id} did not end: {found}"
            if not line:
                if "event" in current:
                    found.append(current)
                current = {}
            elif line.startswith(("event:", "id:", "data:")):
                name, _, value = line.partition(":")
                current[name] = value.strip()
    if "event" in current:
        found.append(current)
    return found


def _tree(base: Path, *, skip: str) -> dict[str, bytes | None]:
    """Every path under ``base`` except ``skip/`` (and uvicorn's logs): content of files."""
    return {
        str(p.relative_to(base)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(base.rglob("*"))
        if p.relative_to(base).parts[0] != skip and not p.name.startswith("uvicorn-")
    }


@pytest.fixture
def output(tmp_path: Path) -> Path:
    return tmp_path / "output"


class TestKilledServers:
    def test_a_sigkill_keeps_finished_runs_and_reconciles_running_ones(
        self, uvicorn: Uvicorn, output: Path
    ) -> None:
        real = {
            "APP_BASE_DIR": str(REPO),
            "APP_OUTPUT_DIR": str(output),
            "APP_LLM_PROVIDER": "extractive",
        }
        # 1. The real offline engine completes several runs; then its server is killed.
        with uvicorn(**real) as server, httpx.Client(base_url=server.base_url, timeout=10) as c:
            for run_id, question in QUESTIONS.items():
                response = c.post(RUNS, json={"question": question, "run_id": run_id})
                assert response.status_code == 202, response.text
            for run_id in QUESTIONS:
                status = poll_status(c, run_id, TERMINAL, timeout=30)
                assert status["status"] in {"completed", "completed_with_gaps"}, status
            before = {run_id: _snapshot(c, run_id) for run_id in QUESTIONS}
            _kill(server)
        files_before = {
            p: p.read_bytes() for run_id in QUESTIONS for p in (output / run_id).iterdir()
        }

        # 2. A second server over the same output/ holds two runs running; it is killed.
        blocking = {**real, "APP_PIPELINE": BLOCKING, "APP_MAX_WORKERS": "2"}
        with uvicorn(**blocking) as server, httpx.Client(base_url=server.base_url, timeout=10) as c:
            for run_id in ("doomed", "torn"):
                response = c.post(RUNS, json={"question": "q?", "run_id": run_id})
                assert response.status_code == 202, response.text
            for run_id in ("doomed", "torn"):
                poll_status(c, run_id, {"running"}, timeout=10)
                # /status answers from memory; the state file follows a moment later.
                wait_for_state_file(output / run_id / "api_state.json", "running")
            _kill(server)
        for run_id in ("doomed", "torn"):
            left = json.loads((output / run_id / "api_state.json").read_text())
            assert left["status"] == "running"  # what the dead process left behind
        # A write torn by the crash: half an event, no newline.
        torn_log = output / "torn" / "events.jsonl"
        torn_events_before, _ = _events(torn_log)
        with torn_log.open("ab") as handle:
            handle.write(b'{"id":99,"event":"progress","data":{"run_id":"to')

        # 3. A new server over the same output/.
        with uvicorn(**real) as server, httpx.Client(base_url=server.base_url, timeout=10) as c:
            for run_id in QUESTIONS:
                assert _snapshot(c, run_id) == before[run_id], run_id
            for run_id in ("doomed", "torn"):
                status = c.get(f"{RUNS}/{run_id}/status").json()
                assert status["status"] == "failed", status
                assert status["finish_reason"] == "interrupted", status
                assert status["error"]["code"] == "interrupted", status
                assert c.get(f"{RUNS}/{run_id}/output").json()["code"] == "no_output"
                # The stream of an interrupted run ends with its terminal status.
                streamed = _sse(c, run_id)
                assert streamed[-1]["event"] == "status", streamed
                assert json.loads(streamed[-1]["data"]) == status
                ids = [int(e["id"]) for e in streamed]
                assert ids == sorted(set(ids)), ids
            for run_id in QUESTIONS:
                streamed = _sse(c, run_id)
                assert json.loads(streamed[-1]["data"]) == before[run_id]["/status"][1]
            listed = c.get(RUNS).json()
            assert {i["run_id"] for i in listed["items"]} == {*QUESTIONS, "doomed", "torn"}

        # Nothing of a finished run changed on disk, not even its events.
        for path, content in files_before.items():
            assert path.read_bytes() == content, path
        # No truncated JSON anywhere, and every complete line of every events.jsonl parses.
        for path in output.rglob("*.json"):
            json.loads(path.read_bytes())
        for path in output.rglob("events.jsonl"):
            if path == torn_log:
                continue  # below
            events, torn = _events(path)
            assert torn == b"", (path, torn)
            assert events, path
            assert [e["id"] for e in events] == list(range(1, len(events) + 1)), path
        # The reconciled run's log ends with the terminal status event written after the kill.
        events, _ = _events(output / "doomed" / "events.jsonl")
        assert events[-1]["event"] == "status", events[-1]
        assert events[-1]["data"]["status"] == "failed", events[-1]
        assert events[-1]["data"]["finish_reason"] == "interrupted", events[-1]
        # The torn log: what was complete before the kill is kept, the fragment stays on a
        # line of its own (readers skip it), and the terminal status event written after the
        # restart is a whole line of its own after it.
        raw = torn_log.read_bytes()
        kept = b"".join(
            json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            for e in torn_events_before
        )
        assert raw.startswith(kept), raw[:500]
        lines = raw[len(kept) :].splitlines()
        assert len(lines) == 2, lines
        last = json.loads(lines[1])
        assert last["event"] == "status", last
        assert last["data"]["status"] == "failed", last
        assert last["id"] == torn_events_before[-1]["id"] + 1, last

    def test_a_truncated_state_file_fails_only_its_run(
        self, uvicorn: Uvicorn, tmp_path: Path
    ) -> None:
        env = {
            "APP_BASE_DIR": str(REPO),
            "APP_OUTPUT_DIR": str(tmp_path / "output"),
            "APP_PIPELINE": GATED,  # no gate in the server's process: runs complete at once
        }
        run_ids = ["good-1", "bad", "good-2"]
        with uvicorn(**env) as server, httpx.Client(base_url=server.base_url, timeout=10) as c:
            for run_id in run_ids:
                response = c.post(RUNS, json={"question": "q?", "run_id": run_id})
                assert response.status_code == 202, response.text
                poll_status(c, run_id, {"completed"}, timeout=10)
            before = {run_id: _snapshot(c, run_id) for run_id in ("good-1", "good-2")}
        state = tmp_path / "output" / "bad" / "api_state.json"
        raw = state.read_bytes()
        state.write_bytes(raw[: len(raw) // 2])

        with uvicorn(**env) as server, httpx.Client(base_url=server.base_url, timeout=10) as c:
            assert c.get("/readyz").status_code == 200
            status = c.get(f"{RUNS}/bad/status")
            assert status.status_code == 200, status.text
            body = status.json()
            assert body["status"] == "failed", body
            assert body["error"]["code"] == "state_unreadable", body
            assert "api_state.json" in body["error"]["message"]
            assert str(tmp_path) not in status.text
            assert c.get(f"{RUNS}/bad").status_code == 200
            for run_id, seen in before.items():
                assert _snapshot(c, run_id) == seen, run_id
            listed = c.get(RUNS).json()
            assert {i["run_id"] for i in listed["items"]} == set(run_ids)
            statuses = {i["run_id"]: i["status"] for i in listed["items"]}
            assert statuses == {"good-1": "completed", "bad": "failed", "good-2": "completed"}
            # The server still takes new runs next to the damaged one.
            response = c.post(RUNS, json={"question": "q?", "run_id": "after"})
            assert response.status_code == 202, response.text
            poll_status(c, "after", {"completed"}, timeout=10)


# --------------------------------------------------------------------------- path safety

LONG = "a" * 10_240
HOSTILE_RUN_IDS = [
    "%252e%252e%252f%252e%252e%252fetc",  # double-encoded ../../etc
    "%252e%252e",
    "..%255c..%255cwindows",  # double-encoded backslash
    "%2e%2e%5c%2e%2e%5cetc",  # ..\..\etc
    "..%5c..%5c",
    "%5c%5cserver%5cshare",
    "x%00y",
    "%00",
    "..%00",
    "%2e%2e%2f%00",
    "%c0%ae%c0%ae%2f",  # overlong UTF-8 for "."
    "..%c0%af",
    LONG,
    "%2e%2e%2f" * 1100,  # ~10 KB of encoded traversal
]
HOSTILE_BODY_RUN_IDS = [
    "%2e%2e%2f",
    "..%2f..%2fetc",
    "%252e%252e%252f",
    "..\\..\\etc",
    "x\\y",
    "x\x00y",
    LONG,
    "a" + "/.." * 3000,
]
HOSTILE_MARKDOWN_PATHS = [
    "%2e%2e%2f",
    "documents/%2e%2e%2f%2e%2e%2f",
    "documents/..%2f..%2f",
    "%252e%252e%252f",
    "documents/%252e%252e%252f%252e%252e",
    "documents\\..\\..\\etc",
    "..\\..",
    "documents/\x00/../..",
    "\x00",
    "documents/" + "a" * 10_000,
    "documents/" + "../" * 300,
    "documents/" + "x/" * 3000,
    "\\\\server\\share",
    "C:\\Windows",
    "file:///etc",
    "~/",
]


@pytest.fixture
def hostile_server(uvicorn: Uvicorn, tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    base = tmp_path / "base"
    (base / "documents").mkdir(parents=True)
    (base / "documents" / "a.md").write_text("# A\n\nSomething to read.\n")
    env = {"APP_BASE_DIR": str(base), "APP_PIPELINE": GATED}
    with uvicorn(**env) as server, httpx.Client(base_url=server.base_url, timeout=10) as client:
        response = client.post(RUNS, json={"question": "q?", "run_id": "x"})
        assert response.status_code == 202, response.text
        poll_status(client, "x", {"completed"}, timeout=10)
        yield client, base


class TestKilledRightAfterAccepting:
    """A 202 means the run is on disk (docs/api.md): a SIGKILL at once after it loses none,
    also when many creates were committed together (the store's group commit)."""

    CLIENTS = 32

    def _env(self, output: Path) -> dict[str, str]:
        # One worker that never finishes: almost every run is still queued when killed.
        return {
            "APP_BASE_DIR": str(REPO),
            "APP_OUTPUT_DIR": str(output),
            "APP_PIPELINE": BLOCKING,
            "APP_MAX_WORKERS": "1",
            "APP_MAX_QUEUED": "100000",
        }

    async def _post(
        self, base_url: str, accepted: list[str], *, count: int, enough: asyncio.Event | None
    ) -> None:
        """``count`` POSTs from CLIENTS concurrent connections; each 202's id is recorded the
        moment it arrives. With ``enough``: it is set at the 64th 202, and from then on a
        failed request (the server was killed) ends its client."""
        remaining = iter(range(count))
        limits = httpx.Limits(max_connections=self.CLIENTS)
        async with httpx.AsyncClient(base_url=base_url, timeout=10, limits=limits) as client:

            async def one_client() -> None:
                for i in remaining:
                    try:
                        response = await client.post(RUNS, json={"question": f"q {i}?"})
                    except httpx.HTTPError:
                        assert enough is not None, "a POST failed with no kill"
                        assert enough.is_set(), "a POST failed before the kill"
                        return
                    assert response.status_code == 202, response.text
                    accepted.append(response.json()["run_id"])
                    if enough is not None and len(accepted) >= 64:
                        enough.set()

            await asyncio.gather(*(one_client() for _ in range(self.CLIENTS)))

    def _assert_all_kept(self, uvicorn: Uvicorn, output: Path, accepted: list[str]) -> None:
        with (
            uvicorn(**self._env(output)) as server,
            httpx.Client(base_url=server.base_url, timeout=10) as c,
        ):
            for run_id in accepted:
                response = c.get(f"{RUNS}/{run_id}/status")
                assert response.status_code == 200, (run_id, response.text)
                status = response.json()
                # Queued or running when its process died: recorded as interrupted.
                assert status["status"] == "failed", status
                assert status["finish_reason"] == "interrupted", status
                state = json.loads((output / run_id / "api_state.json").read_bytes())
                assert state["status"] == "failed", state
                events, torn = _events(output / run_id / "events.jsonl")
                assert torn == b"", run_id
                assert events[0]["data"]["status"] == "queued", events[0]
                assert events[-1]["data"]["status"] == "failed", events[-1]
        # Start-up removed whatever was being staged when the process died.
        assert not [p.name for p in output.iterdir() if p.name.startswith(".creating-")]

    def test_a_sigkill_right_after_the_last_202_loses_no_run(
        self, uvicorn: Uvicorn, output: Path
    ) -> None:
        accepted: list[str] = []
        with uvicorn(**self._env(output)) as server:
            asyncio.run(self._post(server.base_url, accepted, count=256, enough=None))
            _kill(server)  # nothing in between: no shutdown, no time to write anything more
        assert len(set(accepted)) == 256
        self._assert_all_kept(uvicorn, output, accepted)

    def test_a_sigkill_among_concurrent_creates_loses_no_run_answered_202(
        self, uvicorn: Uvicorn, output: Path
    ) -> None:
        accepted: list[str] = []

        async def post_then_kill(server: Any) -> None:
            enough = asyncio.Event()
            posting = asyncio.ensure_future(
                self._post(server.base_url, accepted, count=100_000, enough=enough)
            )
            await asyncio.wait_for(enough.wait(), timeout=30)
            # Killed while 32 clients post: creates are being staged, fsynced and renamed
            # in groups at this instant; some 202s are on their way.
            server.process.send_signal(signal.SIGKILL)
            await asyncio.wait_for(posting, timeout=30)

        with uvicorn(**self._env(output)) as server:
            asyncio.run(post_then_kill(server))
            assert server.process.wait(timeout=10) == -signal.SIGKILL
        assert len(accepted) >= 64
        self._assert_all_kept(uvicorn, output, accepted)


class TestPathSafety:
    def test_hostile_run_ids_in_the_url_are_404_or_422(
        self, hostile_server: tuple[httpx.Client, Path]
    ) -> None:
        client, base = hostile_server
        tree = _tree(base, skip="output")
        runs_before = sorted(p.name for p in (base / "output").iterdir())
        for run_id in HOSTILE_RUN_IDS:
            for method, suffix in (
                ("GET", ""),
                ("GET", "/status"),
                ("GET", "/output"),
                ("GET", "/context"),
                ("GET", "/events"),
                ("POST", "/cancel"),
                ("DELETE", ""),
            ):
                # The id is sent exactly as written (already percent-encoded where it says so).
                url = httpx.URL(client.base_url.join(RUNS)).copy_with(
                    raw_path=f"{RUNS}/{run_id}{suffix}".encode()
                )
                response = client.request(method, url)
                if response.status_code == 307:
                    # An id ending in an encoded "/" ends the decoded path in "/": Starlette's
                    # redirect_slashes answers 307 to the same path without it, on this server.
                    assert run_id.lower().endswith("%2f"), (run_id[:60], response.headers)
                    location = httpx.URL(response.headers["location"])
                    assert (location.host, location.port) == (url.host, url.port), location
                    response = client.request(method, location)
                assert response.status_code in {404, 422}, (method, run_id[:60], response.text)
                body = response.json()
                assert {"code", "message"} <= set(body), body
                assert str(base) not in response.text
        assert _tree(base, skip="output") == tree
        assert sorted(p.name for p in (base / "output").iterdir()) == runs_before
        assert client.get(f"{RUNS}/x/status").json()["status"] == "completed"

    def test_hostile_run_ids_and_markdown_paths_in_the_body_are_422(
        self, hostile_server: tuple[httpx.Client, Path]
    ) -> None:
        client, base = hostile_server
        tree = _tree(base, skip="output")
        runs_before = sorted(p.name for p in (base / "output").iterdir())
        payloads: list[dict[str, str]] = [
            {"question": "q?", "run_id": run_id} for run_id in HOSTILE_BODY_RUN_IDS
        ] + [{"question": "q?", "markdown_path": path} for path in HOSTILE_MARKDOWN_PATHS]
        for payload in payloads:
            response = client.post(RUNS, json=payload)
            assert response.status_code == 422, (payload, response.text[:300])
            body = response.json()
            assert body["code"] == "validation_error", body
            assert str(base) not in response.text
        assert _tree(base, skip="output") == tree
        assert sorted(p.name for p in (base / "output").iterdir()) == runs_before
        assert not (base.parent / "etc").exists()
