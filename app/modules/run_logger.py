"""RunLogger: the run's own record, ``output/<run_id>/run.json``, rewritten atomically."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.modules.atomic_file import write_json_atomic
from app.modules.process_identity import this_process


def utc_now() -> str:
    """ISO 8601 in UTC with a ``Z``, to the second (docs/api.md, Identifiers and time)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RunLogger:
    """Steps with timings and counts, warnings, engine info and the outcome of one run.

    The file is rewritten after every step, so a run that dies leaves a record of how far it
    got; the run store reads ``outcome`` from it when it reconciles after a restart.
    """

    def __init__(
        self, run_dir: Path, run_id: str, *, config: dict[str, Any], question: str = ""
    ) -> None:
        self.path = run_dir / "run.json"
        self._started = time.perf_counter()
        self.data: dict[str, Any] = {
            "run_id": run_id,
            "question": question,
            # The process running it: a run whose owner is gone and that has no outcome
            # was interrupted (read by the run store for runs made without the API).
            "owner": this_process(),
            "started_at": utc_now(),
            "completed_at": None,
            "config": config,
            "engine": {},
            "steps": [],
            "counts": {},
            "warnings": [],
            "outcome": {"status": "running", "finish_reason": None, "error": None},
        }
        self.save()

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        """Time one stage; the yielded dict collects the stage's counts."""
        record: dict[str, Any] = {"name": name, "started_at": utc_now(), "status": "running"}
        details: dict[str, Any] = {}
        began = time.perf_counter()
        try:
            yield details
        except BaseException as exc:
            record["status"] = "failed" if isinstance(exc, Exception) else "stopped"
            raise
        else:
            record["status"] = "ok"
        finally:
            record["seconds"] = round(time.perf_counter() - began, 4)
            if details:
                record["details"] = details
            self.data["steps"].append(record)
            self.save()

    def warn(self, message: str) -> None:
        self.data["warnings"].append(message)

    def timings(self) -> dict[str, float]:
        return {s["name"]: s["seconds"] for s in self.data["steps"]}

    def finish(self, status: str, finish_reason: str, error: dict[str, str] | None = None) -> None:
        self.data["completed_at"] = utc_now()
        self.data["seconds"] = round(time.perf_counter() - self._started, 4)
        self.data["outcome"] = {"status": status, "finish_reason": finish_reason, "error": error}
        self.save()

    def save(self) -> None:
        write_json_atomic(self.path, self.data)
