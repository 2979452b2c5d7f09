"""End to end: real uvicorn, the real offline engine, the bundled documents, over TCP."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from tests.api.conftest import (
    ACCEPTED_KEYS,
    CONTEXT_KEYS,
    OUTPUT_KEYS,
    REPO,
    STATUS_KEYS,
    TERMINAL,
    Server,
    _wait_for_status,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

RUNS = "/api/v1/runs"
QUESTION = "How many battery-electric trucks did Northwind have at the end of 2024?"
CITATION = re.compile(r"\[(\d+)\]")


@pytest.fixture
def server(uvicorn, tmp_path: Path) -> Iterator[Server]:
    """The real engine: no APP_PIPELINE, no model configured (the offline writer)."""
    with uvicorn(APP_BASE_DIR=str(REPO), APP_OUTPUT_DIR=str(tmp_path / "output")) as running:
        yield running


@pytest.fixture
async def client(server: Server, anyio_backend: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        yield http


class TestRealEngine:
    async def test_question_to_cited_answer(self, client, server: Server, tmp_path) -> None:
        response = await client.post(RUNS, json={"question": QUESTION, "run_id": "e2e-trucks"})
        assert response.status_code == 202, response.text
        assert set(response.json()) == ACCEPTED_KEYS
        assert response.headers["location"] == f"{RUNS}/e2e-trucks/status"

        status = await _wait_for_status(client, "e2e-trucks", TERMINAL, timeout=30)
        assert set(status) == STATUS_KEYS
        assert status["status"] == "completed", (status, server.log())
        assert status["finish_reason"] == "answered"

        output = (await client.get(f"{RUNS}/e2e-trucks/output")).json()
        assert set(output) == OUTPUT_KEYS
        assert output["final_output_path"] == "output/e2e-trucks/final.md"
        assert "186" in output["content"]
        assert output["content"] == (tmp_path / "output" / "e2e-trucks" / "final.md").read_text()

        context = (await client.get(f"{RUNS}/e2e-trucks/context")).json()
        assert set(context) == CONTEXT_KEYS
        assert context["context_bundle_path"] == "output/e2e-trucks/context_bundle.json"
        bundle = context["context_bundle"]
        assert bundle["question"] == QUESTION
        evidence_ids = {e["id"] for e in bundle["evidence"]}
        assert evidence_ids
        cited = {int(n) for n in CITATION.findall(output["content"])}
        assert cited
        assert cited <= evidence_ids, (cited, evidence_ids)

        record = (await client.get(f"{RUNS}/e2e-trucks")).json()
        assert record["progress"]["stage"] == "save"
        assert record["progress"]["step"] == record["progress"]["total_steps"]

    async def test_twenty_concurrent_posts_one_wins(self, client) -> None:
        body = {"question": QUESTION, "run_id": "e2e-race"}
        with anyio.fail_after(30):
            responses = await asyncio.gather(*(client.post(RUNS, json=body) for _ in range(20)))
        codes = sorted(r.status_code for r in responses)
        assert codes == [202] + [409] * 19, [r.text for r in responses]
        for response in responses:
            if response.status_code == 409:
                assert response.json()["code"] == "run_exists"
                assert response.json()["status_url"] == f"{RUNS}/e2e-race/status"
        assert (await _wait_for_status(client, "e2e-race", TERMINAL, timeout=30))[
            "status"
        ] == "completed"

    async def test_openapi_lists_every_endpoint(self, client) -> None:
        response = await client.get("/openapi.json")
        assert response.status_code == 200, response.text
        paths = response.json()["paths"]
        expected = {
            RUNS: {"post", "get"},
            f"{RUNS}/{{run_id}}": {"get"},
            f"{RUNS}/{{run_id}}/status": {"get"},
            f"{RUNS}/{{run_id}}/output": {"get"},
            f"{RUNS}/{{run_id}}/context": {"get"},
            f"{RUNS}/{{run_id}}/cancel": {"post"},
            "/healthz": {"get"},
            "/readyz": {"get"},
        }
        for path, methods in expected.items():
            assert path in paths, sorted(paths)
            assert methods <= set(paths[path]), (path, paths[path])
        responses = paths[RUNS]["post"]["responses"]
        assert {"202", "409", "413", "422", "429"} <= set(responses)

    async def test_readyz(self, client) -> None:
        response = await client.get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "status": "ready",
            "checks": {
                "store_writable": True,
                "executor_accepting": True,
                "documents_present": True,
                "default_documents": True,
            },
        }
