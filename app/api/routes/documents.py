"""GET /api/v1/documents: the documents roots a run may read, for a folder picker."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import SettingsDep
from app.api.models import DocumentRoots, ErrorBody
from app.api.services.documents import describe_documents

router = APIRouter(
    prefix="/api/v1/documents",
    tags=["documents"],
    responses={401: {"model": ErrorBody, "description": "APP_API_KEYS is set: a key is needed."}},
)


@router.get("", response_model=DocumentRoots)
def list_documents(settings: SettingsDep) -> dict[str, Any]:
    """The roots, their folders with markdown files, and each root's index state.

    A plain ``def``: the folder walk runs in the thread pool, off the event loop.
    """
    return describe_documents(settings)
