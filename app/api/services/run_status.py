"""The run vocabulary every part shares, written once: statuses and finish reasons.

Both backends, the event log, the API models and the list filter read these; a status is a
``RunStatusName`` (a Literal, so mypy checks it), and which statuses are active, terminal,
and which finish reasons each terminal status allows follow from here.
"""

from __future__ import annotations

from typing import Literal, get_args

RunStatusName = Literal[
    "queued", "running", "completed", "completed_with_gaps", "failed", "stopped"
]
FinishReason = Literal[
    "answered", "answered_with_gaps", "error", "interrupted", "cancelled", "timeout"
]

STATUSES: tuple[str, ...] = get_args(RunStatusName)
ACTIVE: frozenset[str] = frozenset({"queued", "running"})
TERMINAL: frozenset[str] = frozenset(STATUSES) - ACTIVE
# What each terminal status may give as its reason (docs/api.md, Statuses and finish reasons).
FINISH_REASONS: dict[str, frozenset[str]] = {
    "completed": frozenset({"answered"}),
    "completed_with_gaps": frozenset({"answered_with_gaps"}),
    "failed": frozenset({"error", "interrupted"}),
    "stopped": frozenset({"cancelled", "timeout"}),
}
# The list's ?status= filter.
STATUS_PATTERN = "^(" + "|".join(STATUSES) + ")$"
