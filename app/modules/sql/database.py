"""Tables found in the corpus, served from a database that cannot be written to.

CSV files (and the tables of any SQLite file) under the markdown root are copied into one
SQLite file under the index folder, rebuilt when a source changes. Queries go through a
separate connection that is read-only three times over: the file is opened with
``mode=ro``, ``PRAGMA query_only`` is on, and an authorizer allows nothing but reading
(no write, no ATTACH, no PRAGMA, no extension loading), whatever SQL it is given.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.modules.atomic_file import write_json_atomic
from app.modules.documents.corpus import DATABASE_SUFFIXES, TABLE_SUFFIXES, iter_files


class QueryRefused(RuntimeError):
    """The statement tried something other than reading, or broke a limit."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    sql: str
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    seconds: float


_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def table_name_for(relative: str) -> str:
    """A SQL identifier from a file's path: ``data/project-budgets.csv`` -> ``project_budgets``."""
    stem = Path(relative).stem.lower()
    name = re.sub(r"[^a-z0-9_]+", "_", stem).strip("_") or "table"
    return f"t_{name}" if name[0].isdigit() else name


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _column_type(values: list[str]) -> str:
    present = [v for v in values if v != ""]
    if present and all(_NUMBER.match(v) for v in present):
        return "INTEGER" if all("." not in v for v in present) else "REAL"
    return "TEXT"


def _convert(value: str, kind: str) -> Any:
    if value == "":
        return None
    if kind == "INTEGER":
        return int(value)
    if kind == "REAL":
        return float(value)
    return value


def _load_csv(db: sqlite3.Connection, path: Path, table: str) -> None:
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return
    header = [h.strip() or f"column_{i + 1}" for i, h in enumerate(rows[0])]
    seen: dict[str, int] = {}
    columns = []
    for name in header:  # duplicate headers would make an invalid CREATE TABLE
        seen[name] = seen.get(name, 0) + 1
        columns.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    body = [
        (r + [""] * len(columns))[: len(columns)] for r in rows[1:] if any(c.strip() for c in r)
    ]
    body = [[c.strip() for c in r] for r in body]
    kinds = [_column_type([r[i] for r in body]) for i in range(len(columns))]
    definition = ", ".join(
        f"{quote_identifier(c)} {k}" for c, k in zip(columns, kinds, strict=True)
    )
    db.execute(f"CREATE TABLE {quote_identifier(table)} ({definition})")
    marks = ", ".join("?" * len(columns))
    db.executemany(
        f"INSERT INTO {quote_identifier(table)} VALUES ({marks})",
        ([_convert(v, k) for v, k in zip(r, kinds, strict=True)] for r in body),
    )


def _copy_database(db: sqlite3.Connection, path: Path, prefix: str, taken: set[str]) -> None:
    source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        names = [
            row[0]
            for row in source.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for name in names:
            target = _unique(re.sub(r"[^a-z0-9_]+", "_", name.lower()) or prefix, taken)
            # Keep the declared types: the planner matches values only in TEXT columns.
            info = source.execute(f"SELECT name, type FROM pragma_table_info({_literal(name)})")
            definition = ", ".join(f"{quote_identifier(c)} {_affinity(t)}" for c, t in info)
            cursor = source.execute(f"SELECT * FROM {quote_identifier(name)}")
            columns = [d[0] for d in cursor.description]
            db.execute(f"CREATE TABLE {quote_identifier(target)} ({definition})")
            marks = ", ".join("?" * len(columns))
            db.executemany(f"INSERT INTO {quote_identifier(target)} VALUES ({marks})", cursor)
    finally:
        source.close()


def _affinity(declared: str) -> str:
    """The SQLite type affinity of a declared column type (sqlite.org/datatype3.html, 3.1)."""
    upper = (declared or "").upper()
    if "INT" in upper:
        return "INTEGER"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC" if upper and "BLOB" not in upper else "BLOB"


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


def build_table_database(root: Path, cache_dir: Path) -> tuple[Path | None, list[str]]:
    """The read-only database of ``root``'s tables (``None`` when it has none), and warnings."""
    sources = list(iter_files(root, TABLE_SUFFIXES | DATABASE_SUFFIXES))
    if not sources:
        return None, []
    fingerprint = hashlib.sha256(
        json.dumps([[f.relative, f.size, f.mtime_ns] for f in sources]).encode()
    ).hexdigest()[:16]
    root_key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    target = cache_dir / f"tables-{root_key}-{fingerprint}.sqlite"
    warnings_path = target.with_suffix(".warnings.json")
    if target.exists():
        return target, _read_warnings(warnings_path)

    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tables-", suffix=".tmp", dir=cache_dir)
    os.close(fd)
    warnings: list[str] = []
    db = sqlite3.connect(tmp_name)
    taken: set[str] = set()
    try:
        for source in sources:
            try:
                if source.path.suffix.lower() in TABLE_SUFFIXES:
                    _load_csv(db, source.path, _unique(table_name_for(source.relative), taken))
                else:
                    _copy_database(db, source.path, table_name_for(source.relative), taken)
            except (sqlite3.Error, csv.Error, ValueError, OSError) as exc:
                warnings.append(f"{source.relative}: table skipped, {exc}")
        db.commit()
    finally:
        db.close()
    # Build aside, then rename: two processes building at once both end with a whole file.
    write_json_atomic(warnings_path, warnings)
    os.replace(tmp_name, target)
    for stale in cache_dir.glob(f"tables-{root_key}-*"):
        if stale not in (target, warnings_path):
            stale.unlink(missing_ok=True)
    return target, warnings


def _read_warnings(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [str(w) for w in data] if isinstance(data, list) else []


# Authorizer action codes that reading needs; everything else is denied.
_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
_DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})


def _authorize(action: int, _arg1: str | None, arg2: str | None, *_: object) -> int:
    if action == sqlite3.SQLITE_FUNCTION:
        return (
            sqlite3.SQLITE_DENY if (arg2 or "").lower() in _DENIED_FUNCTIONS else sqlite3.SQLITE_OK
        )
    return sqlite3.SQLITE_OK if action in _ALLOWED_ACTIONS else sqlite3.SQLITE_DENY


class ReadOnlyDatabase:
    """Run SELECTs with a time limit and a row cap; anything else is refused by SQLite."""

    def __init__(self, path: Path, *, timeout_s: float = 2.0, row_cap: int = 200) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.row_cap = row_cap
        self._db = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
        self._db.execute("PRAGMA query_only = ON")
        self._db.set_authorizer(_authorize)
        self._deadline = 0.0
        self._db.set_progress_handler(self._over_time, 1000)

    def _over_time(self) -> int:
        # A non-zero return makes SQLite abort the statement with "interrupted".
        return 1 if time.monotonic() > self._deadline else 0

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ReadOnlyDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def tables(self) -> dict[str, list[tuple[str, str]]]:
        """Each table's columns with their declared types."""
        names = [
            row[0]
            for row in self._run_internal(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {
            name: [
                (str(col[1]), str(col[2] or ""))
                for col in self._run_internal(f"SELECT * FROM pragma_table_info({_literal(name)})")
            ]
            for name in names
        }

    def distinct(self, table: str, column: str, limit: int) -> list[Any]:
        """Up to ``limit`` distinct non-null values of one column."""
        return [
            row[0]
            for row in self._run_internal(
                f"SELECT DISTINCT {quote_identifier(column)} FROM {quote_identifier(table)}"
                f" WHERE {quote_identifier(column)} IS NOT NULL LIMIT {int(limit)}"
            )
        ]

    def _run_internal(self, sql: str) -> list[tuple[Any, ...]]:
        self._deadline = time.monotonic() + self.timeout_s
        # Reading the schema needs the table-valued pragma, which the authorizer refuses
        # to user SQL; lift it for this one internal statement.
        self._db.set_authorizer(None)
        try:
            return self._db.execute(sql).fetchall()
        finally:
            self._db.set_authorizer(_authorize)

    def query(self, sql: str) -> QueryResult:
        """Run one statement; raise :class:`QueryRefused` for anything but a bounded read."""
        started = time.monotonic()
        self._deadline = started + self.timeout_s
        try:
            cursor = self._db.execute(sql)
            rows = cursor.fetchmany(self.row_cap + 1)
        except sqlite3.DatabaseError as exc:
            message = str(exc)
            if "interrupted" in message:
                message = f"query exceeded the {self.timeout_s:g} s time limit"
            raise QueryRefused(message) from exc
        columns = [d[0] for d in cursor.description or ()]
        cursor.close()
        return QueryResult(
            sql=sql,
            columns=columns,
            rows=[list(r) for r in rows[: self.row_cap]],
            truncated=len(rows) > self.row_cap,
            seconds=time.monotonic() - started,
        )


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
