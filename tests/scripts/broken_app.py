"""A server that breaks the v1 contract on purpose, for the smoke script's tests.

``BROKEN_MODE`` picks the break: ``extra_field`` (the 202 body of POST has one field too
many) or ``missing_key`` (the status payload has no ``finish_reason``). Everything else is
as the contract says, so the smoke script must name exactly that break.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

MODE = os.environ.get("BROKEN_MODE", "extra_field")
RUN_ID = "broken-run"
BASE = f"/api/v1/runs/{RUN_ID}"

app = FastAPI()


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/api/v1/runs")
def create_run() -> JSONResponse:
    body: dict[str, Any] = {
        "run_id": RUN_ID,
        "status": "queued",
        "status_url": f"{BASE}/status",
        "output_url": f"{BASE}/output",
        "context_url": f"{BASE}/context",
    }
    if MODE == "extra_field":
        body["debug_info"] = "not in the contract"
    return JSONResponse(body, status_code=202, headers={"Location": f"{BASE}/status"})


@app.get(f"{BASE}/status")
def status() -> dict[str, Any]:
    body: dict[str, Any] = {
        "run_id": RUN_ID,
        "status": "completed",
        "started_at": "2026-02-09T12:01:11Z",
        "completed_at": "2026-02-09T12:01:12Z",
        "finish_reason": "answered",
        "error": None,
    }
    if MODE == "missing_key":
        del body["finish_reason"]
    return body


@app.get(f"{BASE}/output")
def output() -> dict[str, Any]:
    return {
        "run_id": RUN_ID,
        "status": "completed",
        "content": "# Answer\n",
        "final_output_path": f"output/{RUN_ID}/final.md",
    }


@app.get(f"{BASE}/context")
def context() -> dict[str, Any]:
    return {
        "run_id": RUN_ID,
        "status": "completed",
        "context_bundle": {},
        "context_bundle_path": f"output/{RUN_ID}/context_bundle.json",
    }
