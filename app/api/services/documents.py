"""What the documents roots hold: folders with markdown, their file counts, index state.

Read-only and bounded: a walk stops listing folders after MAX_FOLDERS (the counts stay
whole), so a huge tree cannot make the listing slow to read or to render.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from app.config import AppConfig
from app.modules.documents.corpus import MARKDOWN_SUFFIXES
from app.modules.retrieval.index import index_state

MAX_FOLDERS = 200


def describe_documents(config: AppConfig) -> dict[str, Any]:
    """``{"default": name, "roots": [{name, files, index, folders: [{path, files}]}]}``."""
    roots = []
    for name, path in config.root_paths().items():
        folders = _folders(path, name) if path.is_dir() else []
        roots.append(
            {
                "name": name,
                "exists": path.is_dir(),
                "files": folders[0]["files"] if folders else 0,
                "index": index_state(config.index_root, path),
                "folders": folders[:MAX_FOLDERS],
            }
        )
    return {"default": config.markdown_path, "roots": roots}


def _folders(root: Path, name: str) -> list[dict[str, Any]]:
    """The root and every folder below it that holds markdown, each with its file count
    (files in it and below it), hidden folders skipped as the indexer skips them."""
    direct: dict[str, int] = {}
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        count = sum(
            1
            for f in filenames
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in MARKDOWN_SUFFIXES
        )
        below = Path(directory).relative_to(root).as_posix()
        direct[name if below == "." else f"{name}/{below}"] = count
    totals = dict.fromkeys(direct, 0)
    for folder, count in direct.items():
        parts = folder.split("/")
        for depth in range(len(name.split("/")), len(parts) + 1):
            totals["/".join(parts[:depth])] += count
    return [{"path": p, "files": n} for p, n in totals.items() if n or p == name]
