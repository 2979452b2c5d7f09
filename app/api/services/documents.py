"""What the documents roots hold: folders with markdown, their file counts, index state.

Read-only and bounded: a walk stops listing folders after MAX_FOLDERS (the counts stay
whole), so a huge tree cannot make the listing slow to read or to render.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.config import AppConfig
from app.modules.documents.corpus import MARKDOWN_SUFFIXES, iter_files

MAX_FOLDERS = 200


def describe_documents(config: AppConfig) -> dict[str, Any]:
    """``{"default": name, "roots": [{name, files, index, folders: [{path, files}]}]}``."""
    # The index module brings numpy and the markdown parser: loaded by the first listing (or
    # the engine), not before the server is ready.
    from app.modules.retrieval.index import index_state  # noqa: PLC0415

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
    (files in it and below it): exactly the files the indexer reads (corpus.iter_files)."""
    totals: dict[str, int] = {name: 0}
    for corpus_file in iter_files(root, MARKDOWN_SUFFIXES):
        folders = corpus_file.relative.split("/")[:-1]
        for depth in range(len(folders) + 1):
            path = "/".join([name, *folders[:depth]])
            totals[path] = totals.get(path, 0) + 1
    return [{"path": p, "files": n} for p, n in sorted(totals.items())]
