"""Request and response models: the four v1 payloads and the additions beside them (docs/api.md).

The four v1 payloads (RunAccepted, RunStatus, RunOutput, RunContext) have exactly the plan's
fields, no more.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from app.api.services.run_status import FinishReason, RunStatusName
from app.modules.run_ids import RUN_ID_PATTERN

RunId = Annotated[str, StringConstraints(pattern=RUN_ID_PATTERN, max_length=128)]


class RunCreate(BaseModel):
    """Start a run: the question and the options of the engine."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "question": "What are the main climate initiatives of Harbor City Council?",
                    "run_id": "harbor-initiatives-1",
                    "enable_sql": False,
                    "markdown_path": "documents",
                    "log_llm_payload": False,
                }
            ]
        },
    )

    question: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)
    ] = Field(description="What to ask, 1..4000 characters after trimming.")
    run_id: RunId | None = Field(
        default=None, description="Client-chosen id; generated when absent."
    )
    enable_sql: bool = Field(default=False, description="Also query tables in the corpus.")
    markdown_path: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = Field(
        default=None,
        description="The folder to read: a documents root's name (GET /api/v1/documents), "
        "a folder below it ('documents/northwind'), or an absolute path inside a root. "
        "Default: the server's documents folder (APP_DOCS, or APP_MARKDOWN_PATH).",
    )
    log_llm_payload: bool = Field(
        default=False, description="Write model requests and responses to llm_payloads.jsonl."
    )

    @field_validator("markdown_path", mode="before")
    @classmethod
    def _absent_not_null(cls, value: object) -> object:
        # Only an absent field means "the default folder"; null is a client's mistake.
        if value is None:
            raise ValueError("markdown_path must be a string; leave it out for the default")
        return value


class RunAccepted(BaseModel):
    """202: the run is queued; follow it at the URLs."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run_id": "20260209_120111_4f9c2a",
                    "status": "queued",
                    "status_url": "/api/v1/runs/20260209_120111_4f9c2a/status",
                    "output_url": "/api/v1/runs/20260209_120111_4f9c2a/output",
                    "context_url": "/api/v1/runs/20260209_120111_4f9c2a/context",
                }
            ]
        }
    )

    run_id: str
    status: RunStatusName
    status_url: str
    output_url: str
    context_url: str


class RunError(BaseModel):
    code: str
    message: str


class RunStatus(BaseModel):
    """The polling payload; also the data of every SSE `status` event."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run_id": "20260209_120111_4f9c2a",
                    "status": "running",
                    "started_at": "2026-02-09T12:01:11Z",
                    "completed_at": None,
                    "finish_reason": None,
                    "error": None,
                }
            ]
        }
    )

    run_id: str
    status: RunStatusName
    started_at: str | None
    completed_at: str | None
    finish_reason: FinishReason | None
    error: RunError | None


class RunOutput(BaseModel):
    """The final answer in markdown."""

    run_id: str
    status: RunStatusName
    content: str
    final_output_path: str


class RunContext(BaseModel):
    """The evidence behind the answer (context_bundle.json)."""

    run_id: str
    status: RunStatusName
    context_bundle: dict[str, Any]
    context_bundle_path: str


class RunUrls(BaseModel):
    status_url: str
    output_url: str
    context_url: str
    events_url: str


class RunSummary(BaseModel):
    """One run in a list."""

    run_id: str
    status: RunStatusName
    question: str
    created_at: str
    started_at: str | None
    completed_at: str | None
    finish_reason: FinishReason | None


class RunList(BaseModel):
    """A page of runs, newest first."""

    items: list[RunSummary]
    next_cursor: str | None


class RunProgress(BaseModel):
    stage: str | None
    message: str | None
    step: int | None
    total_steps: int | None


class RunRecord(BaseModel):
    """Everything known about a run: options, status, timestamps, progress, artifacts."""

    run_id: str
    status: RunStatusName
    question: str
    enable_sql: bool
    markdown_path: str
    log_llm_payload: bool
    created_at: str
    started_at: str | None
    completed_at: str | None
    finish_reason: FinishReason | None
    error: RunError | None
    progress: RunProgress
    final_output_path: str | None
    context_bundle_path: str | None
    urls: RunUrls


class ErrorBody(BaseModel):
    """Every error: a stable code and a message for a person (docs/api.md, Errors)."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, bool]


class DocumentFolder(BaseModel):
    path: str = Field(description="What to send as markdown_path to read this folder.")
    files: int = Field(description="Markdown files in this folder and below it.")


class DocumentIndex(BaseModel):
    indexed_files: int | None = Field(description="Files in the search index (null: none yet).")
    updated_at: str | None


class DocumentRoot(BaseModel):
    name: str
    exists: bool
    files: int
    index: DocumentIndex
    folders: list[DocumentFolder] = Field(
        description="The root first, then each folder below it that holds markdown (at most 200)."
    )


class DocumentRoots(BaseModel):
    """The folders a run may read, and the one it reads by default."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "default": "documents",
                    "roots": [
                        {
                            "name": "documents",
                            "exists": True,
                            "files": 22,
                            "index": {"indexed_files": 22, "updated_at": "2026-12-07T11:40:47Z"},
                            "folders": [
                                {"path": "documents", "files": 22},
                                {"path": "documents/aurora", "files": 5},
                            ],
                        }
                    ],
                }
            ]
        }
    )

    default: str
    roots: list[DocumentRoot]
