"""GET /api/v1/runs/{run_id}/events: the Server-Sent Events contract of docs/api.md.

Streams are read with a real SSE client (httpx-sse) from real uvicorn: over ASGITransport a
response is buffered whole, so a stream that never ends would hang and one that ends would
not show how it is delivered. Every stream is bounded with ``anyio.fail_after``; the tests
wait for the event they need (an SSE event, a file the pipeline reacts to, a status), never
for time to pass.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, aclosing, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from asgi_lifespan import LifespanManager
from httpx_sse import ServerSentEvent, aconnect_sse
from uvicorn import Config as UvicornConfig
from uvicorn import Server as UvicornServer

from app.api.main import create_app
from app.api.services.backends.files.event_log import EventLog
from app.api.services.run_store import RunEvent
from tests.api import gated_pipeline
from tests.api.conftest import (
    BLOCKING,
    FILE_GATED,
    REPO,
    STATUS_KEYS,
    TERMINAL,
    Server,
    _wait_for_status,
)
from tests.api.gated_pipeline import FILE_GATED_ANSWER, RELEASE_FILE, delta_file, delta_text

pytestmark = pytest.mark.anyio

RUNS = "/api/v1/runs"
QUESTION = "How many battery-electric trucks did Northwind have at the end of 2024?"
# The real engine's stages without SQL, in order (app/modules/orchestrator/module.py).
STAGES = ["load_documents", "plan", "retrieve", "write", "check", "save"]
STREAM_TIMEOUT = 10.0
CYCLES = 1000
RETRY_MS = 2000

StartServer = Callable[..., AbstractContextManager[Server]]


@dataclass(frozen=True)
class Event:
    """One SSE event as the contract describes it: sequence number, name, JSON data."""

    id: int
    event: str
    data: dict[str, Any]


def _event(sse: ServerSentEvent) -> Event:
    return Event(int(sse.id), sse.event, sse.json())


class Stream:
    """One open event stream: its response and its events, read one at a time."""

    def __init__(self, response: httpx.Response, events: AsyncGenerator[ServerSentEvent]):
        self.response = response
        self.raw: list[ServerSentEvent] = []
        self._events = events

    async def next(self) -> Event:
        """The next event; StopAsyncIteration once the server has ended the stream."""
        sse = await anext(self._events)
        self.raw.append(sse)
        return _event(sse)

    async def until(self, done: Callable[[Event], bool]) -> list[Event]:
        """Events up to and including the first one ``done`` accepts."""
        seen = [await self.next()]
        while not done(seen[-1]):
            seen.append(await self.next())
        return seen

    async def rest(self) -> list[Event]:
        """Every remaining event; returns when the server ends the stream."""
        return [_event(sse) async for sse in self._events]


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient,
    run_id: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> AsyncIterator[Stream]:
    async with aconnect_sse(
        client, "GET", f"{RUNS}/{run_id}/events", headers=headers or {}, params=params
    ) as source:
        assert source.response.status_code == 200, await source.response.aread()
        async with aclosing(source.aiter_sse()) as events:
            yield Stream(source.response, events)


async def read_all(client: httpx.AsyncClient, run_id: str, **options: Any) -> list[Event]:
    async with open_stream(client, run_id, **options) as stream:
        return await stream.rest()


def _logged(output: Path, run_id: str) -> list[Event]:
    """The run's events.jsonl, the record every process numbers its stream from."""
    lines = (output / run_id / "events.jsonl").read_text().splitlines()
    return [Event(**json.loads(line)) for line in lines]


def _touch(output: Path, run_id: str, name: str) -> None:
    """Create a file the file-gated pipeline of the run reacts to."""
    (output / run_id / name).touch()


def _is_gate(event: Event) -> bool:
    return event.event == "progress" and event.data["stage"] == "gate"


def _is_terminal(event: Event) -> bool:
    return event.event == "status" and event.data["status"] in TERMINAL


async def _post(client: httpx.AsyncClient, run_id: str, question: str = "q?") -> None:
    response = await client.post(RUNS, json={"question": question, "run_id": run_id})
    assert response.status_code == 202, response.text


async def _until(condition: Callable[[], bool], *, timeout: float, what: Callable[[], str]) -> None:
    """Poll ``condition`` until it holds (bounded): for counters that settle asynchronously."""
    try:
        with anyio.fail_after(timeout):
            while not condition():
                await anyio.sleep(0.02)  # poll interval, not synchronisation
    except TimeoutError:
        pytest.fail(f"within {timeout} s: {what()}")


async def _until_logged_end(output: Path, run_id: str) -> list[Event]:
    """The run's log once its terminal status event is in it.

    /status turns terminal a moment before the event is appended (the state is recorded
    first), so reading the log right after the poll could miss the last event.
    """
    with anyio.fail_after(STREAM_TIMEOUT):
        while True:
            logged = _logged(output, run_id)
            if logged and logged[-1].event == "status" and logged[-1].data["status"] in TERMINAL:
                return logged
            await anyio.sleep(0.02)  # poll interval


def _fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def output(tmp_path: Path) -> Path:
    return tmp_path / "output"


@pytest.fixture
def engine_server(uvicorn: StartServer, output: Path) -> Iterator[Server]:
    """The real offline engine over the bundled documents."""
    with uvicorn(APP_BASE_DIR=str(REPO), APP_OUTPUT_DIR=str(output)) as running:
        yield running


@pytest.fixture
def file_gated_env(base_dir: Path, output: Path) -> dict[str, str]:
    """A server whose runs the test steers through files in output/<run_id>/."""
    return {
        "APP_BASE_DIR": str(base_dir),
        "APP_OUTPUT_DIR": str(output),
        "APP_PIPELINE": FILE_GATED,
    }


@asynccontextmanager
async def _client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=STREAM_TIMEOUT) as client:
        yield client


@pytest.fixture
async def finished(
    engine_server: Server, output: Path, anyio_backend: str
) -> AsyncIterator[tuple[httpx.AsyncClient, list[Event]]]:
    """A client of the real engine, and the events of a run it has completed."""
    async with _client(engine_server) as client:
        await _post(client, "done", QUESTION)
        await _wait_for_status(client, "done", TERMINAL, timeout=STREAM_TIMEOUT)
        yield client, await _until_logged_end(output, "done")


# --------------------------------------------------------------------------- tests


@pytest.mark.slow
class TestFullRun:
    async def test_offline_run_streams_every_stage_then_ends(
        self, engine_server: Server, output: Path
    ) -> None:
        async with _client(engine_server) as client:
            await _post(client, "full", QUESTION)
            with anyio.fail_after(STREAM_TIMEOUT):
                events = await read_all(client, "full")  # returns only if the stream ends
            status = (await client.get(f"{RUNS}/full/status")).json()
            content = (await client.get(f"{RUNS}/full/output")).json()["content"]

        assert [e.id for e in events] == list(range(1, len(events) + 1))
        assert events == _logged(output, "full")
        statuses = [e for e in events if e.event == "status"]
        assert [e.data["status"] for e in statuses] == ["queued", "running", "completed"]
        assert events[0] == statuses[0]
        assert events[1] == statuses[1]
        assert events[-1] == statuses[-1]
        for each in statuses:
            assert set(each.data) == STATUS_KEYS
        assert events[-1].data == status

        progress = [e.data for e in events if e.event == "progress"]
        assert [p["stage"] for p in progress] == STAGES
        assert [p["step"] for p in progress] == list(range(1, len(STAGES) + 1))
        assert {p["total_steps"] for p in progress} == {len(STAGES)}
        assert {p["run_id"] for p in progress} == {"full"}

        deltas = [e.data for e in events if e.event == "answer_delta"]
        assert deltas
        assert {d["run_id"] for d in deltas} == {"full"}
        assert "".join(d["text"] for d in deltas) == content
        # The answer is written between the "write" and "save" stages.
        kinds = [e.data["stage"] if e.event == "progress" else e.event for e in events]
        at = [i for i, kind in enumerate(kinds) if kind == "answer_delta"]
        assert kinds.index("write") < at[0] <= at[-1] < kinds.index("save"), kinds

    async def test_headers_and_retry_arrive_while_the_run_is_live(
        self, uvicorn: StartServer, file_gated_env: dict[str, str]
    ) -> None:
        with uvicorn(**file_gated_env) as server:
            async with _client(server) as client:
                await _post(client, "live")
                with anyio.fail_after(STREAM_TIMEOUT):
                    async with open_stream(client, "live") as stream:
                        first = await stream.next()
                        await stream.until(_is_gate)

                        headers = stream.response.headers
                        assert headers["content-type"].startswith("text/event-stream")
                        assert headers["cache-control"] in {"no-store", "no-cache"}
                        assert headers["x-accel-buffering"] == "no"
                        assert first.id == 1
                        # The reconnect delay is sent once, with the first event.
                        assert [sse.retry for sse in stream.raw] == [RETRY_MS, None, None]

    async def test_a_heartbeat_comment_keeps_an_idle_stream_alive(
        self, uvicorn: StartServer, file_gated_env: dict[str, str]
    ) -> None:
        with uvicorn(**file_gated_env, APP_SSE_PING_S="0.2") as server:
            async with _client(server) as client:
                await _post(client, "idle")
                with anyio.fail_after(STREAM_TIMEOUT):
                    url = "/api/v1/runs/idle/events"
                    heartbeat = None
                    async with client.stream("GET", url) as response:
                        # The run waits at its gate: nothing but heartbeats can arrive now.
                        async for line in response.aiter_lines():
                            if line.startswith(":"):
                                heartbeat = line
                                break
        # A stream that ended without one would leave the loop too: the comment must be seen.
        assert heartbeat is not None


@pytest.mark.slow
class TestResume:
    async def test_last_event_id_header_continues_after_it(
        self, uvicorn: StartServer, file_gated_env: dict[str, str], output: Path
    ) -> None:
        with uvicorn(**file_gated_env) as server:
            async with _client(server) as client:
                await _post(client, "resume")
                with anyio.fail_after(STREAM_TIMEOUT):
                    async with open_stream(client, "resume") as stream:
                        head = await stream.until(_is_gate)
                    last = head[-1].id
                    # Written while nobody listens: the reconnect gets it from the log.
                    _touch(output, "resume", delta_file(1))
                    headers = {"Last-Event-ID": str(last)}
                    async with open_stream(client, "resume", headers=headers) as stream:
                        resumed = [await stream.next()]
                        # Written while the reconnected stream is live.
                        _touch(output, "resume", delta_file(2))
                        resumed.append(await stream.next())
                        _touch(output, "resume", RELEASE_FILE)
                        resumed += await stream.rest()

        assert [e.id for e in head] == list(range(1, last + 1))
        assert [e.id for e in resumed] == list(range(last + 1, last + len(resumed) + 1))
        assert head + resumed == _logged(output, "resume")
        texts = [e.data["text"] for e in resumed if e.event == "answer_delta"]
        assert texts == [delta_text(1), delta_text(2), FILE_GATED_ANSWER]
        assert resumed[-1].data["status"] == "completed"

    async def test_last_event_id_query_parameter(
        self, finished: tuple[httpx.AsyncClient, list[Event]]
    ) -> None:
        client, logged = finished
        k = len(logged) // 2
        with anyio.fail_after(STREAM_TIMEOUT):
            resumed = await read_all(client, "done", params={"last_event_id": str(k)})
        assert resumed == logged[k:]
        assert resumed[0].id == k + 1

    async def test_last_event_id_zero_replays_everything(
        self, finished: tuple[httpx.AsyncClient, list[Event]]
    ) -> None:
        client, logged = finished
        with anyio.fail_after(STREAM_TIMEOUT):
            replayed = await read_all(client, "done", headers={"Last-Event-ID": "0"})
        assert replayed == logged


BEYOND = {"Last-Event-ID": "1000"}


async def _streams_open(client: httpx.AsyncClient) -> int:
    text = (await client.get("/metrics")).text
    line = next(li for li in text.splitlines() if li.startswith("answer_sse_streams_open "))
    return int(float(line.split()[1]))


@pytest.mark.slow
class TestLastEventIdPastTheEnd:
    """A Last-Event-ID beyond the run's last event (stale, or from a run since deleted and
    made again): the stream still ends with the run, whatever state the run is in."""

    async def test_a_running_run_ends_the_stream_with_its_final_status(
        self, uvicorn: StartServer, file_gated_env: dict[str, str], output: Path
    ) -> None:
        with uvicorn(**file_gated_env) as server:
            async with _client(server) as client:
                await _post(client, "past")
                await _wait_for_status(client, "past", {"running"}, timeout=STREAM_TIMEOUT)
                with anyio.fail_after(STREAM_TIMEOUT):
                    async with open_stream(client, "past", headers=BEYOND) as stream:
                        while await _streams_open(client) < 1:
                            await anyio.sleep(0.02)  # poll interval: the subscription is up
                        _touch(output, "past", RELEASE_FILE)
                        events = await stream.rest()  # returns only if the stream ends
        assert [e.event for e in events] == ["status"]
        assert events[0].data["status"] == "completed"

    async def test_a_queued_run_ends_the_stream_when_it_finishes(
        self, uvicorn: StartServer, file_gated_env: dict[str, str], output: Path
    ) -> None:
        with uvicorn(**file_gated_env, APP_MAX_WORKERS="1") as server:
            async with _client(server) as client:
                await _post(client, "first")
                await _wait_for_status(client, "first", {"running"}, timeout=STREAM_TIMEOUT)
                await _post(client, "waiting")
                status = (await client.get(f"{RUNS}/waiting/status")).json()
                assert status["status"] == "queued"
                with anyio.fail_after(STREAM_TIMEOUT):
                    async with open_stream(client, "waiting", headers=BEYOND) as stream:
                        while await _streams_open(client) < 1:
                            await anyio.sleep(0.02)  # poll interval: the subscription is up
                        _touch(output, "first", RELEASE_FILE)
                        await _wait_for_status(
                            client, "waiting", {"running"}, timeout=STREAM_TIMEOUT
                        )
                        _touch(output, "waiting", RELEASE_FILE)
                        events = await stream.rest()
        assert [(e.event, e.data["status"]) for e in events] == [("status", "completed")]

    async def test_a_finished_run_answers_204(
        self, finished: tuple[httpx.AsyncClient, list[Event]]
    ) -> None:
        client, _ = finished
        response = await client.get(f"{RUNS}/done/events", headers=BEYOND)
        assert response.status_code == 204, response.text


@pytest.mark.slow
class TestFinishedRun:
    async def test_a_late_subscriber_gets_the_whole_run_and_the_end(
        self, finished: tuple[httpx.AsyncClient, list[Event]]
    ) -> None:
        client, logged = finished
        with anyio.fail_after(STREAM_TIMEOUT):
            replayed = await read_all(client, "done")
        assert replayed == logged
        assert [e.id for e in replayed] == list(range(1, len(logged) + 1))
        assert replayed[-1].data == (await client.get(f"{RUNS}/done/status")).json()
        assert replayed[-1].data["status"] == "completed"

    async def test_reconnect_after_the_last_event_gets_204(
        self, finished: tuple[httpx.AsyncClient, list[Event]]
    ) -> None:
        client, logged = finished
        response = await client.get(
            f"{RUNS}/done/events", headers={"Last-Event-ID": str(logged[-1].id)}
        )
        assert response.status_code == 204, response.text
        assert response.content == b""


class TestErrors:
    async def test_unknown_run_is_404_before_any_stream(self, serve, settings, error) -> None:
        async with serve(settings()) as client:
            response = await client.get(f"{RUNS}/nope/events")
        body = error(response, 404, "run_not_found")
        assert body["run_id"] == "nope"

    @pytest.mark.parametrize(
        ("headers", "params"),
        [
            ({"Last-Event-ID": "abc"}, {}),
            ({"Last-Event-ID": "-1"}, {}),
            ({}, {"last_event_id": "abc"}),
        ],
    )
    async def test_last_event_id_must_be_a_number(
        self, serve, settings, error, wait_for_status, headers, params
    ) -> None:
        async with serve(settings()) as client:
            await _post(client, "known")
            await wait_for_status(client, "known", TERMINAL)
            response = await client.get(f"{RUNS}/known/events", headers=headers, params=params)
        body = error(response, 422, "validation_error")
        assert body["detail"], body


@pytest.mark.slow
class TestSecondProcess:
    async def test_a_run_of_server_a_is_followed_on_server_b(
        self, uvicorn: StartServer, file_gated_env: dict[str, str], output: Path
    ) -> None:
        with uvicorn(**file_gated_env) as a, uvicorn(**file_gated_env) as b:
            async with _client(a) as client_a, _client(b) as client_b:
                await _post(client_a, "shared")
                with anyio.fail_after(STREAM_TIMEOUT):
                    async with open_stream(client_b, "shared") as stream:
                        seen = await stream.until(_is_gate)
                        # From here on each event reaches B only through its watcher.
                        _touch(output, "shared", delta_file(1))
                        seen.append(await stream.next())
                        assert seen[-1].event == "answer_delta", seen
                        _touch(output, "shared", RELEASE_FILE)
                        seen += await stream.rest()
                    from_a = await read_all(client_a, "shared")
                status_a = (await client_a.get(f"{RUNS}/shared/status")).json()
                status_b = (await client_b.get(f"{RUNS}/shared/status")).json()
                output_b = await client_b.get(f"{RUNS}/shared/output")

        assert seen == _logged(output, "shared")
        assert seen == from_a
        assert [e.id for e in seen] == list(range(1, len(seen) + 1))
        assert _is_terminal(seen[-1])
        assert seen[-1].data == status_a == status_b
        assert status_b["status"] == "completed"
        assert output_b.status_code == 200, output_b.text
        assert output_b.json()["content"] == delta_text(1) + FILE_GATED_ANSWER


@pytest.mark.slow
class TestCancel:
    async def test_cancel_ends_every_stream_with_stopped(
        self, uvicorn: StartServer, base_dir: Path, output: Path
    ) -> None:
        env = {"APP_BASE_DIR": str(base_dir), "APP_OUTPUT_DIR": str(output)}
        with uvicorn(**env, APP_PIPELINE=BLOCKING) as server:
            async with _client(server) as client:
                await _post(client, "halt")
                with anyio.fail_after(STREAM_TIMEOUT):
                    async with (
                        open_stream(client, "halt") as first,
                        open_stream(client, "halt") as second,
                    ):
                        await first.until(_is_gate)
                        await second.until(_is_gate)
                        response = await client.post(f"{RUNS}/halt/cancel")
                        assert response.status_code == 202, response.text
                        ends = [await first.rest(), await second.rest()]
                status = (await client.get(f"{RUNS}/halt/status")).json()

        for end in ends:
            assert end, "the stream ended without the terminal status event"
            assert end[-1].event == "status"
            assert end[-1].data == status
        assert status["status"] == "stopped"
        assert status["finish_reason"] == "cancelled"


@pytest.mark.slow
class TestConnectionChurn:
    async def test_a_thousand_short_streams_leave_no_descriptor_behind(
        self, uvicorn: StartServer, file_gated_env: dict[str, str]
    ) -> None:
        with uvicorn(**file_gated_env) as server:
            pid = server.process.pid
            async with _client(server) as client:
                await _post(client, "churn")
                with anyio.fail_after(STREAM_TIMEOUT):
                    async with open_stream(client, "churn") as stream:
                        await stream.until(_is_gate)  # running, and stays so
                baseline = _fd_count(pid)
                with anyio.fail_after(40):
                    for _ in range(CYCLES):
                        async with open_stream(client, "churn") as stream:
                            assert (await stream.next()).id == 1
                # The server notices each disconnect on its own time: let it settle.
                await _until(
                    lambda: _fd_count(pid) <= baseline + 2,
                    timeout=5,
                    what=lambda: f"{_fd_count(pid)} descriptors open, {baseline} before",
                )
                status = (await client.get(f"{RUNS}/churn/status")).json()
            log = server.log()

        # Closing streams never cancels the run (docs/api.md).
        assert status["status"] == "running", status
        assert "Traceback" not in log, log

    async def test_closed_streams_leave_no_subscription(self, settings) -> None:
        spy = _LifespanState(create_app(settings()))
        gated_pipeline.gate("churn", "block")
        async with _in_process_uvicorn(spy) as base_url:
            bus = spy.state["stream"].bus
            async with httpx.AsyncClient(base_url=base_url, timeout=STREAM_TIMEOUT) as client:
                await _post(client, "churn")
                with anyio.fail_after(STREAM_TIMEOUT):
                    async with open_stream(client, "churn") as stream:
                        await stream.until(_is_gate)
                        assert bus.count() == 1
                await _until(
                    lambda: bus.count() == 0, timeout=5, what=lambda: f"{bus.count()} subscribed"
                )
                tasks = len(asyncio.all_tasks())
                with anyio.fail_after(30):
                    for _ in range(CYCLES // 4):
                        async with open_stream(client, "churn") as stream:
                            await stream.next()
                await _until(
                    lambda: bus.count() == 0 and len(asyncio.all_tasks()) <= tasks,
                    timeout=5,
                    what=lambda: (
                        f"{bus.count()} subscribed, "
                        f"{len(asyncio.all_tasks())} tasks ({tasks} before)"
                    ),
                )
                assert (await client.get(f"{RUNS}/churn/status")).json()["status"] == "running"


@pytest.mark.slow
class TestShutdown:
    async def test_sigterm_ends_open_streams_and_the_process(
        self, uvicorn: StartServer, base_dir: Path, output: Path
    ) -> None:
        env = {"APP_BASE_DIR": str(base_dir), "APP_OUTPUT_DIR": str(output)}
        with uvicorn(**env, APP_PIPELINE=BLOCKING) as server:
            async with _client(server) as client:
                await _post(client, "stuck")
                with anyio.fail_after(STREAM_TIMEOUT):
                    async with open_stream(client, "stuck") as stream:
                        await stream.until(_is_gate)
                        server.process.send_signal(signal.SIGTERM)
                        with anyio.fail_after(5):
                            await stream.rest()  # ends cleanly: no protocol error
                with anyio.fail_after(5):
                    code = await anyio.to_thread.run_sync(server.process.wait)
            log = server.log()

        # uvicorn re-raises the signal it handled once it has shut down cleanly.
        assert code in {0, -signal.SIGTERM}, log
        assert "Finished server process" in log, log
        assert "ASGI callable returned without completing response" not in log, log
        assert "Traceback" not in log, log
        state = json.loads((output / "stuck" / "api_state.json").read_text())
        assert state["status"] == "stopped", state
        assert state["error"]["code"] == "server_shutdown", state


class TestRunEndingDuringReplay:
    async def test_events_written_after_the_replay_are_not_replaced(
        self, serve, settings, wait_for_status, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A run that ends between the replay and the live part still streams its own ids.

        The replay is made to see only the first events, as if it had read events.jsonl just
        before the worker appended the rest and the run turned terminal.
        """
        async with serve(settings()) as client:
            await _post(client, "racy")
            await wait_for_status(client, "racy", TERMINAL)
            read = EventLog.read
            replays: list[int] = []

            def early_read(self: EventLog, run_id: str, *, after: int = 0) -> list[RunEvent]:
                events = read(self, run_id, after=after)
                replays.append(after)
                return events[:2] if len(replays) == 1 else events

            def last_id(self: EventLog, run_id: str) -> int:
                return read(self, run_id)[-1].id

            monkeypatch.setattr(EventLog, "read", early_read)
            monkeypatch.setattr(EventLog, "last_id", last_id)
            # A finished stream is short: ASGITransport can deliver it (buffered).
            with anyio.fail_after(STREAM_TIMEOUT):
                streamed = await read_all(client, "racy", headers={"Last-Event-ID": "0"})
            status = (await client.get(f"{RUNS}/racy/status")).json()

        logged = _logged(settings().output_root, "racy")
        assert streamed == logged
        assert streamed[-1].data == status


class TestStreamLimit:
    """APP_MAX_SSE_STREAMS holds however many streams arrive at once, and a stream's place
    is free again once it has ended."""

    @pytest.mark.parametrize(
        "headers",
        [[], [(b"last-event-id", b" 0")]],  # " 0" is not plain: the route answers it
        ids=["fast-path", "route"],
    )
    async def test_streams_opening_together_are_held_to_the_limit(
        self, settings, wait_for_status, headers: list[tuple[bytes, bytes]]
    ) -> None:
        spy = _LifespanState(create_app(settings(max_sse_streams=2)))
        gated_pipeline.gate("busy", "block")
        async with LifespanManager(spy) as manager:
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(manager.app), base_url="http://test"
            )
            await _post(client, "busy")
            await wait_for_status(client, "busy", {"running"})
            streams = [_RawStream(manager.app, "busy", headers) for _ in range(6)]
            with anyio.fail_after(STREAM_TIMEOUT):
                async with anyio.create_task_group() as tasks:
                    # Every request starts in the same loop pass, before any stream has
                    # subscribed: the check must count places taken, not subscriptions.
                    for raw in streams:
                        tasks.start_soon(raw.run)
                    for raw in streams:
                        await raw.started.wait()
                    statuses = sorted(raw.status for raw in streams)
                    slots = spy.state["stream_slots"]
                    assert slots.taken == 2
                    for raw in streams:
                        raw.gone.set()  # every client leaves
                assert slots.taken == 0  # ... and every place is free again
                reopened = _RawStream(manager.app, "busy", headers)
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(reopened.run)
                    await reopened.started.wait()
                    reopened.gone.set()
        assert statuses == [200, 200, 503, 503, 503, 503]
        assert reopened.status == 200


class _RawStream:
    """One GET .../events as a bare ASGI call, which ends when the test sets ``gone``: over
    httpx's ASGITransport a stream that does not end would never be answered."""

    def __init__(self, app: Any, run_id: str, headers: list[tuple[bytes, bytes]]) -> None:
        self.app, self.run_id, self.headers = app, run_id, headers
        self.status = 0  # the response status, once it has started
        self.started = anyio.Event()
        self.gone = anyio.Event()

    async def run(self) -> None:
        path = f"{RUNS}/{self.run_id}/events"
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"test"), *self.headers],
            "client": ("127.0.0.1", 1),
            "server": ("test", 80),
        }
        requested = False

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self.gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                self.started.set()

        await self.app(scope, receive, send)


# --------------------------------------------------------------------------- in-process uvicorn


class _LifespanState:
    """Wraps an ASGI app and keeps the state dict its lifespan fills (to look at the bus)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state: dict[str, Any] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            self.state = scope["state"]
        await self.app(scope, receive, send)


@asynccontextmanager
async def _in_process_uvicorn(app: Any) -> AsyncIterator[str]:
    """uvicorn on a free port in this event loop, so a test can inspect the app's state."""
    config = UvicornConfig(
        app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on"
    )
    server = UvicornServer(config)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(server.serve)
        await _until(lambda: server.started, timeout=10, what=lambda: "uvicorn not started")
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
