"""Atomic replaces: readers see the old file or the new one, and no temp file stays behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.modules.atomic_file import StagedFile, write_json_atomic


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_staged_content_is_invisible_until_synced(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text('{"v": 1}')
    staged = StagedFile(target, b'{"v": 2}')
    assert json.loads(target.read_text()) == {"v": 1}  # staging alone changes nothing
    staged.sync()
    staged.close()
    assert json.loads(target.read_text()) == {"v": 2}
    assert _leftovers(tmp_path) == []


def test_closing_without_sync_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    StagedFile(target, b"new").close()
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_a_failed_rename_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.mkdir()  # a folder where the file should go: the rename fails
    staged = StagedFile(target, b"new")
    with pytest.raises(IsADirectoryError):
        staged.sync()
    staged.close()
    assert target.is_dir()
    assert _leftovers(tmp_path) == []


def test_a_missing_folder_is_made_unless_told_not_to(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "a" / "b.json", {"é": [1, 2.5, None]})
    assert json.loads((tmp_path / "a" / "b.json").read_text(encoding="utf-8")) == {
        "é": [1, 2.5, None]
    }
    with pytest.raises(FileNotFoundError):
        StagedFile(tmp_path / "gone" / "c.json", b"{}", make_parent=False)
    assert not (tmp_path / "gone").exists()


def test_a_temp_name_left_by_a_crash_is_stepped_over(tmp_path: Path, monkeypatch) -> None:
    import itertools

    from app.modules import atomic_file

    monkeypatch.setattr(atomic_file, "_names", itertools.count(7))
    target = tmp_path / "state.json"
    # What a crashed process with this pid left behind: the very name to be tried next.
    (tmp_path / f".state.json.{os.getpid()}-7.tmp").write_bytes(b"torn")
    write_json_atomic(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 2}
    assert _leftovers(tmp_path) == [f".state.json.{os.getpid()}-7.tmp"]  # not ours to delete


def test_the_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_json_atomic(target, {"a": 1})
    assert os.stat(target).st_mode & 0o777 == 0o600
