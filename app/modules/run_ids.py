"""Run identifiers: sortable, unique under concurrent requests (API.md, Identifiers)."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_RUN_ID = re.compile(RUN_ID_PATTERN)


def build_run_id() -> str:
    """UTC timestamp plus a random suffix, e.g. ``20260209_120111_4f9c2a``."""
    return f"{datetime.now(UTC).strftime('%Y%m%d_%H%M%S')}_{secrets.token_hex(3)}"


def is_valid_run_id(run_id: str) -> bool:
    # fullmatch: "$" alone would also accept a trailing newline.
    return bool(_RUN_ID.fullmatch(run_id))
