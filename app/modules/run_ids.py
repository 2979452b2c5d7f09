"""Run identifiers: sortable, unique under concurrent requests (docs/api.md, Identifiers)."""

from __future__ import annotations

import os
import random
import re
from datetime import UTC, datetime

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_RUN_ID = re.compile(RUN_ID_PATTERN)
_suffixes = random.Random()  # seeded from os.urandom
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_suffixes.seed)


def build_run_id() -> str:
    """UTC timestamp plus a random suffix, e.g. ``20260209_120111_4f9c2a``.

    The suffix avoids clashes and is no secret (the API's keys are the access control), so
    it comes from a generator of this module's own, seeded from the OS at import and again
    in a forked child, rather than a getrandom syscall per POST; its own, so that a
    ``random.seed()`` elsewhere cannot make two processes draw the same suffixes. The
    exclusive mkdir catches the rare clash.
    """
    return f"{datetime.now(UTC).strftime('%Y%m%d_%H%M%S')}_{_suffixes.getrandbits(24):06x}"


def is_valid_run_id(run_id: str) -> bool:
    # fullmatch: "$" alone would also accept a trailing newline.
    return bool(_RUN_ID.fullmatch(run_id))
