"""Which files make up a corpus, and how a file's bytes become text (or a warning)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
TABLE_SUFFIXES = frozenset({".csv"})
DATABASE_SUFFIXES = frozenset({".sqlite", ".db", ".sqlite3"})


@dataclass(frozen=True, slots=True)
class CorpusFile:
    path: Path  # absolute
    relative: str  # relative to the root, POSIX separators
    size: int
    mtime_ns: int


def iter_files(root: Path, suffixes: frozenset[str]) -> Iterator[CorpusFile]:
    """Files under ``root`` with one of ``suffixes``, recursively, in a stable order.

    Hidden folders (``.git``, ``.index``) are skipped, and so is anything a symlink would
    lead to outside ``root``: the corpus is what lies inside the folder a person chose.
    """
    root = root.resolve()
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in suffixes:
                continue
            path = Path(directory, name)
            try:
                real = path.resolve()
                real.relative_to(root)
                stat = real.stat()
            except (OSError, ValueError):
                continue
            if not real.is_file():
                continue
            yield CorpusFile(
                path=path,
                relative=path.relative_to(root).as_posix(),
                size=stat.st_size,
                mtime_ns=stat.st_mtime_ns,
            )


class UndecodableFile(ValueError):
    """The file is not UTF-8 text; it is skipped, and the run records why."""


def decode_text(data: bytes) -> str:
    """The text of a markdown file: UTF-8 (a byte-order mark is allowed), nothing else."""
    if b"\x00" in data:
        raise UndecodableFile("binary content (NUL bytes), not a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UndecodableFile(f"not valid UTF-8 (byte {exc.start})") from exc
