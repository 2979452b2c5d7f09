"""Liveness and readiness, for load balancers and orchestrators (never behind auth)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.api.deps import RunExecutorDep, RunStoreDep, SettingsDep
from app.api.models import Health, Readiness
from app.api.services.document_roots import default_has_documents, roots_exist

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", responses={503: {"model": Readiness}})
def readyz(
    store: RunStoreDep, executor: RunExecutorDep, settings: SettingsDep, response: Response
) -> Readiness:
    """The store is writable, the executor accepts runs, the documents are there."""
    checks = {
        "store_writable": store.is_writable(),
        "executor_accepting": executor.accepting,
        "documents_present": roots_exist(settings),
        # A POST without markdown_path reads this folder: it must be allowed and hold
        # markdown, or every such run would fail.
        "default_documents": default_has_documents(settings),
    }
    ready = all(checks.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(status="ready" if ready else "not_ready", checks=checks)
