"""ARCHITECTURE.md stays true: every file and folder it names exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "ARCHITECTURE.md"
ROOTS = ("app/", "tests/", "benchmarks/", "docs/", "web-demo/")


def _tree_paths(text: str) -> list[str]:
    """The paths of the tree block: names by indentation, several per line split by ', '."""
    block = text.split("## The tree", 1)[1].split("```", 2)[1]
    paths: list[str] = []
    folders: list[tuple[int, str]] = []
    for line in block.splitlines()[1:]:
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        folders = [(d, f) for d, f in folders if d < depth]
        base = "".join(f for _, f in folders)
        first_dir = ""
        for position, raw in enumerate(names.split(", ")):
            name = raw.strip()
            # A file has a suffix, a folder a slash; other words continue a description.
            if not re.fullmatch(r"[\w./-]+", name) or not ("." in name or name.endswith("/")):
                continue
            if position == 0 and "/" in name.rstrip("/"):
                first_dir = name.rsplit("/", 1)[0] + "/"
            elif position > 0 and "/" not in name:
                name = first_dir + name  # "retrieval/index.py, text.py": text.py is there too
            paths.append(base + name)
            if name.endswith("/"):
                folders.append((depth, name))
    return paths


def test_every_path_in_the_tree_exists() -> None:
    paths = _tree_paths(DOC.read_text())
    assert len(paths) > 40
    missing = [p for p in paths if not (REPO / p).exists()]
    assert missing == [], missing


def test_every_path_in_the_text_exists() -> None:
    named = set(re.findall(r"`([\w./-]+)`", DOC.read_text()))
    paths = [p for p in named if p.startswith(ROOTS)]
    assert len(paths) > 10
    missing = [p for p in paths if not (REPO / p).exists()]
    assert missing == [], missing
