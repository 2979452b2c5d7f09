"""A persistent, incremental full-text index of sections (SQLite FTS5, BM25).

One database per markdown root under ``<output>/.index/``. WAL mode lets a reader (another
uvicorn worker, a CLI run) search while a writer updates; updates take the write lock with
``BEGIN IMMEDIATE`` and re-check what changed once they hold it, so two processes syncing the
same root at once do the work once.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.modules.documents.corpus import (
    MARKDOWN_SUFFIXES,
    CorpusFile,
    UndecodableFile,
    decode_text,
    iter_files,
)
from app.modules.documents.sections import Section, split_markdown
from app.modules.retrieval.embedding import Vectors, embed, from_blobs, to_blob
from app.modules.retrieval.text import camel_parts

# Section vectors per index file, shared by the runs of this process: (generation, ids, rows).
_vector_cache: dict[str, tuple[str, npt.NDArray[np.int64], Vectors]] = {}
_vector_lock = threading.Lock()
EMBED_CHARS = 1500


def embedding_text(section: Section) -> str:
    """What a section's vector is made of: where it sits, then the start of its text."""
    return f"{section.title}. {' '.join(section.headings)}. {section.text[:EMBED_CHARS]}"


SCHEMA_VERSION = "9"
SCHEMA_USER_VERSION = int(SCHEMA_VERSION)

# bm25() column weights: title, heading path, lead (front matter + first paragraph), body,
# and the parts of the body's camelCase words. The words that tell one page from its
# neighbours sit in the title and headings.
COLUMN_WEIGHTS = (4.0, 2.5, 0.8, 1.0, 1.0)

_DROP = """
DROP TABLE IF EXISTS sections_terms; DROP TABLE IF EXISTS sections_vocab;
DROP TABLE IF EXISTS sections_fts; DROP TABLE IF EXISTS sections;
DROP TABLE IF EXISTS files; DROP TABLE IF EXISTS meta; DROP TABLE IF EXISTS section_vectors;
"""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files(
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL, sections INTEGER NOT NULL, warning TEXT
);
CREATE TABLE IF NOT EXISTS sections(
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, title TEXT NOT NULL, headings TEXT NOT NULL,
    line_start INTEGER NOT NULL, line_end INTEGER NOT NULL, labels TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sections_by_path ON sections(path);
CREATE VIRTUAL TABLE IF NOT EXISTS sections_fts USING fts5(
    title, heading, lead, body, alias, tokenize = 'porter unicode61'
);
CREATE TABLE IF NOT EXISTS section_vectors(id INTEGER PRIMARY KEY, vector BLOB NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS sections_vocab USING fts5vocab(sections_fts, 'row');
CREATE VIRTUAL TABLE IF NOT EXISTS sections_terms USING fts5vocab(sections_fts, 'instance');
"""


# What a Hit is read from (``SectionIndex._hit``), in this order.
_HIT_COLUMNS = (
    "s.id, s.path, s.title, s.headings, s.line_start, s.line_end, f.lead, f.body, s.labels"
)


@dataclass(frozen=True, slots=True)
class Hit:
    """A section that matched, with its raw BM25 score (higher is better)."""

    id: int
    section: Section
    bm25: float


@dataclass(slots=True)
class SyncReport:
    files: int = 0
    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    sections: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


class IndexUnavailable(RuntimeError):
    """The index could not be opened or updated."""


def index_path_for(index_root: Path, markdown_root: Path) -> Path:
    """Where the index of ``markdown_root`` lives: one file per resolved root."""
    resolved = str(markdown_root.resolve())
    digest = hashlib.sha256(resolved.encode()).hexdigest()[:16]
    return index_root / f"sections-{digest}.sqlite"


def _statements(script: str) -> list[str]:
    """The statements of ``script`` (no ';' inside any of them), for one transaction."""
    return [part.strip() for part in script.split(";") if part.strip()]


def _retry_locked(statement: Callable[[], object], timeout_s: float) -> None:
    """Run ``statement``, again while SQLite says the database is locked (bounded).

    Switching a new file to WAL takes an exclusive lock that the busy timeout does not
    wait for: two runs opening a fresh index at once would otherwise fail one of them.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)  # back-off between attempts at a lock, not a wait for an event
            delay = min(delay * 2, 0.2)


class SectionIndex:
    """Open with :meth:`open`; use as a context manager or call :meth:`close`."""

    def __init__(self, connection: sqlite3.Connection, db_path: Path) -> None:
        self._db = connection
        self.db_path = db_path

    @classmethod
    def open(cls, db_path: Path, *, busy_timeout_s: float = 60.0) -> SectionIndex:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            db_path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            _retry_locked(lambda: db.execute("PRAGMA journal_mode=WAL"), busy_timeout_s)
            db.execute("PRAGMA synchronous=NORMAL")
            # An index written by another version of the schema is rebuilt from scratch:
            # CREATE ... IF NOT EXISTS alone would keep its old tables and columns. The
            # version is read under the write lock: read before it, a second run opening a
            # fresh file could see version 0 and drop what the first had just indexed.
            db.execute("BEGIN IMMEDIATE")
            try:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                script = _SCHEMA if version == SCHEMA_USER_VERSION else _DROP + _SCHEMA
                for statement in _statements(script):
                    db.execute(statement)
                if version != SCHEMA_USER_VERSION:
                    db.execute(f"PRAGMA user_version = {SCHEMA_USER_VERSION}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            db.close()
            raise IndexUnavailable(
                f"cannot open the search index at {db_path.name}: {exc}"
            ) from exc
        return cls(db, db_path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SectionIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ updating
    def sync(self, root: Path, *, max_chars: int, overlap_chars: int) -> SyncReport:
        """Bring the index in line with the markdown files under ``root``; return what changed."""
        started = time.perf_counter()
        settings = json.dumps([SCHEMA_VERSION, max_chars, overlap_chars, COLUMN_WEIGHTS])
        on_disk = {f.relative: f for f in iter_files(root, MARKDOWN_SUFFIXES)}
        report = SyncReport(files=len(on_disk))
        if self._meta("settings") != settings or self._changes(on_disk):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._meta("settings") != settings:
                    for table in ("files", "sections", "sections_fts", "section_vectors"):
                        self._db.execute(f"DELETE FROM {table}")
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES ('settings', ?)",
                        (settings,),
                    )
                self._apply(on_disk, report, max_chars=max_chars, overlap_chars=overlap_chars)
                # Readers keep the section vectors in memory; a new generation tells them
                # (in this process or another) that the copy is stale.
                self._db.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('generation', ?)",
                    (uuid.uuid4().hex,),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        report.unchanged = report.files - report.indexed
        report.sections = self._db.execute("SELECT count(*) FROM sections").fetchone()[0]
        report.warnings = [
            f"{path}: skipped, {warning}"
            for path, warning in self._db.execute(
                "SELECT path, warning FROM files WHERE warning IS NOT NULL ORDER BY path"
            )
        ]
        report.seconds = time.perf_counter() - started
        return report

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _known(self) -> dict[str, tuple[int, int, str]]:
        return {
            path: (size, mtime_ns, sha)
            for path, size, mtime_ns, sha in self._db.execute(
                "SELECT path, size, mtime_ns, sha256 FROM files"
            )
        }

    def _changes(self, on_disk: dict[str, CorpusFile]) -> bool:
        known = self._known()
        if known.keys() != on_disk.keys():
            return True
        return any(known[p][:2] != (f.size, f.mtime_ns) for p, f in on_disk.items())

    def _apply(
        self,
        on_disk: dict[str, CorpusFile],
        report: SyncReport,
        *,
        max_chars: int,
        overlap_chars: int,
    ) -> None:
        known = self._known()  # re-read under the write lock: another process may have synced
        for gone in known.keys() - on_disk.keys():
            self._remove(gone)
            report.removed += 1
        for relative, corpus_file in on_disk.items():
            previous = known.get(relative)
            if previous and previous[:2] == (corpus_file.size, corpus_file.mtime_ns):
                continue
            try:
                data = corpus_file.path.read_bytes()
            except OSError as exc:
                self._record_file(corpus_file, "", 0, f"unreadable ({exc.strerror})")
                continue
            sha = hashlib.sha256(data).hexdigest()
            if previous and previous[2] == sha:  # touched, not changed
                self._db.execute(
                    "UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?",
                    (corpus_file.size, corpus_file.mtime_ns, relative),
                )
                continue
            self._remove(relative)
            report.indexed += 1
            try:
                text = decode_text(data)
            except UndecodableFile as exc:
                self._record_file(corpus_file, sha, 0, str(exc))
                continue
            sections = split_markdown(
                text, relative, max_chars=max_chars, overlap_chars=overlap_chars
            )
            self._insert(sections)
            self._record_file(corpus_file, sha, len(sections), None)

    def _record_file(
        self, corpus_file: CorpusFile, sha: str, sections: int, warning: str | None
    ) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO files(path, size, mtime_ns, sha256, sections, warning)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (corpus_file.relative, corpus_file.size, corpus_file.mtime_ns, sha, sections, warning),
        )

    def _remove(self, relative: str) -> None:
        self._db.execute(
            "DELETE FROM sections_fts WHERE rowid IN (SELECT id FROM sections WHERE path = ?)",
            (relative,),
        )
        self._db.execute(
            "DELETE FROM section_vectors WHERE id IN (SELECT id FROM sections WHERE path = ?)",
            (relative,),
        )
        self._db.execute("DELETE FROM sections WHERE path = ?", (relative,))
        self._db.execute("DELETE FROM files WHERE path = ?", (relative,))

    def _insert(self, sections: Sequence[Section]) -> None:
        vectors = embed([embedding_text(s) for s in sections])
        for section, vector in zip(sections, vectors, strict=True):
            cursor = self._db.execute(
                "INSERT INTO sections(path, title, headings, line_start, line_end, labels)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    section.path,
                    section.title,
                    json.dumps(section.headings, ensure_ascii=False),
                    section.line_start,
                    section.line_end,
                    json.dumps(section.labels, ensure_ascii=False),
                ),
            )
            self._db.execute(
                "INSERT INTO sections_fts(rowid, title, heading, lead, body, alias)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    cursor.lastrowid,
                    section.title,
                    " ".join(section.headings),
                    section.lead,
                    section.text,
                    camel_parts(section.text),
                ),
            )
            self._db.execute(
                "INSERT INTO section_vectors(id, vector) VALUES (?, ?)",
                (cursor.lastrowid, to_blob(vector)),
            )

    # ------------------------------------------------------------------ reading
    def search(self, query_words: Sequence[str], *, limit: int) -> list[Hit]:
        """Sections matching any of ``query_words`` (unstemmed), best BM25 first."""
        terms = [w.replace('"', "") for w in query_words if w.replace('"', "")]
        if not terms:
            return []
        expression = " OR ".join(f'"{t}"' for t in dict.fromkeys(terms))
        weights = ", ".join(str(w) for w in COLUMN_WEIGHTS)
        rows = self._db.execute(
            f"SELECT {_HIT_COLUMNS},"
            f" bm25(sections_fts, {weights}) AS rank"
            " FROM sections_fts AS f JOIN sections AS s ON s.id = f.rowid"
            " WHERE sections_fts MATCH ? ORDER BY rank LIMIT ?",
            (expression, limit),
        ).fetchall()
        return [self._hit(row, -float(row[9])) for row in rows]

    def mentions(self, text: str) -> bool:
        """Whether any section holds ``text`` verbatim (ASCII case folded): a code name
        ("httpx.get", "--older-than") that tokens cannot look up. A scan of every section:
        for the few names the passages found do not hold."""
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        row = self._db.execute(
            "SELECT 1 FROM sections_fts WHERE body LIKE ?1 ESCAPE '\\' OR heading LIKE ?1"
            " ESCAPE '\\' OR lead LIKE ?1 ESCAPE '\\' LIMIT 1",
            (pattern,),
        ).fetchone()
        return row is not None

    def vectors(self) -> tuple[npt.NDArray[np.int64], Vectors]:
        """Every section's id and unit vector, kept in memory until the index changes."""
        generation = self._meta("generation") or ""
        key = str(self.db_path)
        with _vector_lock:
            cached = _vector_cache.get(key)
            if cached is not None and cached[0] == generation:
                return cached[1], cached[2]
        rows = self._db.execute("SELECT id, vector FROM section_vectors ORDER BY id").fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        matrix = from_blobs([r[1] for r in rows])
        with _vector_lock:
            _vector_cache[key] = (generation, ids, matrix)
        return ids, matrix

    def similar(self, vector: Vectors, *, limit: int) -> list[tuple[int, float]]:
        """The ``limit`` sections nearest to ``vector`` (cosine), as (id, similarity)."""
        ids, matrix = self.vectors()
        if not len(ids):
            return []
        scores = matrix @ vector
        top = np.argpartition(-scores, min(limit, len(ids) - 1))[:limit]
        top = top[np.argsort(-scores[top])]
        return [(int(ids[i]), float(scores[i])) for i in top]

    def similarities(self, vector: Vectors, ids: Sequence[int]) -> dict[int, float]:
        """Cosine similarity of ``vector`` to each of these sections (0 for unknown ids)."""
        all_ids, matrix = self.vectors()
        if not len(all_ids) or not ids:
            return dict.fromkeys(ids, 0.0)
        wanted = np.asarray(ids, dtype=np.int64)
        rows = np.clip(np.searchsorted(all_ids, wanted), 0, len(all_ids) - 1)
        found = all_ids[rows] == wanted
        scores = matrix[rows] @ vector
        return {
            int(i): float(s) if ok else 0.0 for i, s, ok in zip(wanted, scores, found, strict=True)
        }

    def sections(self, ids: Sequence[int]) -> list[Hit]:
        """The sections with these ids, in the order given."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(
            f"SELECT {_HIT_COLUMNS}"
            " FROM sections AS s JOIN sections_fts AS f ON f.rowid = s.id"
            f" WHERE s.id IN ({marks})",
            list(ids),
        ).fetchall()
        by_id = {row[0]: self._hit(row, 0.0) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    def folder_files(self, folder: str) -> list[str]:
        """The paths of the files directly in ``folder`` (not in its sub-folders), sorted."""
        prefix = f"{folder}/" if folder else ""
        rows = self._db.execute(
            "SELECT path FROM files WHERE substr(path, 1, ?) = ? ORDER BY path",
            (len(prefix), prefix),
        ).fetchall()
        return [row[0] for row in rows if "/" not in row[0][len(prefix) :]]

    def labelled(self) -> dict[str, list[str]]:
        """Each front-matter label ("category: Resilience", "tag: PHP") with the files that
        carry it, sorted."""
        files: dict[str, list[str]] = defaultdict(list)
        for path, labels in self._db.execute(
            "SELECT path, labels FROM sections WHERE labels != '[]' GROUP BY path ORDER BY path"
        ):
            for label in json.loads(labels):
                files[label].append(path)
        return dict(files)

    def known_files(self, paths: Sequence[str]) -> set[str]:
        """Which of ``paths`` are indexed files."""
        found: set[str] = set()
        for start in range(0, len(paths), 500):  # well under SQLite's bound on parameters
            chunk = list(paths[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT path FROM files WHERE path IN ({marks})", chunk)
            found.update(row[0] for row in rows.fetchall())
        return found

    def file_sections(self, path: str) -> list[Hit]:
        """Every section of one file, in reading order."""
        rows = self._db.execute(
            f"SELECT {_HIT_COLUMNS}"
            " FROM sections AS s JOIN sections_fts AS f ON f.rowid = s.id"
            " WHERE s.path = ? ORDER BY s.id",
            (path,),
        ).fetchall()
        return [self._hit(row, 0.0) for row in rows]

    @staticmethod
    def _hit(row: Sequence[Any], bm25: float) -> Hit:
        return Hit(
            id=row[0],
            section=Section(
                path=row[1],
                title=row[2],
                headings=tuple(json.loads(row[3])),
                line_start=row[4],
                line_end=row[5],
                text=row[7],
                lead=row[6],
                labels=tuple(json.loads(row[8])),
            ),
            bm25=bm25,
        )

    def section_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM sections").fetchone()[0])

    def document_frequencies(self, stemmed_terms: Iterable[str]) -> dict[str, int]:
        """How many sections contain each (stemmed) term; 0 for unknown terms."""
        terms = list(dict.fromkeys(stemmed_terms))
        found = dict.fromkeys(terms, 0)
        for chunk_start in range(0, len(terms), 500):
            chunk = terms[chunk_start : chunk_start + 500]
            marks = ",".join("?" * len(chunk))
            for term, docs in self._db.execute(
                f"SELECT term, doc FROM sections_vocab WHERE term IN ({marks})",
                chunk,
            ):
                found[term] = int(docs)
        return found

    def terms_in_file(self, path: str, forms: Mapping[str, Iterable[str]]) -> set[str]:
        """Which terms occur, in any of their forms, anywhere in the file at ``path``."""
        present = self._forms_in_file(path, {f for fs in forms.values() for f in fs})
        return {term for term, term_forms in forms.items() if present & set(term_forms)}

    def _forms_in_file(self, path: str, stemmed_terms: Iterable[str]) -> set[str]:
        terms = list(dict.fromkeys(stemmed_terms))
        if not terms:
            return set()
        marks = ",".join("?" * len(terms))
        return {
            row[0]
            for row in self._db.execute(
                f"SELECT DISTINCT term FROM sections_terms WHERE term IN ({marks})"
                " AND doc IN (SELECT id FROM sections WHERE path = ?)",
                [*terms, path],
            )
        }

    def unknown_terms(self, forms: Mapping[str, Iterable[str]]) -> list[str]:
        """The terms that no section contains in any of their forms."""
        frequencies = self.document_frequencies(f for fs in forms.values() for f in fs)
        return [t for t, fs in forms.items() if not any(frequencies.get(f, 0) for f in fs)]

    def idf(self, forms: Mapping[str, Iterable[str]]) -> dict[str, float]:
        """BM25-style inverse document frequency per term (rare terms weigh more).

        ``forms`` maps each term to the stems the index may hold for it ("maximum" ->
        {"maximum", "max"}); the most frequent form stands for the term.
        """
        total = self.section_count()
        frequencies = self.document_frequencies(f for fs in forms.values() for f in fs)
        result = {}
        for term, term_forms in forms.items():
            df = max((frequencies.get(f, 0) for f in term_forms), default=0)
            result[term] = math.log(1 + (total - df + 0.5) / (df + 0.5))
        return result


def index_state(index_root: Path, markdown_root: Path) -> dict[str, Any]:
    """What the index of ``markdown_root`` holds, read without writing or locking it:
    ``{"indexed_files": n, "updated_at": ISO time}``, both None before the first run."""
    path = index_path_for(index_root, markdown_root)
    try:
        # WAL mode: recent writes may sit in the -wal file until a checkpoint.
        wal = path.with_name(path.name + "-wal")
        stamp = max(path.stat().st_mtime, wal.stat().st_mtime if wal.exists() else 0.0)
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
        try:
            (files,) = connection.execute("SELECT count(*) FROM files").fetchone()
        finally:
            connection.close()
    except (OSError, sqlite3.Error):
        return {"indexed_files": None, "updated_at": None}
    updated = (
        datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )
    return {"indexed_files": int(files), "updated_at": updated}
