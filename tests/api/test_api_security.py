"""Security and operations: API keys, CORS, /metrics, DELETE of a run, retention."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from app.api.main import create_app
from app.api.services.run_store import STATE_FILE
from tests.api import gated_pipeline

pytestmark = pytest.mark.anyio

RUNS = "/api/v1/runs"
KEY = "s3cret-key-0123456789"
OTHER_KEY = "another-key-abcdef"
ORIGIN = "https://frontend.example"


def _api_routes() -> list[tuple[str, str]]:
    """Every (method, path) under /api, read from the app's OpenAPI: new routes are covered."""
    paths = create_app(demo_dir=None).openapi()["paths"]
    return sorted(
        (method.upper(), path.replace("{run_id}", "some-run"))
        for path, operations in paths.items()
        if path.startswith("/api")
        for method in operations
    )


API_ROUTES = _api_routes()


def _auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _started(gate: gated_pipeline.Gate) -> None:
    assert await anyio.to_thread.run_sync(gate.started.wait, 5), "the run never started"


def test_every_api_route_is_listed() -> None:
    assert ("GET", f"{RUNS}/some-run/events") in API_ROUTES
    assert ("DELETE", f"{RUNS}/some-run") in API_ROUTES
    assert ("POST", RUNS) in API_ROUTES


class TestApiKeys:
    @pytest.mark.parametrize(("method", "path"), API_ROUTES)
    @pytest.mark.parametrize("headers", [{}, _auth("wrong"), {"Authorization": KEY}])
    async def test_401_without_a_valid_key(
        self, serve, settings, error, method: str, path: str, headers: dict[str, str]
    ) -> None:
        async with serve(settings(api_keys=[KEY, OTHER_KEY])) as client:
            response = await client.request(
                method, path, headers=headers, json={"question": "q"} if method == "POST" else None
            )
        body = error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"
        assert KEY not in response.text
        assert set(body) == {"code", "message"}

    async def test_wrong_key_in_access_token_is_401(self, serve, settings, error) -> None:
        async with serve(settings(api_keys=[KEY])) as client:
            response = await client.get(f"{RUNS}/x/events", params={"access_token": "nope"})
        error(response, 401, "unauthorized")

    async def test_access_token_only_for_events(self, serve, settings, error) -> None:
        async with serve(settings(api_keys=[KEY])) as client:
            response = await client.get(f"{RUNS}/x/status", params={"access_token": KEY})
        error(response, 401, "unauthorized")

    @pytest.mark.parametrize("key", [KEY, OTHER_KEY])
    async def test_each_configured_key_works(
        self, serve, settings, wait_for_status, key: str
    ) -> None:
        async with serve(settings(api_keys=[KEY, OTHER_KEY])) as client:
            client.headers.update(_auth(key))
            response = await client.post(RUNS, json={"question": "q", "run_id": "ok-1"})
            assert response.status_code == 202, response.text
            await wait_for_status(client, "ok-1", {"completed"})
            for path in (RUNS, f"{RUNS}/ok-1", f"{RUNS}/ok-1/output", f"{RUNS}/ok-1/context"):
                response = await client.get(path)
                assert response.status_code == 200, (path, response.text)

    async def test_lower_case_scheme(self, serve, settings) -> None:
        async with serve(settings(api_keys=[KEY])) as client:
            response = await client.get(RUNS, headers={"Authorization": f"bearer {KEY}"})
        assert response.status_code == 200, response.text

    async def test_events_with_access_token(self, serve, settings, wait_for_status) -> None:
        async with serve(settings(api_keys=[KEY])) as client:
            created = await client.post(
                RUNS, json={"question": "q", "run_id": "sse-1"}, headers=_auth()
            )
            assert created.status_code == 202, created.text
            client.headers.update(_auth())
            await wait_for_status(client, "sse-1", {"completed"})
            del client.headers["Authorization"]
            with anyio.fail_after(5):
                response = await client.get(f"{RUNS}/sse-1/events", params={"access_token": KEY})
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith("text/event-stream")
            assert '"status": "completed"' in response.text

    @pytest.mark.parametrize("last_event_id", [None, "0", "1"])
    async def test_no_stream_of_a_known_run_opens_without_a_key(
        self, serve, settings, wait_for_status, error, last_event_id: str | None
    ) -> None:
        # A stream that would open (a known run, not seen to its end, a plain id) is what
        # app/api/events_fast_path.py serves without routing: on a keyed server it must
        # still reach the route and its key check.
        async with serve(settings(api_keys=[KEY])) as client:
            client.headers.update(_auth())
            await client.post(RUNS, json={"question": "q", "run_id": "sse-k"})
            await wait_for_status(client, "sse-k", {"completed"})
            del client.headers["Authorization"]
            headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
            with anyio.fail_after(5):
                response = await client.get(f"{RUNS}/sse-k/events", headers=headers)
        error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_events_with_bearer_header(self, serve, settings, wait_for_status) -> None:
        async with serve(settings(api_keys=[KEY])) as client:
            client.headers.update(_auth())
            await client.post(RUNS, json={"question": "q", "run_id": "sse-2"})
            await wait_for_status(client, "sse-2", {"completed"})
            with anyio.fail_after(5):
                response = await client.get(f"{RUNS}/sse-2/events")
            assert response.status_code == 200, response.text

    @pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"])
    async def test_operational_routes_stay_open(self, serve, settings, path: str) -> None:
        async with serve(settings(api_keys=[KEY])) as client:
            response = await client.get(path)
        assert response.status_code == 200, response.text

    async def test_demo_page_stays_open(self, settings) -> None:
        from asgi_lifespan import LifespanManager

        from app.api.main import DEMO_DIR

        app = create_app(settings(api_keys=[KEY]), demo_dir=DEMO_DIR)
        async with (
            LifespanManager(app) as manager,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(manager.app), base_url="http://test"
            ) as client,
        ):
            response = await client.get("/demo/")
        assert response.status_code == 200, response.text

    async def test_open_without_keys(self, serve, settings) -> None:
        async with serve(settings()) as client:
            response = await client.get(RUNS)
        assert response.status_code == 200, response.text

    async def test_keys_are_never_logged(
        self, serve, settings, wait_for_status, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        async with serve(settings(api_keys=[KEY])) as client:
            await client.get(RUNS, headers=_auth("wrong-" + KEY))
            await client.post(RUNS, json={"question": "q", "run_id": "log-1"}, headers=_auth())
            client.headers.update(_auth())
            await wait_for_status(client, "log-1", {"completed"})
            del client.headers["Authorization"]
            events = f"{RUNS}/log-1/events"
            assert (await client.get(events, params={"access_token": KEY})).status_code == 200
            bad = await client.get(events, params={"access_token": "bad-" + KEY})
            assert bad.status_code == 401
        # The test's own client (httpx) logs the URLs it requests; the server's code must not.
        server_records = [r for r in caplog.records if not r.name.startswith("httpx")]
        assert server_records, "nothing was logged: the check would prove nothing"
        logged = "\n".join(r.getMessage() for r in server_records)
        assert KEY not in logged
        assert "access_token" not in logged


class TestCors:
    async def _preflight(self, client: httpx.AsyncClient, origin: str) -> httpx.Response:
        return await client.options(
            RUNS,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )

    async def test_preflight_allowed_for_a_configured_origin(self, serve, settings) -> None:
        async with serve(settings(cors_origins=[ORIGIN], api_keys=[KEY])) as client:
            response = await self._preflight(client, ORIGIN)
        assert response.status_code == 200, response.text
        assert response.headers["access-control-allow-origin"] == ORIGIN
        allowed = response.headers["access-control-allow-methods"]
        assert {m.strip() for m in allowed.split(",")} == {"GET", "POST", "DELETE"}
        headers = response.headers["access-control-allow-headers"].lower()
        for name in ("authorization", "content-type", "last-event-id", "idempotency-key"):
            assert name in headers

    async def test_simple_request_from_a_configured_origin(self, serve, settings) -> None:
        async with serve(settings(cors_origins=[ORIGIN])) as client:
            response = await client.get(RUNS, headers={"Origin": ORIGIN})
        assert response.headers["access-control-allow-origin"] == ORIGIN

    async def test_preflight_refused_for_another_origin(self, serve, settings) -> None:
        async with serve(settings(cors_origins=[ORIGIN])) as client:
            response = await self._preflight(client, "https://evil.example")
            simple = await client.get(RUNS, headers={"Origin": "https://evil.example"})
        assert response.status_code == 400
        assert "access-control-allow-origin" not in response.headers
        assert "access-control-allow-origin" not in simple.headers

    async def test_no_cors_headers_by_default(self, serve, settings) -> None:
        async with serve(settings()) as client:
            response = await self._preflight(client, ORIGIN)
            simple = await client.get(RUNS, headers={"Origin": ORIGIN})
        for each in (response, simple):
            assert not [h for h in each.headers if h.startswith("access-control-")]


class TestMetrics:
    async def test_metric_names_and_a_finished_run(self, serve, settings, wait_for_status) -> None:
        async with serve(settings()) as client:
            response = await client.post(RUNS, json={"question": "q", "run_id": "m-1"})
            assert response.status_code == 202, response.text
            await wait_for_status(client, "m-1", {"completed"})
            # The duration is observed by a listener just after the state changes: wait
            # (bounded) for it rather than race it.
            observed = 'answer_run_duration_seconds_count{status="completed"} 1.0'
            with anyio.fail_after(5):
                while observed not in (response := await client.get("/metrics")).text:
                    await anyio.sleep(0.01)  # poll interval of a bounded wait
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
        for name in (
            "answer_runs",
            "answer_run_duration_seconds",
            "answer_queue_depth",
            "answer_runs_running",
            "answer_sse_streams_open",
            "answer_http_request_duration_seconds",
        ):
            assert f"# TYPE {name} " in text, name
        assert 'answer_runs{status="completed"} 1.0' in text
        assert 'answer_runs{status="running"} 0.0' in text
        assert 'answer_run_duration_seconds_count{status="completed"} 1.0' in text
        # Latency by route template, never by raw path (one series per run id otherwise).
        assert 'route="/api/v1/runs/{run_id}/status"' in text
        assert "m-1" not in text

    async def test_live_gauges(self, serve, settings) -> None:
        gate = gated_pipeline.gate("held")
        async with serve(settings(max_workers=1)) as client:
            await client.post(RUNS, json={"question": "q", "run_id": "held"})
            await _started(gate)
            await client.post(RUNS, json={"question": "q", "run_id": "waiting"})
            text = (await client.get("/metrics")).text
            gate.release.set()
        assert "answer_runs_running 1.0" in text
        assert "answer_queue_depth 1.0" in text
        assert 'answer_runs{status="queued"} 1.0' in text

    async def test_two_apps_in_one_process(self, serve, settings) -> None:
        async with serve(settings()) as first, serve(settings()) as second:
            assert (await first.get("/metrics")).status_code == 200
            assert (await second.get("/metrics")).status_code == 200


class TestDelete:
    async def test_204_and_the_folder_is_gone(
        self, serve, settings, wait_for_status, error, base_dir: Path
    ) -> None:
        async with serve(settings()) as client:
            await client.post(RUNS, json={"question": "q", "run_id": "del-1"})
            await wait_for_status(client, "del-1", {"completed"})
            assert (base_dir / "output" / "del-1").is_dir()
            response = await client.delete(f"{RUNS}/del-1")
            assert response.status_code == 204, response.text
            assert response.content == b""
            assert not (base_dir / "output" / "del-1").exists()
            error(await client.get(f"{RUNS}/del-1/status"), 404, "run_not_found")
            error(await client.delete(f"{RUNS}/del-1"), 404, "run_not_found")
            listed = (await client.get(RUNS)).json()["items"]
            assert all(item["run_id"] != "del-1" for item in listed)

    async def test_404_for_an_unknown_run(self, serve, settings, error) -> None:
        async with serve(settings()) as client:
            error(await client.delete(f"{RUNS}/nope"), 404, "run_not_found")

    async def test_409_while_queued_or_running(
        self, serve, settings, wait_for_status, error, base_dir: Path
    ) -> None:
        gate = gated_pipeline.gate("busy")
        async with serve(settings(max_workers=1)) as client:
            await client.post(RUNS, json={"question": "q", "run_id": "busy"})
            await _started(gate)
            await client.post(RUNS, json={"question": "q", "run_id": "behind"})
            body = error(await client.delete(f"{RUNS}/busy"), 409, "run_active")
            assert body["status"] == "running"
            body = error(await client.delete(f"{RUNS}/behind"), 409, "run_active")
            assert body["status"] == "queued"
            assert (base_dir / "output" / "busy").is_dir()
            gate.release.set()
            await wait_for_status(client, "behind", {"completed"})
            assert (await client.delete(f"{RUNS}/busy")).status_code == 204

    async def test_a_reused_id_starts_its_events_at_1(
        self, serve, settings, wait_for_status
    ) -> None:
        async with serve(settings()) as client:
            for _ in range(2):
                await client.post(RUNS, json={"question": "q", "run_id": "again"})
                await wait_for_status(client, "again", {"completed"})
                with anyio.fail_after(5):
                    text = (await client.get(f"{RUNS}/again/events")).text
                assert text.split("id: ", 1)[1].startswith("1"), text
                assert (await client.delete(f"{RUNS}/again")).status_code == 204

    async def test_requires_the_key(self, serve, settings, error) -> None:
        async with serve(settings(api_keys=[KEY])) as client:
            error(await client.delete(f"{RUNS}/x"), 401, "unauthorized")
            error(await client.delete(f"{RUNS}/x", headers=_auth()), 404, "run_not_found")


def _finished_run(output: Path, run_id: str, completed_at: str) -> None:
    folder = output / run_id
    folder.mkdir(parents=True)
    state: dict[str, Any] = {
        "run_id": run_id,
        "status": "completed",
        "question": "old question",
        "created_at": completed_at,
        "started_at": completed_at,
        "completed_at": completed_at,
        "finish_reason": "answered",
    }
    (folder / STATE_FILE).write_text(json.dumps(state))
    (folder / "final.md").write_text("# Answer\n")


class TestRetention:
    async def test_removes_old_runs_and_keeps_recent_ones(
        self, serve, settings, wait_for_status, error, base_dir: Path
    ) -> None:
        output = base_dir / "output"
        _finished_run(output, "old-run", "2020-01-01T00:00:00Z")
        _finished_run(output, "recent-run", "2999-01-01T00:00:00Z")  # "now" for any clock
        async with serve(settings(retention_days=1, retention_interval_s=0.05)) as client:
            with anyio.fail_after(5):
                while (output / "old-run").exists():
                    await anyio.sleep(0.01)  # poll interval of a bounded wait
            error(await client.get(f"{RUNS}/old-run/status"), 404, "run_not_found")
            status = await client.get(f"{RUNS}/recent-run/status")
            assert status.status_code == 200, status.text
            # A run that finishes now survives the later passes.
            await client.post(RUNS, json={"question": "q", "run_id": "fresh"})
            await wait_for_status(client, "fresh", {"completed"})
        assert (output / "recent-run").is_dir()
        assert (output / "fresh").is_dir()

    async def test_off_by_default(self, serve, settings, base_dir: Path) -> None:
        output = base_dir / "output"
        _finished_run(output, "old-run", "2020-01-01T00:00:00Z")
        async with serve(settings()) as client:
            assert (await client.get(f"{RUNS}/old-run/status")).status_code == 200
        assert (output / "old-run").is_dir()

    async def test_shutdown_is_prompt_with_a_long_interval(self, serve, settings) -> None:
        with anyio.fail_after(5):
            async with serve(settings(retention_days=1, retention_interval_s=3600)) as client:
                assert (await client.get("/healthz")).status_code == 200


class TestAccessLog:
    def test_the_access_token_is_redacted_in_uvicorns_access_log(
        self, uvicorn: Any, base_dir: Path, tmp_path: Path
    ) -> None:
        env = {
            "APP_BASE_DIR": str(base_dir),
            "APP_OUTPUT_DIR": str(tmp_path / "output"),
            "APP_API_KEYS": KEY,
        }
        with uvicorn(**env) as server, httpx.Client(base_url=server.base_url) as client:
            response = client.get(f"/api/v1/runs/none/events?access_token={KEY}")
            assert response.status_code == 404
            assert client.get("/healthz").status_code == 200  # a later line: the log has caught up
            log = server.log()
        assert "access_token=[redacted]" in log
        assert KEY not in log
