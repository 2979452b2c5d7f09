"""Run identifiers: sortable, unique under concurrent requests (API.md, Identifiers)."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_RUN_ID = re.compile(RUN_ID_PATTERN)


def build_run_id() -> str:
    """UTC timestamp plus a random suffix, e.g. ``20260209_120111_4f9c2a``.

    The suffix avoids clashes, it is no secret (the API's keys are the access control), so
    it comes from ``random`` (seeded from the OS, reseeded in a forked child) rather than a
    getrandom syscall per POST; the exclusive mkdir catches the rare clash.
    """
    return f"{datetime.now(UTC).strftime('%Y%m%d_%H%M%S')}_{random.getrandbits(24):06x}"


def is_valid_run_id(run_id: str) -> bool:
    # fullmatch: "$" alone would also accept a trailing newline.
    return bool(_RUN_ID.fullmatch(run_id))
