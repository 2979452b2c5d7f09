"""Which process owns a run: pid, host and the kernel's start time of the pid.

With the start time, a pid names one process for good (a reused pid has another start
time), so a run whose owner is gone can be told from one still running, after a crash,
whether the owner was a server or `python -m app ask`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid``, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which may itself contain spaces: the state (a zombie,
    # "Z", is a process that has ended and not been reaped: gone for our purpose; in a
    # container no init may ever reap it), then field 22, the start time.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in {"Z", "X", "x"}:
        return None
    return fields[19]


def this_process() -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "host": os.uname().nodename, "start": process_start(pid)}


def is_alive(owner: dict[str, Any] | None) -> bool:
    if not owner or owner.get("host") != os.uname().nodename:
        return False  # another machine: no way to tell, and one machine is what we support
    pid = owner.get("pid")
    return isinstance(pid, int) and process_start(pid) == owner.get("start") is not None
