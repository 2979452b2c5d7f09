"""Logging: every line a run logs carries its run id; human or JSON lines (APP_LOG_JSON).

The executor sets :data:`current_run_id` around a run (worker threads do not inherit a
context, so it is set in the thread itself); :class:`RunIdFilter` copies it onto each record
as ``record.run_id`` ("-" outside a run). :func:`configure` is the one place that installs
the handler of the app's own loggers; :func:`uvicorn_log_config` gives ``python -m app
serve`` the same format for uvicorn's loggers.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

current_run_id: ContextVar[str | None] = ContextVar("current_run_id", default=None)

HUMAN_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(run_id)s] %(message)s"
APP_LOGGER = "app"


@contextmanager
def run_context(run_id: str) -> Iterator[None]:
    """Log records made inside the block (in this thread or task) carry ``run_id``."""
    token = current_run_id.set(run_id)
    try:
        yield
    finally:
        current_run_id.reset(token)


class RunIdFilter(logging.Filter):
    """Adds ``record.run_id``: the run being executed, or "-"."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(getattr(record, "run_id", None), str):
            record.run_id = current_run_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, run_id."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "run_id": getattr(record, "run_id", None) or current_run_id.get() or "-",
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def formatter(*, json_lines: bool) -> logging.Formatter:
    return JsonFormatter() if json_lines else logging.Formatter(HUMAN_FORMAT)


class _AppHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure` installs (a type of its own, so it is found again).

    Like logging's own last-resort handler, it writes to whatever ``sys.stderr`` is at the
    time of each record, so a stream swapped out later (pytest's capture) is never left
    behind, closed, in the handler.
    """

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass  # StreamHandler.__init__ assigns it; sys.stderr is always the target


def configure(*, json_lines: bool) -> None:
    """Send the app's loggers (``app.*``) to stderr at INFO, in the chosen format.

    Idempotent: a second call (another app in the same process) replaces the handler.
    Records still propagate to the root logger, so an embedding application's (or pytest's)
    handlers see them too.
    """
    logger = logging.getLogger(APP_LOGGER)
    for old in [h for h in logger.handlers if isinstance(h, _AppHandler)]:
        logger.removeHandler(old)
    handler = _AppHandler()
    handler.addFilter(RunIdFilter())
    handler.setFormatter(formatter(json_lines=json_lines))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def uvicorn_log_config(*, json_lines: bool) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn's own loggers, in the same format."""
    fmt: dict[str, Any] = {"()": JsonFormatter} if json_lines else {"format": HUMAN_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"run_id": {"()": RunIdFilter}},
        "formatters": {"default": fmt},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["run_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["default"], "level": "INFO", "propagate": False},
        },
    }
