"""The run lifecycle over HTTP, in process: payloads, transitions, failures, cancel, listing.

Runs execute ``tests.api.gated_pipeline``: each run waits on its gate, so a test decides
when a run starts doing its work and how it ends.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from tests.api import gated_pipeline
from tests.api.conftest import (
    ACCEPTED_KEYS,
    CONTEXT_KEYS,
    ISO_Z,
    OUTPUT_KEYS,
    STATUS_KEYS,
    TERMINAL,
    wait_for_state_file,
)

pytestmark = pytest.mark.anyio

RUNS = "/api/v1/runs"


async def _post(client: httpx.AsyncClient, run_id: str | None = None, **fields: Any):
    body: dict[str, Any] = {"question": "How many trucks?", **fields}
    if run_id is not None:
        body["run_id"] = run_id
    return await client.post(RUNS, json=body)


async def _started(gate: gated_pipeline.Gate) -> None:
    assert await anyio.to_thread.run_sync(gate.started.wait, 5), "the run never started"


def _urls(run_id: str) -> dict[str, str]:
    return {
        "status_url": f"{RUNS}/{run_id}/status",
        "output_url": f"{RUNS}/{run_id}/output",
        "context_url": f"{RUNS}/{run_id}/context",
    }


class TestCreate:
    async def test_accepted_payload_and_location(self, serve, settings) -> None:
        gated_pipeline.gate("r-1")
        async with serve(settings()) as client:
            response = await _post(client, "r-1")
            assert response.status_code == 202, response.text
            body = response.json()
            assert set(body) == ACCEPTED_KEYS
            assert body == {"run_id": "r-1", "status": "queued", **_urls("r-1")}
            assert response.headers["location"] == body["status_url"]

    async def test_generated_run_id(self, serve, settings, wait_for_status) -> None:
        async with serve(settings()) as client:
            response = await _post(client)
            assert response.status_code == 202, response.text
            body = response.json()
            assert re.fullmatch(r"\d{8}_\d{6}_[0-9a-f]{6}", body["run_id"]), body
            assert body == {"run_id": body["run_id"], "status": "queued", **_urls(body["run_id"])}
            assert response.headers["location"] == body["status_url"]
            status = await wait_for_status(client, body["run_id"], {"completed"})
            assert status["finish_reason"] == "answered"

    async def test_duplicate_run_id_is_409_with_status_url(
        self, serve, settings, error, wait_for_status
    ) -> None:
        async with serve(settings()) as client:
            assert (await _post(client, "dup")).status_code == 202
            await wait_for_status(client, "dup", {"completed"})
            body = error(await _post(client, "dup"), 409, "run_exists")
            assert body["status_url"] == f"{RUNS}/dup/status"
            assert body["run_id"] == "dup"
            # The first run is untouched by the refused one.
            status = await client.get(f"{RUNS}/dup/status")
            assert status.json()["status"] == "completed"

    async def test_twenty_concurrent_posts_one_wins(
        self, serve, settings, error, wait_for_status
    ) -> None:
        gate = gated_pipeline.gate("same")
        gate.release.set()
        async with serve(settings()) as client:
            # POST runs in the threadpool, so the twenty claims really race in the store.
            with anyio.fail_after(10):
                responses = await asyncio.gather(*(_post(client, "same") for _ in range(20)))
            codes = sorted(r.status_code for r in responses)
            assert codes == [202] + [409] * 19, [r.text for r in responses]
            for response in responses:
                if response.status_code == 409:
                    error(response, 409, "run_exists")
            listed = (await client.get(RUNS)).json()["items"]
            assert [item["run_id"] for item in listed] == ["same"]
            await wait_for_status(client, "same", {"completed"})
            assert gate.calls == 1

    async def test_queue_full_is_429_and_writes_nothing(
        self, serve, settings, error, wait_for_status
    ) -> None:
        holder = gated_pipeline.gate("holder")
        waiting = gated_pipeline.gate("waiting")
        config = settings(max_workers=1, max_queued=1)
        async with serve(config) as client:
            assert (await _post(client, "holder")).status_code == 202
            await _started(holder)
            assert (await _post(client, "waiting")).status_code == 202
            response = await _post(client, "refused")
            error(response, 429, "queue_full")
            assert int(response.headers["retry-after"]) >= 1
            assert not (config.output_root / "refused").exists()
            assert sorted(p.name for p in config.output_root.iterdir()) == ["holder", "waiting"]
            error(await client.get(f"{RUNS}/refused/status"), 404, "run_not_found")
            # Once the queue drains the same id is accepted: the refusal claimed nothing.
            holder.release.set()
            waiting.release.set()
            await wait_for_status(client, "waiting", {"completed"})
            assert (await _post(client, "refused")).status_code == 202

    async def test_a_taken_id_is_409_even_when_the_queue_is_full(
        self, serve, settings, error
    ) -> None:
        holder = gated_pipeline.gate("holder")
        config = settings(max_workers=1, max_queued=1)
        async with serve(config) as client:
            assert (await _post(client, "holder")).status_code == 202
            await _started(holder)
            assert (await _post(client, "waiting")).status_code == 202
            error(await _post(client, "waiting"), 409, "run_exists")  # not 429
            error(await _post(client, "holder"), 409, "run_exists")
            holder.release.set()

    async def test_cancelling_a_queued_run_frees_its_slot(self, serve, settings, error) -> None:
        holder = gated_pipeline.gate("holder")
        config = settings(max_workers=1, max_queued=1)
        async with serve(config) as client:
            assert (await _post(client, "holder")).status_code == 202
            await _started(holder)
            assert (await _post(client, "waiting")).status_code == 202
            error(await _post(client, "next"), 429, "queue_full")
            cancel = await client.post(f"{RUNS}/waiting/cancel")
            assert cancel.status_code == 202, cancel.text
            assert cancel.json()["status"] == "stopped"
            # The stopped run no longer waits, so the queue has room at once.
            assert (await _post(client, "next")).status_code == 202
            holder.release.set()


class TestTransitions:
    async def test_queued_running_completed(self, serve, settings, wait_for_status) -> None:
        first = gated_pipeline.gate("first")
        second = gated_pipeline.gate("second")
        async with serve(settings(max_workers=1)) as client:
            assert (await _post(client, "first")).status_code == 202
            await _started(first)
            assert (await _post(client, "second")).status_code == 202

            # The only worker is busy with "first": "second" waits, untouched.
            response = await client.get(f"{RUNS}/second/status")
            assert response.status_code == 200, response.text
            assert response.json() == {
                "run_id": "second",
                "status": "queued",
                "started_at": None,
                "completed_at": None,
                "finish_reason": None,
                "error": None,
            }
            assert not second.started.is_set()

            running = (await client.get(f"{RUNS}/first/status")).json()
            assert set(running) == STATUS_KEYS
            assert running["status"] == "running"
            assert ISO_Z.match(running["started_at"]), running
            assert running["completed_at"] is None
            assert running["finish_reason"] is None
            assert running["error"] is None

            first.release.set()
            done = await wait_for_status(client, "first", {"completed"})
            assert set(done) == STATUS_KEYS
            assert done["finish_reason"] == "answered"
            assert done["error"] is None
            assert done["started_at"] == running["started_at"]
            assert ISO_Z.match(done["completed_at"]), done
            assert done["completed_at"] >= done["started_at"]

            await _started(second)
            assert (await client.get(f"{RUNS}/second/status")).json()["status"] == "running"
            second.release.set()
            await wait_for_status(client, "second", {"completed"})
            assert first.calls == second.calls == 1

    async def test_completed_with_gaps(self, serve, settings, wait_for_status) -> None:
        gated_pipeline.gate("gappy", "complete_with_gaps").release.set()
        async with serve(settings()) as client:
            assert (await _post(client, "gappy")).status_code == 202
            status = await wait_for_status(client, "gappy", {"completed_with_gaps"})
            assert status["finish_reason"] == "answered_with_gaps"
            assert status["error"] is None
            context = (await client.get(f"{RUNS}/gappy/context")).json()
            assert context["status"] == "completed_with_gaps"
            assert context["context_bundle"]["gaps"] != []

    async def test_request_options_reach_the_pipeline(
        self, serve, settings, wait_for_status
    ) -> None:
        gate = gated_pipeline.gate("opts")
        gate.release.set()
        async with serve(settings()) as client:
            response = await _post(
                client,
                "opts",
                question="  Trimmed?  ",
                enable_sql=True,
                markdown_path="documents/reports",
                log_llm_payload=True,
            )
            assert response.status_code == 202, response.text
            await wait_for_status(client, "opts", {"completed"})
        assert gate.question == "Trimmed?"
        assert gate.config is not None
        assert gate.config.markdown_path == "documents/reports"
        assert gate.config.enable_sql is True
        assert gate.config.log_llm_payload is True


class TestUnknownRun:
    @pytest.mark.parametrize(
        ("method", "suffix"),
        [
            ("GET", "/status"),
            ("GET", "/output"),
            ("GET", "/context"),
            ("GET", ""),
            ("POST", "/cancel"),
        ],
    )
    async def test_404(self, serve, settings, error, method: str, suffix: str) -> None:
        async with serve(settings()) as client:
            response = await client.request(method, f"{RUNS}/nope{suffix}")
            body = error(response, 404, "run_not_found")
            assert body["run_id"] == "nope"


class TestOutputAndContext:
    async def test_payloads_of_a_completed_run(self, serve, settings, wait_for_status) -> None:
        config = settings()
        async with serve(config) as client:
            assert (await _post(client, "done", question="What is it?")).status_code == 202
            await wait_for_status(client, "done", {"completed"})
            run_dir = config.output_root / "done"

            output = await client.get(f"{RUNS}/done/output")
            assert output.status_code == 200, output.text
            body = output.json()
            assert set(body) == OUTPUT_KEYS
            assert body == {
                "run_id": "done",
                "status": "completed",
                "content": (run_dir / "final.md").read_text(),
                "final_output_path": "output/done/final.md",
            }
            assert "What is it?" in body["content"]

            context = await client.get(f"{RUNS}/done/context")
            assert context.status_code == 200, context.text
            body = context.json()
            assert set(body) == CONTEXT_KEYS
            assert body == {
                "run_id": "done",
                "status": "completed",
                "context_bundle": json.loads((run_dir / "context_bundle.json").read_text()),
                "context_bundle_path": "output/done/context_bundle.json",
            }
            assert body["context_bundle"]["run_id"] == "done"

    async def test_409_while_queued_or_running(self, serve, settings, error) -> None:
        first = gated_pipeline.gate("first")
        gated_pipeline.gate("second")
        async with serve(settings(max_workers=1)) as client:
            await _post(client, "first")
            await _started(first)
            await _post(client, "second")
            for run_id, status in (("first", "running"), ("second", "queued")):
                for artifact in ("output", "context"):
                    response = await client.get(f"{RUNS}/{run_id}/{artifact}")
                    body = error(response, 409, "run_not_finished")
                    assert body["run_id"] == run_id
                    assert status in body["message"]

    async def test_failed_run_without_output_is_409_no_output(
        self, serve, settings, error, wait_for_status
    ) -> None:
        gated_pipeline.gate("broke", "pipeline_error").release.set()
        async with serve(settings()) as client:
            await _post(client, "broke")
            await wait_for_status(client, "broke", {"failed"})
            for artifact in ("output", "context"):
                error(await client.get(f"{RUNS}/broke/{artifact}"), 409, "no_output")

    async def test_failed_run_serves_what_it_wrote(
        self, serve, settings, error, wait_for_status
    ) -> None:
        gated_pipeline.gate("half", "fail_after_writing").release.set()
        async with serve(settings()) as client:
            await _post(client, "half")
            await wait_for_status(client, "half", {"failed"})
            output = await client.get(f"{RUNS}/half/output")
            assert output.status_code == 200, output.text
            assert output.json()["status"] == "failed"
            assert output.json()["final_output_path"] == "output/half/final.md"
            error(await client.get(f"{RUNS}/half/context"), 409, "no_output")

    async def test_completed_run_with_final_md_deleted_is_500(
        self, serve, settings, base_dir: Path, error, wait_for_status
    ) -> None:
        config = settings()
        async with serve(config) as client:
            await _post(client, "lost")
            await wait_for_status(client, "lost", {"completed"})
            (config.output_root / "lost" / "final.md").unlink()
            response = await client.get(f"{RUNS}/lost/output")
            body = error(response, 500, "artifact_missing")
            assert "final.md" in body["message"]
            assert str(base_dir) not in response.text  # no absolute server path
            # The status endpoint does not read artifacts: it still answers.
            status = await client.get(f"{RUNS}/lost/status")
            assert status.json()["status"] == "completed"

    async def test_completed_run_with_corrupt_context_is_500(
        self, serve, settings, error, wait_for_status
    ) -> None:
        config = settings()
        async with serve(config) as client:
            await _post(client, "garbled")
            await wait_for_status(client, "garbled", {"completed"})
            (config.output_root / "garbled" / "context_bundle.json").write_text("{not json")
            body = error(await client.get(f"{RUNS}/garbled/context"), 500, "artifact_missing")
            assert "context_bundle.json" in body["message"]


class TestFailures:
    async def test_pipeline_error_keeps_its_code(self, serve, settings, wait_for_status) -> None:
        gated_pipeline.gate(
            "perr", "pipeline_error", error_code="index_unavailable", message="the index is gone"
        ).release.set()
        async with serve(settings()) as client:
            await _post(client, "perr")
            status = await wait_for_status(client, "perr", {"failed"})
            assert set(status) == STATUS_KEYS
            assert status["finish_reason"] == "error"
            assert status["error"] == {"code": "index_unavailable", "message": "the index is gone"}
            assert ISO_Z.match(status["completed_at"]), status

    async def test_plain_exception_is_pipeline_error_without_traceback(
        self, serve, settings, wait_for_status
    ) -> None:
        config = settings()
        gated_pipeline.gate("crash", "crash").release.set()
        async with serve(config) as client:
            await _post(client, "crash")
            status = await wait_for_status(client, "crash", {"failed"})
            assert status["finish_reason"] == "error"
            assert status["error"] == {
                "code": "pipeline_error",
                "message": gated_pipeline.CRASH_MESSAGE,
            }
            record = await client.get(f"{RUNS}/crash")
            assert "Traceback" not in record.text
            assert "traceback" not in record.json()
        state = json.loads((config.output_root / "crash" / "api_state.json").read_text())
        assert "Traceback (most recent call last)" in state["traceback"]
        assert f"RuntimeError: {gated_pipeline.CRASH_MESSAGE}" in state["traceback"]
        assert state["status"] == "failed"


class TestCancel:
    async def test_cancel_while_queued_stops_at_once(
        self, serve, settings, wait_for_status
    ) -> None:
        holder = gated_pipeline.gate("holder")
        queued = gated_pipeline.gate("queued")
        after = gated_pipeline.gate("after")
        async with serve(settings(max_workers=1)) as client:
            await _post(client, "holder")
            await _started(holder)
            await _post(client, "queued")
            response = await client.post(f"{RUNS}/queued/cancel")
            assert response.status_code == 202, response.text
            body = response.json()
            assert set(body) == STATUS_KEYS
            assert body["status"] == "stopped"
            assert body["finish_reason"] == "cancelled"
            assert body["started_at"] is None
            assert ISO_Z.match(body["completed_at"]), body

            # The single worker takes "queued" before "after": once "after" has started,
            # the worker has been past "queued", and its pipeline never ran.
            await _post(client, "after")
            holder.release.set()
            await _started(after)
            assert queued.calls == 0
            assert not queued.started.is_set()
            status = (await client.get(f"{RUNS}/queued/status")).json()
            assert status == body

    async def test_an_id_reused_after_cancel_and_delete_runs_normally(
        self, serve, settings, wait_for_status
    ) -> None:
        # The cancelled run's place in the queue stays behind; it must not start, stop or
        # otherwise touch the new run with the same id.
        first, second = gated_pipeline.gate("first"), gated_pipeline.gate("second")
        async with serve(settings(max_workers=2)) as client:
            await _post(client, "first")
            await _post(client, "second")
            await _started(first)
            await _started(second)
            await _post(client, "reused")
            assert (await client.post(f"{RUNS}/reused/cancel")).json()["status"] == "stopped"
            assert (await client.delete(f"{RUNS}/reused")).status_code == 204
            again = gated_pipeline.gate("reused")
            assert (await _post(client, "reused")).status_code == 202
            first.release.set()  # one worker passes the old place, then starts the new run
            await _started(again)
            second.release.set()  # the other worker finds the queue empty
            await wait_for_status(client, "second", {"completed"})
            assert (await client.get(f"{RUNS}/reused/status")).json()["status"] == "running"
            again.release.set()
            await wait_for_status(client, "reused", {"completed"})
            assert again.calls == 1

    async def test_cancel_while_running(self, serve, settings, wait_for_status) -> None:
        gate = gated_pipeline.gate("busy")
        async with serve(settings()) as client:
            await _post(client, "busy")
            await _started(gate)
            response = await client.post(f"{RUNS}/busy/cancel")
            assert response.status_code == 202, response.text
            assert set(response.json()) == STATUS_KEYS
            assert response.json()["status"] in {"running", "stopped"}
            status = await wait_for_status(client, "busy", {"stopped", "completed", "failed"})
            assert status["status"] == "stopped"
            assert status["finish_reason"] == "cancelled"
            assert status["error"] is None
            assert gate.stopped.is_set()

            again = await client.post(f"{RUNS}/busy/cancel")
            assert again.status_code == 200, again.text
            assert again.json() == status

    async def test_cancel_completed_or_failed_is_409(
        self, serve, settings, error, wait_for_status
    ) -> None:
        gated_pipeline.gate("failing", "pipeline_error").release.set()
        async with serve(settings()) as client:
            await _post(client, "finished")
            await _post(client, "failing")
            await wait_for_status(client, "finished", {"completed"})
            await wait_for_status(client, "failing", {"failed"})
            for run_id in ("finished", "failing"):
                body = error(await client.post(f"{RUNS}/{run_id}/cancel"), 409, "run_finished")
                assert body["run_id"] == run_id
            assert (await client.get(f"{RUNS}/finished/status")).json()["status"] == "completed"


class TestTimeout:
    async def test_a_run_past_its_limit_is_stopped(self, serve, settings, wait_for_status) -> None:
        gate = gated_pipeline.gate("slow", "block")
        async with serve(settings(run_timeout_s=0.3)) as client:
            await _post(client, "slow")
            status = await wait_for_status(client, "slow", {"stopped", "failed", "completed"})
            assert status["status"] == "stopped"
            assert status["finish_reason"] == "timeout"
            assert status["error"]["code"] == "run_timeout"
            assert "0.3" in status["error"]["message"]
            assert gate.stopped.is_set()


class TestList:
    async def _make_runs(self, client: httpx.AsyncClient, wait_for_status, ids: list[str]):
        for run_id in ids:
            assert (await _post(client, run_id)).status_code == 202
            await wait_for_status(client, run_id, {"completed", "failed"})

    async def test_newest_first_and_pages_cover_every_run_once(
        self, serve, settings, wait_for_status
    ) -> None:
        # Ids in no alphabetical order: the order must come from creation, not the name.
        ids = ["mango", "zebra", "apple", "kiwi", "banana"]
        async with serve(settings()) as client:
            await self._make_runs(client, wait_for_status, ids)
            everything = (await client.get(RUNS)).json()
            assert everything["next_cursor"] is None
            assert [i["run_id"] for i in everything["items"]] == ids[::-1]
            item = everything["items"][0]
            assert set(item) == {
                "run_id",
                "status",
                "question",
                "created_at",
                "started_at",
                "completed_at",
                "finish_reason",
            }
            assert ISO_Z.match(item["created_at"]), item

            seen: list[str] = []
            cursor = None
            with anyio.fail_after(5):
                while True:
                    params: dict[str, Any] = {"limit": 2}
                    if cursor:
                        params["cursor"] = cursor
                    page = await client.get(RUNS, params=params)
                    assert page.status_code == 200, page.text
                    items = page.json()["items"]
                    assert len(items) <= 2
                    seen += [i["run_id"] for i in items]
                    cursor = page.json()["next_cursor"]
                    if cursor is None:
                        break
            assert seen == ids[::-1]

    async def test_status_filter(self, serve, settings, wait_for_status) -> None:
        for run_id in ("bad-1", "bad-2"):
            gated_pipeline.gate(run_id, "pipeline_error").release.set()
        async with serve(settings()) as client:
            await self._make_runs(client, wait_for_status, ["ok-1", "bad-1", "ok-2", "bad-2"])
            failed = (await client.get(RUNS, params={"status": "failed"})).json()
            assert [i["run_id"] for i in failed["items"]] == ["bad-2", "bad-1"]
            assert {i["status"] for i in failed["items"]} == {"failed"}
            done = (await client.get(RUNS, params={"status": "completed"})).json()
            assert [i["run_id"] for i in done["items"]] == ["ok-2", "ok-1"]
            none = (await client.get(RUNS, params={"status": "stopped"})).json()
            assert none == {"items": [], "next_cursor": None}

    @pytest.mark.parametrize(
        "params",
        [
            {"cursor": "not-a-cursor"},
            {"cursor": "bm90IGpzb24="},  # base64 of "not json"
            {"cursor": "WyJ4IiwxZTQwMCwiYSJd"},  # ["x", 1e400, "a"]: int() overflows
            {"limit": 0},
            {"limit": 201},
            {"status": "done"},
        ],
    )
    async def test_bad_query_is_422(self, serve, settings, error, params) -> None:
        async with serve(settings()) as client:
            body = error(await client.get(RUNS, params=params), 422, "validation_error")
            assert isinstance(body["detail"], list)
            assert body["detail"]


class TestRecord:
    async def test_record_has_options_progress_and_urls(
        self, serve, settings, wait_for_status
    ) -> None:
        gate = gated_pipeline.gate("rec")
        async with serve(settings()) as client:
            await _post(
                client,
                "rec",
                question="Fleet size?",
                enable_sql=True,
                markdown_path="documents/reports",
            )
            await _started(gate)
            response = await client.get(f"{RUNS}/rec")
            assert response.status_code == 200, response.text
            record = response.json()
            assert set(record) == {
                "run_id",
                "status",
                "question",
                "enable_sql",
                "markdown_path",
                "log_llm_payload",
                "created_at",
                "started_at",
                "completed_at",
                "finish_reason",
                "error",
                "progress",
                "final_output_path",
                "context_bundle_path",
                "urls",
            }
            assert record["status"] == "running"
            assert record["question"] == "Fleet size?"
            assert record["enable_sql"] is True
            assert record["markdown_path"] == "documents/reports"
            assert record["log_llm_payload"] is False
            assert record["progress"] == {
                "stage": "gate",
                "message": "Waiting for the test to release the run",
                "step": 1,
                "total_steps": 2,
            }
            assert record["urls"] == {**_urls("rec"), "events_url": f"{RUNS}/rec/events"}
            assert record["final_output_path"] is None

            gate.release.set()
            await wait_for_status(client, "rec", {"completed"})
            record = (await client.get(f"{RUNS}/rec")).json()
            assert record["progress"]["stage"] == "save"
            assert record["final_output_path"] == "output/rec/final.md"
            assert record["context_bundle_path"] == "output/rec/context_bundle.json"
            assert ISO_Z.match(record["created_at"]), record


class TestRobustness:
    @pytest.mark.parametrize(
        ("body", "why"),
        [
            (b'{"question": "\xff\xfe"}', "it is not even UTF-8 text"),
            (b"[" * 30_000, "it is nested too deeply"),
        ],
    )
    async def test_a_body_that_cannot_be_parsed_says_why(
        self, serve, settings, body: bytes, why: str
    ) -> None:
        async with serve(settings()) as client:
            response = await client.post(
                RUNS, content=body, headers={"content-type": "application/json"}
            )
        assert response.status_code == 422, response.text
        assert response.json()["message"] == f"the body is not valid JSON ({why})"

    async def test_a_post_after_output_was_deleted_makes_it_again(
        self, serve, settings, wait_for_status
    ) -> None:
        import shutil

        config = settings()
        async with serve(config) as client:
            shutil.rmtree(config.output_root)
            response = await _post(client, "after-cleanup")
            assert response.status_code == 202, response.text
            await wait_for_status(client, "after-cleanup", {"completed"})
            assert (config.output_root / "after-cleanup" / "api_state.json").is_file()

    async def test_a_malformed_pipeline_result_fails_the_run(
        self, serve, settings, wait_for_status
    ) -> None:
        config = settings(pipeline="tests.api.gated_pipeline:malformed_pipeline")
        async with serve(config) as client:
            assert (await _post(client, "odd")).status_code == 202
            await wait_for_status(client, "odd", {"failed"})
            status = (await client.get(f"{RUNS}/odd/status")).json()
            assert status["error"]["code"] == "internal_error"


class TestStatusFastPath:
    """GET .../status is answered from the store's ready bytes (app/api/status_fast_path.py)
    for a run this process holds; those bytes must be what the route itself sends, and the
    state on disk, after every transition."""

    async def _compare(
        self, fast: httpx.AsyncClient, routed: httpx.AsyncClient, output: Path, run_id: str
    ) -> dict[str, Any]:
        mine = await fast.get(f"{RUNS}/{run_id}/status")
        # The keyed app has no fast path, and the run is another process's to it: its
        # answer comes through the route and the RunStatus model.
        theirs = await routed.get(f"{RUNS}/{run_id}/status", headers={"Authorization": "Bearer k"})
        assert mine.status_code == theirs.status_code == 200, (mine.text, theirs.text)
        assert mine.content == theirs.content
        assert mine.headers["content-type"] == theirs.headers["content-type"]
        assert mine.headers["content-length"] == theirs.headers["content-length"]
        on_disk = json.loads((output / run_id / "api_state.json").read_text())
        body: dict[str, Any] = mine.json()
        assert body == {k: on_disk[k] for k in STATUS_KEYS}
        return body

    @pytest.mark.parametrize("behaviour", ["complete", "pipeline_error", "block"])
    async def test_the_ready_bytes_are_the_routes_after_every_transition(
        self, serve, settings, base_dir: Path, wait_for_status, behaviour: str
    ) -> None:
        output = base_dir / "output"
        gate = gated_pipeline.gate("fast", behaviour)  # type: ignore[arg-type]
        async with (
            serve(settings(max_workers=1)) as fast,
            serve(settings(api_keys=["k"])) as routed,
        ):
            holder = gated_pipeline.gate("holder")
            assert (await _post(fast, "holder")).status_code == 202
            await _started(holder)
            assert (await _post(fast, "fast")).status_code == 202
            assert (await self._compare(fast, routed, output, "fast"))["status"] == "queued"
            holder.release.set()
            await _started(gate)
            assert (await self._compare(fast, routed, output, "fast"))["status"] == "running"
            if behaviour == "block":
                assert (await fast.post(f"{RUNS}/fast/cancel")).status_code == 202
            gate.release.set()
            end = await wait_for_status(fast, "fast", TERMINAL)
            # The end is told (memory, event) before its state file is written: the keyed
            # app reads the file, so wait for it.
            await anyio.to_thread.run_sync(
                wait_for_state_file, output / "fast" / "api_state.json", end["status"]
            )
            body = await self._compare(fast, routed, output, "fast")
            assert body == end
            assert (
                body["status"]
                == {
                    "complete": "completed",
                    "pipeline_error": "failed",
                    "block": "stopped",
                }[behaviour]
            )

    async def test_anything_else_goes_to_the_route(self, serve, settings, error) -> None:
        async with serve(settings()) as client:
            error(await client.get(f"{RUNS}/nope/status"), 404, "run_not_found")
            assert (await client.head(f"{RUNS}/nope/status")).status_code == 405


class TestCreateFastPath:
    """POST /api/v1/runs without FastAPI's routing (app/api/create_fast_path.py) must answer
    every request exactly as the route does: the keyed app has no fast path, so each request
    is sent to both and the answers compared, byte for byte, with the metrics they leave."""

    CASES: tuple[tuple[str, list[tuple[str, str]], bytes], ...] = (
        ("plain", [("content-type", "application/json")], b'{"question":"q?","run_id":"a1"}'),
        (
            "charset",
            [("content-type", "application/json; charset=utf-8")],
            b'{"question":"q?","run_id":"a2"}',
        ),
        ("taken", [("content-type", "application/json")], b'{"question":"q?","run_id":"a1"}'),
        ("unknown field", [("content-type", "application/json")], b'{"question":"q?","x":1}'),
        ("bad JSON", [("content-type", "application/json")], b'{"question":'),
        ("empty", [("content-type", "application/json")], b""),
        ("not JSON", [("content-type", "text/plain")], b'{"question":"q?","run_id":"a3"}'),
        (
            "outside the roots",
            [("content-type", "application/json")],
            b'{"question":"q?","markdown_path":"elsewhere"}',
        ),
        # Deeper than json.loads can go: RecursionError, not a ValueError.
        ("nested too deep", [("content-type", "application/json")], b"[" * 50_000),
        # Two Content-Types: the first one counts, for the route as for the fast path.
        (
            "two content types",
            [("content-type", "text/plain"), ("content-type", "application/json")],
            b'{"question":"q?","run_id":"a4"}',
        ),
        ("too large", [("content-type", "application/json")], b'{"question":"' + b"a" * 70_000),
    )

    @staticmethod
    def _post_series(metrics_text: str) -> list[str]:
        return sorted(
            line
            for line in metrics_text.splitlines()
            if line.startswith("answer_http_request_duration_seconds_count")
            and 'method="POST"' in line
        )

    async def test_every_answer_is_the_routes(self, serve, settings, base_dir: Path) -> None:
        async with (
            serve(settings()) as fast,
            serve(settings(api_keys=["k"], output_dir=base_dir / "routed")) as routed,
        ):
            for name, headers, body in self.CASES:
                mine = await fast.post(RUNS, content=body, headers=headers)
                theirs = await routed.post(
                    RUNS, content=body, headers=[*headers, ("authorization", "Bearer k")]
                )
                assert (mine.status_code, mine.content) == (theirs.status_code, theirs.content), (
                    name
                )
                for header in ("content-type", "content-length", "location", "retry-after"):
                    assert mine.headers.get(header) == theirs.headers.get(header), (name, header)
            fast_series = self._post_series((await fast.get("/metrics")).text)
            assert fast_series == self._post_series((await routed.get("/metrics")).text)
            assert not [line for line in fast_series if 'status="500"' in line]
