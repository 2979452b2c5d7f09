"""The one small protocol every answer writer follows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from app.modules.evidence import AnswerBrief


class WriterStopped(Exception):
    """``should_stop`` turned true while the answer was being written."""


class LLMError(RuntimeError):
    """The model server failed; the message says which server and what it answered."""


class AnswerWriter(Protocol):
    name: str
    model: str | None

    def write(
        self,
        brief: AnswerBrief,
        *,
        on_delta: Callable[[str], None],
        should_stop: Callable[[], bool],
    ) -> str:
        """The answer's markdown with ``[n]`` citations, streamed through ``on_delta``."""
        ...
