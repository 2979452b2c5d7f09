"""The baseline for bench_api.py: a bare FastAPI app with one constant JSON endpoint.

Served by the same uvicorn settings as the answer service (``benchmarks.bare_app:app``), it
shows what one FastAPI request costs on this machine with no application code at all.
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/bare")
async def bare():
    return {"ok": True}
