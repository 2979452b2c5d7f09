"""web-demo/answer-client.js in Chromium against real uvicorn: what a frontend copying it gets.

Each test imports the module into a page of the server's own origin and drives it with
``page.evaluate``; the handlers record what they receive in ``window.log``.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.api.conftest import FILE_GATED, REPO, Server, uvicorn_server_at
from tests.api.gated_pipeline import FILE_GATED_ANSWER, RELEASE_FILE, delta_file, delta_text
from tests.support.processes import free_port

pytestmark = pytest.mark.slow

Uvicorn = Callable[..., AbstractContextManager[Server]]
QUESTION = "How many battery-electric trucks did Northwind have at the end of 2024?"

# Start a run (or take run_id) and follow it, recording everything the handlers receive.
FOLLOW = """
async ([question, runId]) => {
  const { AnswerClient } = await import("/demo/answer-client.js");
  const client = new AnswerClient({ pollMs: 200, firstEventMs: 1500 });
  window.client = client;
  window.log = { statuses: [], stages: [], deltas: [], modes: [], final: null, error: null };
  const id = runId || (await client.start({ question })).run_id;
  window.runId = id;
  const follower = client.follow(id, {
    onStatus: (s) => window.log.statuses.push(s.status),
    onProgress: (p) => window.log.stages.push(p.stage),
    onDelta: (text) => window.log.deltas.push(text),
    onMode: (mode) => window.log.modes.push(mode),
  });
  window.follower = follower;
  follower.done.then((s) => { window.log.final = s; }, (e) => { window.log.error = e.message; });
  return id;
}
"""


def _log(page: Page) -> dict[str, Any]:
    log: dict[str, Any] = page.evaluate("window.log")
    return log


def _wait(page: Page, condition: str, timeout_ms: int = 20_000) -> None:
    # A function, not an expression: the page's CSP forbids evaluating strings.
    page.wait_for_function(f"() => {condition}", timeout=timeout_ms)


def _follow(page: Page, question: str = QUESTION, run_id: str | None = None) -> str:
    run: str = page.evaluate(FOLLOW, [question, run_id])
    return run


def test_a_run_followed_live_to_its_end(uvicorn: Uvicorn, page: Page, tmp_path: Path) -> None:
    with uvicorn(APP_BASE_DIR=str(REPO), APP_OUTPUT_DIR=str(tmp_path / "output")) as server:
        page.goto(server.base_url + "/demo/")
        run_id = _follow(page)
        _wait(page, "window.log.final !== null")
        log = _log(page)
        content = page.evaluate("async (id) => (await window.client.output(id)).content", run_id)

    assert log["final"]["status"] == "completed"
    assert log["statuses"][-1] == "completed"
    assert "polling" not in log["modes"]
    assert log["stages"][0] == "load_documents"
    assert "".join(log["deltas"]) == content  # every piece once, in order
    assert "186" in content


def test_without_an_event_stream_it_polls_to_the_end(
    uvicorn: Uvicorn, page: Page, tmp_path: Path
) -> None:
    with uvicorn(APP_BASE_DIR=str(REPO), APP_OUTPUT_DIR=str(tmp_path / "output")) as server:
        page.route("**/events*", lambda route: route.abort())  # a proxy that drops SSE
        page.goto(server.base_url + "/demo/")
        _follow(page)
        _wait(page, "window.log.final !== null")
        log = _log(page)
    assert "polling" in log["modes"]
    assert log["final"]["status"] == "completed"


def test_cancel_ends_the_followed_run(
    uvicorn: Uvicorn, page: Page, tmp_path: Path, base_dir: Path
) -> None:
    env = {"APP_BASE_DIR": str(base_dir), "APP_OUTPUT_DIR": str(tmp_path / "output")}
    with uvicorn(**env, APP_PIPELINE=FILE_GATED) as server:
        page.goto(server.base_url + "/demo/")
        run_id = _follow(page, "q?")
        _wait(page, "window.log.stages.includes('gate')")
        answer = page.evaluate("async (id) => await window.client.cancel(id)", run_id)
        _wait(page, "window.log.final !== null")
        log = _log(page)
        refused = page.evaluate(
            "async () => { try { await window.client.status('no-such-run'); }"
            " catch (e) { return [e.name, e.status, e.code, e.message]; } }"
        )
    assert answer["run_id"] == run_id
    assert log["final"]["status"] == "stopped"
    assert log["final"]["finish_reason"] == "cancelled"
    assert refused[:3] == ["ApiError", 404, "run_not_found"]
    assert "no-such-run" in refused[3]


def test_a_dropped_connection_resumes_without_losing_or_repeating_events(
    page: Page, tmp_path: Path, base_dir: Path
) -> None:
    output = tmp_path / "output"
    env = {"APP_BASE_DIR": str(base_dir), "APP_OUTPUT_DIR": str(output)}
    port = free_port()
    app = "app.api.main:app"
    with uvicorn_server_at(tmp_path, port, app, {**env, "APP_PIPELINE": FILE_GATED}) as first:
        page.goto(first.base_url + "/demo/")
        run_id = _follow(page, "q?")
        _wait(page, "window.log.stages.includes('gate')")
        (output / run_id / delta_file(1)).touch()
        _wait(page, "window.log.deltas.length === 1")
        first.process.send_signal(signal.SIGKILL)  # the connection drops mid-run
        first.process.wait(timeout=10)
    _wait(page, "window.log.modes.includes('reconnecting')")
    # The same address again; the run's process is gone, so the new server records it as
    # interrupted, and the stream resumes after the last event the page had.
    started = time.monotonic()
    with uvicorn_server_at(tmp_path, port, app, env):
        _wait(page, "window.log.final !== null", timeout_ms=30_000)
        log = _log(page)
    assert time.monotonic() - started < 30
    assert log["deltas"] == [delta_text(1)]  # not repeated after the reconnect
    assert log["final"]["status"] == "failed"
    assert log["final"]["finish_reason"] == "interrupted"
    assert log["statuses"] == ["queued", "running", "failed"]
    assert FILE_GATED_ANSWER not in "".join(log["deltas"])
    assert not (output / run_id / RELEASE_FILE).exists()
