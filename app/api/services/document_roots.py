"""Where a run may read documents: only inside the configured documents roots.

Runs name a folder by its root's name and a relative path below it ("documents",
"handbook/travel"); an absolute path inside a root is accepted and put in that form, so
payloads never show where the server keeps its files.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from app.api.services.errors import InvalidRequest
from app.config import AppConfig


def confine_markdown_path(config: AppConfig, raw: str) -> str:
    """``raw`` as a root name and a path below it, or InvalidRequest if it may leave the roots.

    ``..`` is refused outright, before anything touches the disk; then the resolved path
    (symlinks followed) must lie inside its root and be a folder.
    """
    if "\x00" in raw or "\\" in raw:
        raise InvalidRequest("markdown_path", "markdown_path contains characters not allowed")
    candidate = PurePosixPath(raw)
    if ".." in candidate.parts:
        raise InvalidRequest("markdown_path", "markdown_path may not contain '..'")
    roots = config.root_paths()
    normalised = candidate.as_posix()
    if normalised in roots:
        # A root itself (the usual request: the default) is inside by definition: one stat
        # instead of resolving every component, on every POST, in a thread that contends
        # with the event loop for each syscall.
        if not os.path.isdir(roots[normalised]):
            raise InvalidRequest("markdown_path", f"markdown_path '{normalised}' is not a folder")
        return normalised
    target = Path(raw) if candidate.is_absolute() else config.documents_path(normalised)
    resolved = target.resolve()
    for name, root in roots.items():
        inside = root.resolve()
        if resolved == inside or inside in resolved.parents:
            below = resolved.relative_to(inside).as_posix()
            shown = name if below == "." else f"{name}/{below}"
            if not resolved.is_dir():
                raise InvalidRequest("markdown_path", f"markdown_path '{shown}' is not a folder")
            return shown
    allowed = ", ".join(f"'{name}'" for name in roots)
    raise InvalidRequest(
        "markdown_path",
        f"markdown_path must be a documents root or a folder inside one ({allowed})",
    )


def roots_exist(config: AppConfig) -> bool:
    return all(path.is_dir() for path in config.root_paths().values())


def default_has_documents(config: AppConfig) -> bool:
    """The default folder is allowed and holds at least one markdown file."""
    try:
        folder = config.documents_path(confine_markdown_path(config, config.markdown_path))
    except InvalidRequest:
        return False
    return next(folder.rglob("*.md"), None) is not None
