"""Operations: Idempotency-Key on POST, the cap on event streams, run ids in the logs."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from app.api.logging_setup import RunIdFilter
from app.api.services.backends.files.store import FileClaims
from app.config import AppConfig
from app.modules.orchestrator.contract import PipelineResult, RunCall, pipeline
from tests.api import gated_pipeline
from tests.api.conftest import ACCEPTED_KEYS, BLOCKING

pytestmark = pytest.mark.anyio

RUNS = "/api/v1/runs"
QUESTION = {"question": "How many trucks did Northwind run?"}
LOGGING_PIPELINE = "tests.api.test_api_ops:logging_pipeline"
PIPELINE_LOG = "tests.api.ops_pipeline"
PIPELINE_MESSAGE = "the logging pipeline is at work"


@pipeline
def logging_pipeline(call: RunCall) -> PipelineResult:
    """Logs one line from inside the run, then completes."""
    logging.getLogger(PIPELINE_LOG).warning(PIPELINE_MESSAGE)
    return gated_pipeline.gated_pipeline(
        call.config, call.question, call.run_id, on_event=call.emit, should_stop=call.should_stop
    )


def _key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def _run_dirs(config: AppConfig) -> list[str]:
    """The run folders under output/ (hidden folders such as .idempotency are not runs)."""
    return sorted(p.name for p in config.output_root.iterdir() if not p.name.startswith("."))


def _same_202(first: httpx.Response, again: httpx.Response) -> None:
    assert again.status_code == 202, again.text
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]


class TestIdempotencyKey:
    async def test_replay_returns_the_original_202(self, serve, settings, wait_for_status) -> None:
        config = settings()
        async with serve(config) as client:
            first = await client.post(RUNS, json=QUESTION, headers=_key("order-1"))
            assert first.status_code == 202, first.text
            assert set(first.json()) == ACCEPTED_KEYS
            run_id = first.json()["run_id"]
            await wait_for_status(client, run_id, {"completed"})
            again = await client.post(RUNS, json=QUESTION, headers=_key("order-1"))
        _same_202(first, again)
        assert again.json()["status"] == "queued"  # the original body, not today's status
        assert _run_dirs(config) == [run_id]
        claim = config.output_root / ".idempotency" / hashlib.sha256(b"order-1").hexdigest()
        assert claim.read_text() == f"{run_id}\n"

    async def test_a_replay_with_a_client_run_id_is_not_a_409(self, serve, settings) -> None:
        body = {**QUESTION, "run_id": "keyed-run"}
        async with serve(settings()) as client:
            first = await client.post(RUNS, json=body, headers=_key("k"))
            again = await client.post(RUNS, json=body, headers=_key("k"))
        assert first.status_code == 202, first.text
        _same_202(first, again)

    async def test_other_keys_make_other_runs(self, serve, settings) -> None:
        config = settings()
        async with serve(config) as client:
            one = await client.post(RUNS, json=QUESTION, headers=_key("a"))
            two = await client.post(RUNS, json=QUESTION, headers=_key("b"))
            three = await client.post(RUNS, json=QUESTION)
        ids = {r.json()["run_id"] for r in (one, two, three)}
        assert len(ids) == 3
        assert _run_dirs(config) == sorted(ids)

    @pytest.mark.parametrize(
        "other",
        [
            {"question": "Something else?"},
            {**QUESTION, "enable_sql": True},
            {**QUESTION, "run_id": "a-named-run"},
        ],
    )
    async def test_same_key_with_a_different_body_is_422(
        self, serve, settings, error, other: dict[str, Any]
    ) -> None:
        config = settings()
        async with serve(config) as client:
            first = await client.post(RUNS, json=QUESTION, headers=_key("order-2"))
            assert first.status_code == 202, first.text
            response = await client.post(RUNS, json=other, headers=_key("order-2"))
        error(response, 422, "idempotency_key_reused")
        assert _run_dirs(config) == [first.json()["run_id"]]

    async def test_whitespace_around_the_question_is_the_same_request(
        self, serve, settings
    ) -> None:
        async with serve(settings()) as client:
            first = await client.post(RUNS, json=QUESTION, headers=_key("trim"))
            padded = {"question": f"  {QUESTION['question']}\n"}
            again = await client.post(RUNS, json=padded, headers=_key("trim"))
        _same_202(first, again)

    async def test_the_key_survives_a_restart(
        self, serve, settings, wait_for_status, error
    ) -> None:
        config = settings()
        async with serve(config) as client:
            first = await client.post(RUNS, json=QUESTION, headers=_key("restart-key"))
            assert first.status_code == 202, first.text
            await wait_for_status(client, first.json()["run_id"], {"completed"})
        async with serve(settings()) as client:  # a new process over the same output/
            again = await client.post(RUNS, json=QUESTION, headers=_key("restart-key"))
            other = await client.post(
                RUNS, json={"question": "Other?"}, headers=_key("restart-key")
            )
        _same_202(first, again)
        error(other, 422, "idempotency_key_reused")
        assert _run_dirs(config) == [first.json()["run_id"]]

    async def test_the_key_is_kept_in_the_state_file(self, serve, settings) -> None:
        config = settings()
        async with serve(config) as client:
            first = await client.post(RUNS, json=QUESTION, headers=_key("stored"))
        run_id = first.json()["run_id"]
        state = json.loads((config.output_root / run_id / "api_state.json").read_text())
        assert state["idempotency_key"] == "stored"
        assert isinstance(state["request_hash"], str)
        assert len(state["request_hash"]) == 64

    async def test_concurrent_requests_with_one_key_make_one_run(self, serve, settings) -> None:
        config = settings()
        responses: list[httpx.Response] = []
        async with serve(config) as client:

            async def post() -> None:
                responses.append(await client.post(RUNS, json=QUESTION, headers=_key("burst")))

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tasks:
                    for _ in range(10):
                        tasks.start_soon(post)
        assert [r.status_code for r in responses] == [202] * 10, [r.text for r in responses]
        assert len({r.content for r in responses}) == 1
        assert len({r.headers["location"] for r in responses}) == 1
        assert _run_dirs(config) == [responses[0].json()["run_id"]]

    async def test_two_processes_sharing_output_make_one_run(self, serve, settings) -> None:
        # Two apps, two stores over one output/: only the claim file can tell them apart.
        config = settings()
        responses: list[httpx.Response] = []
        async with serve(config) as one, serve(settings()) as two:

            async def post(client: httpx.AsyncClient) -> None:
                responses.append(await client.post(RUNS, json=QUESTION, headers=_key("shared")))

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tasks:
                    for client in (one, two) * 4:
                        tasks.start_soon(post, client)
        assert [r.status_code for r in responses] == [202] * 8, [r.text for r in responses]
        assert len({r.json()["run_id"] for r in responses}) == 1
        assert len(_run_dirs(config)) == 1

    async def test_a_rejected_request_leaves_the_key_free(self, serve, settings, error) -> None:
        config = settings()
        async with serve(config) as client:
            taken = await client.post(RUNS, json={**QUESTION, "run_id": "taken"})
            assert taken.status_code == 202, taken.text
            clash = await client.post(
                RUNS, json={**QUESTION, "run_id": "taken"}, headers=_key("free")
            )
            error(clash, 409, "run_exists")
            fresh = await client.post(RUNS, json=QUESTION, headers=_key("free"))
        assert fresh.status_code == 202, fresh.text
        assert fresh.json()["run_id"] != "taken"

    async def test_deleting_the_run_frees_its_key(self, serve, settings, wait_for_status) -> None:
        async with serve(settings()) as client:
            first = await client.post(RUNS, json=QUESTION, headers=_key("deleted"))
            run_id = first.json()["run_id"]
            await wait_for_status(client, run_id, {"completed"})
            deleted = await client.delete(f"{RUNS}/{run_id}")
            assert deleted.status_code == 204, deleted.text
            again = await client.post(RUNS, json=QUESTION, headers=_key("deleted"))
        assert again.status_code == 202, again.text
        assert again.json()["run_id"] != run_id

    async def test_requests_waiting_for_a_key_do_not_hold_up_other_posts(
        self, serve, settings
    ) -> None:
        # Another process holds key "busy" and has not recorded its run yet: requests with
        # that key wait (up to idempotency.WAIT_S, 5 s) in threads. They must not take the
        # few threads that every other POST needs.
        config = settings()
        claim = config.output_root / ".idempotency" / hashlib.sha256(b"busy").hexdigest()
        claim.parent.mkdir(parents=True)
        claim.touch()
        keyed: list[httpx.Response] = []
        async with serve(config) as client:

            async def post_keyed() -> None:
                keyed.append(await client.post(RUNS, json=QUESTION, headers=_key("busy")))

            threads = anyio.to_thread.current_default_thread_limiter()
            async with anyio.create_task_group() as tasks:
                for _ in range(6):
                    tasks.start_soon(post_keyed)
                with anyio.fail_after(4):
                    while threads.borrowed_tokens < 6:  # all six are waiting in threads
                        await anyio.sleep(0.01)  # poll interval of a bounded wait
                with anyio.fail_after(4):  # well before the keyed ones give up
                    other = await client.post(RUNS, json=QUESTION)
                assert other.status_code == 202, other.text
                assert keyed == []  # still waiting
                claim.unlink()  # the holder went away: one of the waiters takes the key
        assert [r.status_code for r in keyed] == [202] * 6, [r.text for r in keyed]
        assert len({r.json()["run_id"] for r in keyed}) == 1

    @pytest.mark.parametrize(
        "value",
        [b"", b"x" * 256, "cl\u00e9".encode("latin-1"), b"tab\there", b"bell\x07"],
        ids=["empty", "too-long", "not-ascii", "tab", "control"],
    )
    async def test_an_invalid_key_is_422(self, serve, settings, error, value: bytes) -> None:
        config = settings()
        async with serve(config) as client:
            response = await client.post(RUNS, json=QUESTION, headers={"Idempotency-Key": value})
        body = error(response, 422, "validation_error")
        assert any("Idempotency-Key" in e["loc"] for e in body["detail"]), body
        assert _run_dirs(config) == []

    @pytest.mark.parametrize("value", ["a", "x" * 255, "order 7/~!@#$%^&*()"])
    async def test_valid_keys(self, serve, settings, value: str) -> None:
        async with serve(settings()) as client:
            first = await client.post(RUNS, json=QUESTION, headers=_key(value))
            again = await client.post(RUNS, json=QUESTION, headers=_key(value))
        assert first.status_code == 202, first.text
        _same_202(first, again)


class TestClaimFiles:
    """A request writes into, or removes, only the claim file it created itself."""

    def test_a_late_record_leaves_a_newer_claim_alone(self, tmp_path: Path) -> None:
        claims = FileClaims(tmp_path)
        mine = claims.try_claim("K")
        assert mine is not None
        assert claims.try_claim("K") is None
        # Judged stale (its request stalled) and claimed again by another request.
        claims.release_if("K", None)
        theirs = claims.try_claim("K")
        assert theirs is not None
        mine.record("a-much-longer-run-id")  # no error: the stalled request gets its run
        assert claims.claimed_run("K") is None  # theirs is still pending, not mangled
        theirs.record("run-b")
        assert claims.claimed_run("K") == "run-b"

    def test_abandoning_removes_only_ones_own_claim(self, tmp_path: Path) -> None:
        claims = FileClaims(tmp_path)
        mine = claims.try_claim("K")
        assert mine is not None
        mine.abandon()
        again = claims.try_claim("K")
        assert again is not None  # free again
        claims.release_if("K", None)
        theirs = claims.try_claim("K")
        assert theirs is not None
        again.abandon()  # not the file it created: stays
        assert claims.try_claim("K") is None
        theirs.record("run-c")
        assert claims.claimed_run("K") == "run-c"


class TestEventNumbering:
    async def test_a_run_id_used_again_starts_at_event_one(
        self, serve, settings, wait_for_status
    ) -> None:
        # This process numbered run "again" up to its end; another process deletes it and
        # the id is used again here: the new run's events start at 1 (docs/api.md).
        config = settings()
        async with serve(config) as here, serve(settings()) as other:
            assert (await here.post(RUNS, json={**QUESTION, "run_id": "again"})).status_code == 202
            await wait_for_status(here, "again", {"completed"})
            # This process says "completed" as soon as the run ends in memory; the other one
            # reads the state file, written a moment later (the end is told first: see
            # FileRunStore._flush). Wait until it sees the end too.
            await wait_for_status(other, "again", {"completed"})
            assert (await other.delete(f"{RUNS}/again")).status_code == 204
            assert (await here.post(RUNS, json={**QUESTION, "run_id": "again"})).status_code == 202
            await wait_for_status(here, "again", {"completed"})
        lines = (config.output_root / "again" / "events.jsonl").read_text().splitlines()
        ids = [json.loads(line)["id"] for line in lines]
        assert ids == list(range(1, len(ids) + 1)), ids


class TestStreamCap:
    def test_a_stream_beyond_the_cap_gets_503(self, uvicorn, base_dir: Path) -> None:
        env = {
            "APP_BASE_DIR": str(base_dir),
            "APP_PIPELINE": BLOCKING,
            "APP_MAX_SSE_STREAMS": "1",
        }
        with uvicorn(**env) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
            created = http.post(RUNS, json={**QUESTION, "run_id": "capped"})
            assert created.status_code == 202, created.text
            events = f"{RUNS}/capped/events"
            with http.stream("GET", events) as first:
                assert first.status_code == 200
                # The first event has arrived: the stream's subscription is in place.
                lines = first.iter_lines()
                assert next(line for line in lines if line.startswith("id:")) == "id: 1"
                second = http.get(events)
                assert second.status_code == 503, second.text
                assert int(second.headers["retry-after"]) >= 1
                body = second.json()
                assert body["code"] == "too_many_streams"
                assert body["message"]
            # Once the first stream is gone its place is free again (bounded wait: the
            # server notices the disconnect on its own schedule).
            deadline = time.monotonic() + 10
            while True:
                with http.stream("GET", events) as third:
                    if third.status_code == 200:
                        break
                assert third.status_code == 503
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.05)  # poll interval
            cancelled = http.post(f"{RUNS}/capped/cancel")
            assert cancelled.status_code in {200, 202}, cancelled.text


class TestRunIdInLogs:
    async def test_lines_logged_inside_a_run_carry_its_id(
        self, serve, settings, wait_for_status, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO)
        caplog.handler.addFilter(RunIdFilter())
        async with serve(settings(pipeline=LOGGING_PIPELINE)) as client:
            response = await client.post(RUNS, json={**QUESTION, "run_id": "logged"})
            assert response.status_code == 202, response.text
            await wait_for_status(client, "logged", {"completed"})
        inside = [r for r in caplog.records if r.name == PIPELINE_LOG]
        assert [r.getMessage() for r in inside] == [PIPELINE_MESSAGE]
        assert inside[0].run_id == "logged"  # type: ignore[attr-defined]
        executor = [r for r in caplog.records if r.name.endswith("files.executor")]
        assert executor, caplog.text
        assert {r.run_id for r in executor} == {"logged"}  # type: ignore[attr-defined]
        ready = [r for r in caplog.records if r.getMessage().startswith("answer service ready")]
        assert [r.run_id for r in ready] == ["-"]  # type: ignore[attr-defined]

    async def test_the_executor_failure_log_carries_the_run_id(
        self, serve, settings, wait_for_status, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO)
        caplog.handler.addFilter(RunIdFilter())
        gated_pipeline.gate("broken", "crash").release.set()
        async with serve(settings()) as client:
            await client.post(RUNS, json={**QUESTION, "run_id": "broken"})
            await wait_for_status(client, "broken", {"failed"})
        failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert failures, caplog.text
        assert {r.run_id for r in failures} == {"broken"}  # type: ignore[attr-defined]

    async def test_human_format_shows_the_run_id(
        self, serve, settings, wait_for_status, capsys: pytest.CaptureFixture[str]
    ) -> None:
        async with serve(settings(pipeline=LOGGING_PIPELINE)) as client:
            await client.post(RUNS, json={**QUESTION, "run_id": "human"})
            await wait_for_status(client, "human", {"completed"})
        err = capsys.readouterr().err
        assert "INFO app.api.services.backends.files.executor [human] run human started" in err, err

    async def test_log_json_writes_one_object_per_line(
        self, serve, settings, wait_for_status, capsys: pytest.CaptureFixture[str]
    ) -> None:
        capsys.readouterr()
        async with serve(settings(log_json=True)) as client:
            await client.post(RUNS, json={**QUESTION, "run_id": "as-json"})
            await wait_for_status(client, "as-json", {"completed"})
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        entries = [json.loads(line) for line in lines]  # every line is one JSON object
        assert entries
        for entry in entries:
            assert {"timestamp", "level", "logger", "message", "run_id"} <= set(entry)
        started = [e for e in entries if e["message"] == "run as-json started"]
        assert len(started) == 1, entries
        assert started[0]["run_id"] == "as-json"
        assert started[0]["level"] == "INFO"
        assert started[0]["logger"] == "app.api.services.backends.files.executor"
        assert any(e["run_id"] == "-" for e in entries)  # lines outside a run
