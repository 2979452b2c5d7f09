"""The baseline for bench_api.py: a bare FastAPI app with one constant JSON endpoint.

Served by the same uvicorn settings as the answer service (``benchmarks.bare_app:app``), it
shows what one FastAPI request costs on this machine with no application code at all.
"""

from __future__ import annotations

from fastapi import FastAPI

from app.api.models import RunCreate

app = FastAPI()


@app.get("/bare")
async def bare():
    return {"ok": True}


@app.post("/bare", status_code=202)
async def bare_post(body: RunCreate) -> dict[str, str]:
    """The floor under POST /api/v1/runs: the same body model, parsed and validated, and a
    constant answer; no disk, no run."""
    return {"run_id": body.run_id or "bare", "status": "queued"}
