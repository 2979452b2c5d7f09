"""Crash-safe file writes: temp file in the same folder, fsync, rename (API.md, Artifacts)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import pydantic_core

# What tempfile.mkstemp gives: the temp file, and so the file renamed over ``path``, is
# readable by its owner only.
_MODE = 0o600
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def write_bytes_atomic(path: Path, data: bytes, *, make_parent: bool = True) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never half.

    Plain ``os`` calls rather than tempfile.mkstemp and a buffered file object: this runs on
    every POST and state change, and the Python around the syscalls was half of its cost.
    ``make_parent=False``: a folder that is gone stays gone (FileNotFoundError), for a
    writer that may race the folder's deletion.
    """
    folder = os.fspath(path.parent)
    tmp_name = os.path.join(folder, f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp_name, _FLAGS, _MODE)
    except FileNotFoundError:  # the folder is missing: make it (the rare case), then retry
        if not make_parent:
            raise
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp_name, _FLAGS, _MODE)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    # The rename itself is only durable once the directory entry is flushed.
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, payload: Any, *, make_parent: bool = True) -> None:
    # pydantic-core's encoder, not json.dumps: with ``indent`` the standard library falls
    # back to its pure-Python encoder, which was a tenth of a POST's time on the event loop's
    # GIL. Same JSON (UTF-8, two-space indent); only float spellings may differ (1e-05/1e-5).
    encoded = pydantic_core.to_json(payload, indent=2)
    write_bytes_atomic(path, encoded, make_parent=make_parent)
