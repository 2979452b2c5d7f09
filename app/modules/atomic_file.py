"""Crash-safe file writes: temp file in the same folder, fsync, rename (docs/api.md, Artifacts)."""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path
from typing import Any

import pydantic_core

# What tempfile.mkstemp gives: the temp file, and so the file renamed over ``path``, is
# readable by its owner only.
_MODE = 0o600
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_names = itertools.count()  # next() is atomic under the GIL: safe from any thread


class StagedFile:
    """New content for ``path``, written to a temp file beside it and not yet in place.

    The halves of an atomic replace, for a caller that does them on different threads:
    staging (open, write) and :meth:`close` are quick on a local disk; :meth:`sync` (fsync,
    rename, fsync of the folder: three syscalls, nothing else) waits for the device.
    :meth:`commit` is both, on one thread. ``make_parent=False``: a folder that is gone
    stays gone (FileNotFoundError), for a writer that may race the folder's deletion.
    """

    def __init__(self, path: Path, data: bytes, *, make_parent: bool = True) -> None:
        self.path = path
        folder = os.fspath(path.parent)
        self._renamed = False
        try:
            fd = self._open_temp(folder)
        except FileNotFoundError:  # the folder is missing: make it (the rare case), retry
            if not make_parent:
                raise
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = self._open_temp(folder)
        self._fds = [fd]
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            # Opened now, so that sync() is only the calls that wait for the device.
            self._fds.append(os.open(folder, os.O_RDONLY))
        except BaseException:
            self.close()
            raise

    def _open_temp(self, folder: str) -> int:
        # Unique by process and a counter, not by random bytes: getrandom is one more
        # syscall on the event loop per POST. O_EXCL still refuses a name a crashed
        # process left behind with a reused pid; the next number is taken then.
        while True:
            self._tmp = os.path.join(folder, f".{self.path.name}.{os.getpid()}-{next(_names)}.tmp")
            try:
                return os.open(self._tmp, _FLAGS, _MODE)
            except FileExistsError:
                continue

    def sync(self) -> None:
        """fsync, rename over ``path``, fsync the folder (the rename is durable only then)."""
        file_fd, dir_fd = self._fds
        try:
            os.fsync(file_fd)
            os.replace(self._tmp, self.path)
        except BaseException:
            Path(self._tmp).unlink(missing_ok=True)
            raise
        self._renamed = True
        os.fsync(dir_fd)

    def close(self) -> None:
        """Close what staging opened; a temp file not renamed is removed."""
        fds, self._fds = self._fds, []
        try:
            for fd in fds:
                with contextlib.suppress(OSError):  # closed either way; nothing to retry
                    os.close(fd)
        finally:
            if not self._renamed:
                Path(self._tmp).unlink(missing_ok=True)

    def commit(self) -> None:
        try:
            self.sync()
        finally:
            self.close()


def write_bytes_atomic(path: Path, data: bytes, *, make_parent: bool = True) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never half.

    Plain ``os`` calls rather than tempfile.mkstemp and a buffered file object: this runs on
    every POST and state change, and the Python around the syscalls was half of its cost.
    """
    StagedFile(path, data, make_parent=make_parent).commit()


def encode_json(payload: Any) -> bytes:
    # pydantic-core's encoder, not json.dumps: with ``indent`` the standard library falls
    # back to its pure-Python encoder, which was a tenth of a POST's time on the event loop's
    # GIL. Same JSON (UTF-8, two-space indent); only float spellings may differ (1e-05/1e-5).
    return pydantic_core.to_json(payload, indent=2)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, payload: Any, *, make_parent: bool = True) -> None:
    write_bytes_atomic(path, encode_json(payload), make_parent=make_parent)
