"""The persistent, incremental FTS5 section index (app.modules.retrieval.index)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.modules.retrieval.index import SectionIndex, SyncReport, index_path_for
from app.modules.retrieval.text import index_forms, index_stem, stem

MAX_CHARS = 1800
OVERLAP_CHARS = 200

ALPHA = "# Alpha\n\nThe alpha notes talk about walruses and icebergs.\n"
BETA = "# Beta\n\n## Logistics\n\nShipping containers leave on Mondays.\n"
GAMMA = "# Gamma\n\nGardening advice: water the tomatoes daily.\n"


def _write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _bump_mtime(path: Path, seconds: int = 10) -> int:
    """Move the file's mtime forward by whole seconds (no sleeping, no reliance on clock tick)."""
    stat = path.stat()
    new_mtime = stat.st_mtime_ns + seconds * 1_000_000_000
    os.utime(path, ns=(stat.st_atime_ns, new_mtime))
    return new_mtime


def _sync(index: SectionIndex, root: Path, *, max_chars: int = MAX_CHARS) -> SyncReport:
    return index.sync(root, max_chars=max_chars, overlap_chars=OVERLAP_CHARS)


def _paths(index: SectionIndex, *words: str) -> set[str]:
    return {hit.section.path for hit in index.search(list(words), limit=100)}


def _data_version(db_path: Path) -> int:
    """SQLite's data_version as seen by a fresh connection (changes when anyone commits)."""
    raw = sqlite3.connect(db_path)
    try:
        return int(raw.execute("PRAGMA data_version").fetchone()[0])
    finally:
        raw.close()


def _raw_rows(db_path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    raw = sqlite3.connect(db_path)
    try:
        return raw.execute(sql, params).fetchall()
    finally:
        raw.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    _write(corpus, "alpha.md", ALPHA)
    _write(corpus, "team/beta.md", BETA)
    _write(corpus, "team/deep/gamma.markdown", GAMMA)
    _write(corpus, "ignored.txt", "walruses in a text file are not markdown\n")
    return corpus


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "out" / ".index" / "sections.sqlite"


@pytest.fixture
def index(db_path: Path) -> Iterator[SectionIndex]:
    with SectionIndex.open(db_path) as opened:
        yield opened


class TestSectionIndexSync:
    def test_first_sync_indexes_all_files(self, index: SectionIndex, root: Path) -> None:
        report = _sync(index, root)

        assert (report.files, report.indexed, report.unchanged, report.removed) == (3, 3, 0, 0)
        assert report.sections == index.section_count() == 3
        assert report.warnings == []
        assert _paths(index, "walruses") == {"alpha.md"}
        assert _paths(index, "containers") == {"team/beta.md"}
        assert _paths(index, "tomatoes") == {"team/deep/gamma.markdown"}

    def test_search_returns_sections_with_their_metadata(
        self, index: SectionIndex, root: Path
    ) -> None:
        _sync(index, root)

        (hit,) = index.search(["shipping"], limit=5)

        assert hit.section.path == "team/beta.md"
        assert hit.section.title == "Beta"
        assert hit.section.headings == ("Logistics",)
        assert (hit.section.line_start, hit.section.line_end) == (5, 5)
        assert hit.section.text == "Shipping containers leave on Mondays."
        assert hit.bm25 > 0

    def test_second_sync_without_changes_indexes_nothing(
        self, index: SectionIndex, root: Path, db_path: Path
    ) -> None:
        _sync(index, root)
        version = _data_version(db_path)

        report = _sync(index, root)

        assert (report.files, report.indexed, report.unchanged, report.removed) == (3, 0, 3, 0)
        assert report.sections == 3
        assert _data_version(db_path) == version  # nothing was written

    def test_touched_file_is_rehashed_but_not_reindexed(
        self, index: SectionIndex, root: Path, db_path: Path
    ) -> None:
        _sync(index, root)
        ids_before = {hit.id for hit in index.search(["walruses"], limit=10)}
        new_mtime = _bump_mtime(root / "alpha.md")

        touched = _sync(index, root)

        assert (touched.indexed, touched.unchanged, touched.removed) == (0, 3, 0)
        assert {hit.id for hit in index.search(["walruses"], limit=10)} == ids_before
        # The new mtime was recorded, so the next sync need not read the file again.
        assert _raw_rows(db_path, "SELECT mtime_ns FROM files WHERE path = ?", "alpha.md") == [
            (new_mtime,)
        ]
        version = _data_version(db_path)

        later = _sync(index, root)

        assert (later.indexed, later.unchanged) == (0, 3)
        assert _data_version(db_path) == version

    def test_modified_file_is_reindexed_alone(self, index: SectionIndex, root: Path) -> None:
        _sync(index, root)
        ids_elsewhere = {hit.id for hit in index.search(["containers", "tomatoes"], limit=10)}
        alpha = _write(root, "alpha.md", "# Alpha\n\nNow the notes discuss zeppelins only.\n")
        _bump_mtime(alpha)

        report = _sync(index, root)

        assert (report.files, report.indexed, report.unchanged, report.removed) == (3, 1, 2, 0)
        assert _paths(index, "zeppelins") == {"alpha.md"}
        assert _paths(index, "walruses") == set()
        assert _paths(index, "icebergs") == set()
        assert {hit.id for hit in index.search(["containers", "tomatoes"], limit=10)} == (
            ids_elsewhere
        )
        assert index.section_count() == 3

    def test_deleted_file_sections_are_removed(
        self, index: SectionIndex, root: Path, db_path: Path
    ) -> None:
        _sync(index, root)
        (root / "team" / "beta.md").unlink()

        report = _sync(index, root)

        assert (report.files, report.indexed, report.removed) == (2, 0, 1)
        assert _paths(index, "containers") == set()
        assert index.section_count() == 2
        assert _raw_rows(db_path, "SELECT count(*) FROM sections WHERE path = 'team/beta.md'") == [
            (0,)
        ]
        assert _raw_rows(db_path, "SELECT count(*) FROM sections_fts") == [(2,)]

    def test_changing_max_chars_rebuilds_the_index(self, index: SectionIndex, root: Path) -> None:
        long_body = "\n\n".join(f"Paragraph {i} about lighthouses and fog." for i in range(60))
        _write(root, "long.md", f"# Long\n\n{long_body}\n")
        first = _sync(index, root, max_chars=1800)

        rebuilt = _sync(index, root, max_chars=400)

        assert rebuilt.indexed == rebuilt.files == 4
        assert rebuilt.sections > first.sections
        assert all(len(hit.section.text) <= 400 for hit in index.search(["lighthouses"], limit=100))
        assert _sync(index, root, max_chars=400).indexed == 0

    def test_reopening_keeps_the_index(self, db_path: Path, root: Path) -> None:
        with SectionIndex.open(db_path) as first:
            _sync(first, root)

        with SectionIndex.open(db_path) as again:
            assert _sync(again, root).indexed == 0
            assert _paths(again, "walruses") == {"alpha.md"}


class TestSectionIndexCorpus:
    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            pytest.param(b"# Caf\xe9\n\nlatin-1 text\n", "not valid UTF-8", id="latin-1"),
            pytest.param(b"# Bin\n\x00\x01\x02walruses", "NUL bytes", id="nul-bytes"),
        ],
    )
    def test_undecodable_file_is_skipped_with_a_warning(
        self, index: SectionIndex, root: Path, data: bytes, reason: str
    ) -> None:
        (root / "team" / "broken.md").write_bytes(data)

        report = _sync(index, root)

        assert report.files == 4
        assert len(report.warnings) == 1
        assert report.warnings[0].startswith("team/broken.md: skipped, ")
        assert reason in report.warnings[0]
        assert _paths(index, "walruses") == {"alpha.md"}
        assert index.section_count() == 3
        # The warning persists, and the file is not retried while it is unchanged.
        again = _sync(index, root)
        assert again.indexed == 0
        assert again.warnings == report.warnings

    def test_fixing_an_undecodable_file_clears_its_warning(
        self, index: SectionIndex, root: Path
    ) -> None:
        broken = root / "broken.md"
        broken.write_bytes(b"caf\xe9 narwhals\n")
        assert len(_sync(index, root).warnings) == 1
        broken.write_text("café narwhals\n", encoding="utf-8")
        _bump_mtime(broken)

        report = _sync(index, root)

        assert report.warnings == []
        assert report.indexed == 1
        assert _paths(index, "narwhals") == {"broken.md"}

    def test_file_with_bad_front_matter_does_not_break_the_sync(
        self, index: SectionIndex, root: Path
    ) -> None:
        # "2024-13-45" looks like a YAML date but is not a real one.
        _write(root, "dated.md", "---\ndate: 2024-13-45\n---\n# Dated\n\nPenguins waddle.\n")

        report = _sync(index, root)

        assert report.indexed == 4
        assert _paths(index, "penguins") == {"dated.md"}
        assert _paths(index, "walruses") == {"alpha.md"}

    def test_hidden_folders_and_files_are_skipped(self, index: SectionIndex, root: Path) -> None:
        _write(root, ".git/notes.md", "# Secret\n\nplatypus in git\n")
        _write(root, "team/.obsidian/cache.md", "# Cache\n\nplatypus in a hidden folder\n")
        _write(root, ".hidden.md", "# Hidden\n\nplatypus in a hidden file\n")

        report = _sync(index, root)

        assert report.files == 3
        assert _paths(index, "platypus") == set()

    def test_symlink_outside_the_root_is_not_indexed(
        self, index: SectionIndex, root: Path, tmp_path: Path
    ) -> None:
        outside = _write(tmp_path / "outside", "secret.md", "# Secret\n\nflamingo passwords\n")
        (root / "link.md").symlink_to(outside)
        (root / "linked-dir").symlink_to(outside.parent, target_is_directory=True)

        report = _sync(index, root)

        assert report.files == 3
        assert _paths(index, "flamingo") == set()

    def test_symlink_inside_the_root_is_followed(self, index: SectionIndex, root: Path) -> None:
        (root / "alias.md").symlink_to(root / "alpha.md")

        report = _sync(index, root)

        assert report.files == 4
        assert _paths(index, "walruses") == {"alpha.md", "alias.md"}


class TestSectionIndexRanking:
    def test_heading_text_is_weighted_above_body_text(
        self, index: SectionIndex, tmp_path: Path
    ) -> None:
        corpus = tmp_path / "ranking"
        filler = "The team reviewed schedules, budgets, staffing and suppliers for the quarter. "
        # Same body length; only where the query word sits differs.
        _write(corpus, "a-notes.md", f"# Notes\n\n## Turbines\n\n{filler * 4}Nothing else.\n")
        _write(corpus, "b-notes.md", f"# Notes\n\n## Review\n\n{filler * 4}Also turbines.\n")
        _sync(index, corpus)

        hits = index.search(["turbines"], limit=10)

        assert [hit.section.path for hit in hits] == ["a-notes.md", "b-notes.md"]
        assert hits[0].bm25 > hits[1].bm25

    def test_search_with_no_usable_words_returns_nothing(
        self, index: SectionIndex, root: Path
    ) -> None:
        _sync(index, root)

        assert index.search([], limit=10) == []
        assert index.search(['"', '""'], limit=10) == []
        assert index.search(['walruses"'], limit=10)[0].section.path == "alpha.md"

    def test_idf_gives_rarer_terms_more_weight(self, index: SectionIndex, tmp_path: Path) -> None:
        corpus = tmp_path / "idf"
        for name in ("one", "two", "three"):
            _write(corpus, f"{name}.md", f"# {name}\n\nCommon harbour words in {name}.\n")
        _write(corpus, "four.md", "# four\n\nCommon harbour words and a rare albatross.\n")
        _sync(index, corpus)

        weights = index.idf(index_forms(["harbour", "albatross", "unseen"]))

        assert weights[stem("albatross")] > weights[stem("harbour")] > 0
        assert weights[stem("unseen")] > weights[stem("albatross")]
        # The index holds the document's own spelling; the question's stem unifies spellings.
        assert index.document_frequencies([index_stem("harbour")]) == {index_stem("harbour"): 4}

    def test_terms_in_file(self, index: SectionIndex, root: Path) -> None:
        _sync(index, root)
        asked = {stem(w): [stem(w)] for w in ("walruses", "icebergs", "tomatoes")}

        assert index.terms_in_file("alpha.md", asked) == {stem("walruses"), stem("icebergs")}
        assert index.terms_in_file("team/deep/gamma.markdown", asked) == {stem("tomatoes")}
        assert index.terms_in_file("alpha.md", {}) == set()

    def test_a_term_is_found_in_any_of_its_forms(self, index: SectionIndex, tmp_path: Path) -> None:
        corpus = tmp_path / "forms"
        _write(
            corpus,
            "limits.md",
            "# Limits\n\nSet APP_MAX_QUEUED for the queue; the organisation decides.\n",
        )
        _sync(index, corpus)
        asked = index_forms(["maximum", "organization", "penguin"])

        assert index.terms_in_file("limits.md", asked) == {stem("maximum"), stem("organization")}
        weights = index.idf(asked)
        assert weights[stem("maximum")] < weights[stem("penguin")]


class TestSectionIndexConcurrency:
    def test_wal_mode_is_on(self, index: SectionIndex, db_path: Path) -> None:
        assert _raw_rows(db_path, "PRAGMA journal_mode") == [("wal",)]

    def test_second_connection_sees_the_first_ones_sync(self, db_path: Path, root: Path) -> None:
        with SectionIndex.open(db_path) as writer, SectionIndex.open(db_path) as reader:
            assert reader.search(["walruses"], limit=5) == []

            assert _sync(writer, root).indexed == 3

            assert _paths(reader, "walruses") == {"alpha.md"}
            assert _sync(reader, root).indexed == 0  # the work was already done

    def test_reader_searches_while_a_writer_holds_the_write_lock(
        self, db_path: Path, root: Path
    ) -> None:
        with SectionIndex.open(db_path) as first:
            _sync(first, root)
        with SectionIndex.open(db_path, busy_timeout_s=0.1) as reader:
            writer = sqlite3.connect(db_path, isolation_level=None)
            try:
                writer.execute("BEGIN IMMEDIATE")
                writer.execute("DELETE FROM sections_fts")
                writer.execute("DELETE FROM sections")

                # Not blocked, and the uncommitted deletion is invisible.
                assert _paths(reader, "walruses", "containers") == {"alpha.md", "team/beta.md"}
                assert reader.section_count() == 3
            finally:
                writer.execute("ROLLBACK")
                writer.close()

    def test_search_during_another_connections_sync_sees_old_or_new_state(
        self, db_path: Path, tmp_path: Path
    ) -> None:
        corpus = tmp_path / "many"
        for i in range(150):
            _write(corpus, f"doc{i:03d}.md", f"# Doc {i}\n\nOld wording about kestrels {i}.\n")
        with SectionIndex.open(db_path) as writer, SectionIndex.open(db_path) as reader:
            _sync(writer, corpus)
            for i in range(150):
                path = _write(corpus, f"doc{i:03d}.md", f"# Doc {i}\n\nNew text on osprey {i}.\n")
                _bump_mtime(path)
            errors: list[BaseException] = []
            reports: list[SyncReport] = []

            def run_sync() -> None:
                try:
                    reports.append(_sync(writer, corpus))
                except BaseException as exc:
                    errors.append(exc)

            thread = threading.Thread(target=run_sync)
            thread.start()
            seen: set[tuple[int, int]] = set()
            try:
                while thread.is_alive():
                    old = len(reader.search(["kestrels"], limit=500))
                    new = len(reader.search(["osprey"], limit=500))
                    seen.add((old, new))
            finally:
                thread.join()

            assert errors == []
            assert reports[0].indexed == 150
            # Two searches are two snapshots; each one is all-old or all-new, never a mix.
            assert all(old in (0, 150) and new in (0, 150) for old, new in seen)
            assert len(reader.search(["osprey"], limit=500)) == 150
            assert reader.search(["kestrels"], limit=500) == []

    def test_two_connections_syncing_at_once_do_the_work_once(
        self, db_path: Path, tmp_path: Path
    ) -> None:
        corpus = tmp_path / "shared"
        for i in range(100):
            _write(corpus, f"doc{i:03d}.md", f"# Doc {i}\n\nPuffins nest on cliffs {i}.\n")
        with SectionIndex.open(db_path) as first, SectionIndex.open(db_path) as second:
            reports: list[SyncReport] = []
            errors: list[BaseException] = []

            def run(index: SectionIndex) -> None:
                try:
                    reports.append(_sync(index, corpus))
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=run, args=(ix,)) for ix in (first, second)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

            assert errors == []
            assert sorted(r.indexed for r in reports) == [0, 100]
            assert first.section_count() == second.section_count() == 100


class TestIndexPathFor:
    def test_one_file_per_resolved_root(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "docs").mkdir()
        (tmp_path / "other").mkdir()
        monkeypatch.chdir(tmp_path)
        index_root = tmp_path / "out" / ".index"

        by_absolute = index_path_for(index_root, tmp_path / "docs")
        by_relative = index_path_for(index_root, Path("docs"))
        other = index_path_for(index_root, tmp_path / "other")

        assert by_absolute == by_relative
        assert by_absolute != other
        assert by_absolute.parent == index_root
        assert by_absolute.name.startswith("sections-")
        assert by_absolute.suffix == ".sqlite"


class TestSchemaUpgrade:
    def test_an_index_from_an_older_schema_is_rebuilt(self, tmp_path: Path) -> None:
        old = tmp_path / "old.sqlite"
        db = sqlite3.connect(old)
        db.execute("CREATE VIRTUAL TABLE sections_fts USING fts5(title, heading, lead, body)")
        db.commit()
        db.close()
        corpus = tmp_path / "docs"
        _write(corpus, "a.md", "# Fleet\n\nThe EcoDrive course trains drivers.\n")
        with SectionIndex.open(old) as index:
            report = index.sync(corpus, max_chars=1800, overlap_chars=200)
            assert report.indexed == 1
            assert index.search(["eco"], limit=5)[0].section.path == "a.md"
