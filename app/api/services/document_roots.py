"""Where a run may read documents: only inside the configured documents roots."""

from __future__ import annotations

import functools
import os
from pathlib import Path, PurePosixPath

from app.api.services.errors import InvalidRequest
from app.config import AppConfig


def confine_markdown_path(config: AppConfig, raw: str) -> str:
    """``raw`` normalised (relative, POSIX), or InvalidRequest if it may leave the roots.

    Absolute paths and ``..`` are refused outright, before anything touches the disk; then
    the resolved path (symlinks followed) must lie inside a root and be a folder.
    """
    if "\x00" in raw or "\\" in raw:
        raise InvalidRequest("markdown_path", "markdown_path contains characters not allowed")
    candidate = PurePosixPath(raw)
    if candidate.is_absolute():
        raise InvalidRequest("markdown_path", "markdown_path must be relative, e.g. 'documents'")
    if ".." in candidate.parts:
        raise InvalidRequest("markdown_path", "markdown_path may not contain '..'")
    normalised = candidate.as_posix()
    if normalised in _relative_roots(config):
        # A root itself (the usual request: the default "documents") is inside by
        # definition: one stat instead of resolving every component of three paths, on
        # every POST, in a thread that contends with the event loop for each syscall.
        if not os.path.isdir(config.base_dir / normalised):
            raise InvalidRequest("markdown_path", f"markdown_path '{normalised}' is not a folder")
        return normalised
    base = config.base_dir.resolve()
    resolved = (base / normalised).resolve()
    roots = [(base / root).resolve() for root in config.documents_roots]
    if not any(resolved == root or root in resolved.parents for root in roots):
        allowed = ", ".join(f"'{r}'" for r in config.documents_roots)
        raise InvalidRequest(
            "markdown_path", f"markdown_path must be inside a documents root ({allowed})"
        )
    if not resolved.is_dir():
        raise InvalidRequest("markdown_path", f"markdown_path '{normalised}' is not a folder")
    return normalised


def _relative_roots(config: AppConfig) -> frozenset[str]:
    return _normalised_roots(tuple(config.documents_roots))


@functools.lru_cache(maxsize=8)
def _normalised_roots(roots: tuple[str, ...]) -> frozenset[str]:
    return frozenset(
        PurePosixPath(root).as_posix() for root in roots if not PurePosixPath(root).is_absolute()
    )


def roots_exist(config: AppConfig) -> bool:
    return all(Path(config.resolve(root)).is_dir() for root in config.documents_roots)
