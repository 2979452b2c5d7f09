"""Corpus tables in a read-only SQLite database (app.modules.sql) and the SQL planner."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.modules.sql.database import QueryRefused, ReadOnlyDatabase, build_table_database
from app.modules.sql.planner import plan_queries

EMISSIONS_CSV = """\
organisation,year,scope,tonnes,share
Northwind Traders,2022,Scope 1,120,0.5
Northwind Traders,2023,Scope 1,110,0.25
Northwind Traders,2023,Scope 2,40,0.75
Contoso Energy,2022,Scope 2,300,1.5
Contoso Energy,2023,Scope 1,,2
Contoso Energy,2023,Scope 2,280,0.125
Fabrikam Foods,2023,Scope 1,75,1
"""
EMISSIONS_ROWS = 7
READINGS_ROWS = 50


def _make_corpus(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "README.md").write_text("# Data\n\nSee the tables.\n")
    (root / "data").mkdir()
    (root / "data" / "emissions.csv").write_text(EMISSIONS_CSV)
    readings = "sensor,reading\n" + "".join(f"s{i},{i * 1.5}\n" for i in range(READINGS_ROWS))
    (root / "data" / "sensor-readings.csv").write_text(readings)
    source = sqlite3.connect(root / "inventory.sqlite")
    try:
        source.execute("CREATE TABLE Parts (id INTEGER, name TEXT, price REAL)")
        source.executemany(
            "INSERT INTO Parts VALUES (?, ?, ?)",
            [(1, "hex bolt", 0.25), (2, "wing nut", 0.1), (3, "washer", 0.05)],
        )
        source.commit()
    finally:
        source.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    _make_corpus(corpus)
    return corpus


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def db_file(root: Path, cache_dir: Path) -> Path:
    path, warnings = build_table_database(root, cache_dir)
    assert warnings == []
    assert path is not None
    return path


@pytest.fixture
def db(db_file: Path) -> Iterator[ReadOnlyDatabase]:
    with ReadOnlyDatabase(db_file, timeout_s=2.0, row_cap=200) as opened:
        yield opened


def _raw(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read ``path`` with a plain connection, outside the code under test."""
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


class TestBuildTableDatabase:
    def test_csv_becomes_a_table_with_inferred_types(self, db: ReadOnlyDatabase) -> None:
        tables = db.tables()

        assert tables["emissions"] == [
            ("organisation", "TEXT"),
            ("year", "INTEGER"),
            ("scope", "TEXT"),
            ("tonnes", "INTEGER"),
            ("share", "REAL"),
        ]
        assert tables["sensor_readings"] == [("sensor", "TEXT"), ("reading", "REAL")]

    def test_csv_values_are_converted(self, db: ReadOnlyDatabase) -> None:
        result = db.query(
            "SELECT organisation, year, tonnes, share FROM emissions"
            " WHERE organisation = 'Contoso Energy' ORDER BY year, tonnes"
        )

        assert result.columns == ["organisation", "year", "tonnes", "share"]
        assert result.rows == [
            ["Contoso Energy", 2022, 300, 1.5],
            ["Contoso Energy", 2023, None, 2.0],  # an empty cell is NULL
            ["Contoso Energy", 2023, 280, 0.125],
        ]
        assert [type(v) for v in result.rows[0]] == [str, int, int, float]
        assert result.truncated is False

    def test_sqlite_table_is_copied(self, db: ReadOnlyDatabase) -> None:
        assert "parts" in db.tables()

        result = db.query("SELECT id, name, price FROM parts ORDER BY id")

        assert result.rows == [[1, "hex bolt", 0.25], [2, "wing nut", 0.1], [3, "washer", 0.05]]

    def test_sqlite_table_keeps_its_column_types(self, db: ReadOnlyDatabase) -> None:
        assert db.tables()["parts"] == [("id", "INTEGER"), ("name", "TEXT"), ("price", "REAL")]

    def test_select_returns_rows(self, db: ReadOnlyDatabase) -> None:
        result = db.query("SELECT count(*), sum(tonnes) FROM emissions WHERE year = 2023")

        assert result.rows == [[5, 505]]
        assert result.sql == "SELECT count(*), sum(tonnes) FROM emissions WHERE year = 2023"

    def test_corpus_without_tables_gives_no_database(self, tmp_path: Path) -> None:
        corpus = tmp_path / "only-markdown"
        corpus.mkdir()
        (corpus / "a.md").write_text("# A\n")

        assert build_table_database(corpus, tmp_path / "cache") == (None, [])
        assert not (tmp_path / "cache").exists()

    def test_broken_database_file_is_a_warning(self, root: Path, cache_dir: Path) -> None:
        (root / "broken.db").write_bytes(b"this is not a database file at all" * 100)

        path, warnings = build_table_database(root, cache_dir)

        assert path is not None
        assert len(warnings) == 1
        assert warnings[0].startswith("broken.db: table skipped, ")
        names = {row[0] for row in _raw(path, "SELECT name FROM sqlite_master WHERE type='table'")}
        assert names == {"emissions", "sensor_readings", "parts"}
        # The warnings are kept with the cached database.
        assert build_table_database(root, cache_dir) == (path, warnings)

    def test_unchanged_sources_reuse_the_database(self, root: Path, cache_dir: Path) -> None:
        first, _ = build_table_database(root, cache_dir)
        assert first is not None
        mtime = first.stat().st_mtime_ns

        second, _ = build_table_database(root, cache_dir)

        assert second == first
        assert first.stat().st_mtime_ns == mtime

    def test_changed_csv_triggers_a_rebuild(self, root: Path, cache_dir: Path) -> None:
        first, _ = build_table_database(root, cache_dir)
        assert first is not None
        csv_path = root / "data" / "emissions.csv"
        csv_path.write_text(EMISSIONS_CSV + "Tailspin Toys,2023,Scope 1,12,0.5\n")
        stat = csv_path.stat()
        os.utime(csv_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))

        second, _ = build_table_database(root, cache_dir)

        assert second is not None
        assert second != first  # a new fingerprint, a new file
        assert not first.exists()  # the stale build is gone
        assert _raw(second, "SELECT count(*) FROM emissions") == [(EMISSIONS_ROWS + 1,)]
        assert _raw(
            second, "SELECT tonnes FROM emissions WHERE organisation = 'Tailspin Toys'"
        ) == [(12,)]
        assert sorted(p.name for p in cache_dir.glob("*.sqlite")) == [second.name]


def _snapshot(cache_dir: Path, db_file: Path) -> tuple[list[str], str, int]:
    return (
        sorted(p.name for p in cache_dir.iterdir()),
        hashlib.sha256(db_file.read_bytes()).hexdigest(),
        db_file.stat().st_mtime_ns,
    )


class TestReadOnlyDatabase:
    @pytest.mark.parametrize(
        ("sql", "message"),
        [
            pytest.param("DROP TABLE emissions", "not authorized", id="drop"),
            pytest.param("DELETE FROM emissions", "not authorized", id="delete"),
            pytest.param(
                "INSERT INTO emissions VALUES ('X', 2020, 'Scope 1', 1, 1.0)",
                "not authorized",
                id="insert",
            ),
            pytest.param("UPDATE emissions SET tonnes = 0", "not authorized", id="update"),
            pytest.param("CREATE TABLE t (a)", "not authorized", id="create"),
            pytest.param("ATTACH DATABASE '{attach}' AS other", "not authorized", id="attach"),
            pytest.param("PRAGMA journal_mode=DELETE", "not authorized", id="pragma-journal"),
            pytest.param("PRAGMA writable_schema=ON", "not authorized", id="writable-schema"),
            pytest.param("PRAGMA query_only=OFF", "not authorized", id="query-only-off"),
            pytest.param("SELECT load_extension('x')", "load_extension", id="load-extension"),
            pytest.param("SELECT 1; DROP TABLE emissions", "one statement", id="multi-statement"),
            pytest.param("VACUUM", "authoriz", id="vacuum"),
            pytest.param("BEGIN IMMEDIATE", "not authorized", id="begin"),
        ],
    )
    def test_anything_but_reading_is_refused(
        self,
        db: ReadOnlyDatabase,
        db_file: Path,
        cache_dir: Path,
        tmp_path: Path,
        sql: str,
        message: str,
    ) -> None:
        attach_target = tmp_path / "attached.sqlite"
        before = _snapshot(cache_dir, db_file)

        with pytest.raises(QueryRefused, match=message):
            db.query(sql.format(attach=attach_target))

        assert _snapshot(cache_dir, db_file) == before
        assert not attach_target.exists()
        assert _raw(db_file, "SELECT count(*) FROM emissions") == [(EMISSIONS_ROWS,)]
        assert _raw(db_file, "PRAGMA journal_mode") == [("delete",)]
        # The connection is still usable for reading afterwards.
        assert db.query("SELECT count(*) FROM emissions").rows == [[EMISSIONS_ROWS]]

    def test_runaway_query_is_stopped_by_the_time_limit(self, db_file: Path) -> None:
        # 50**5 = 312 million rows: far more than 0.2 s of work.
        runaway = (
            "SELECT count(*) FROM sensor_readings a, sensor_readings b, sensor_readings c,"
            " sensor_readings d, sensor_readings e"
        )
        with ReadOnlyDatabase(db_file, timeout_s=0.2) as limited:
            with pytest.raises(QueryRefused, match=r"0\.2 s time limit"):
                limited.query(runaway)

            # The next statement gets a fresh deadline.
            assert limited.query("SELECT count(*) FROM emissions").rows == [[EMISSIONS_ROWS]]

    def test_runaway_recursive_cte_is_refused(self, db_file: Path) -> None:
        # The authorizer denies SQLITE_RECURSIVE, so this is refused before it runs; were
        # recursive CTEs allowed, the time limit would have to stop it.
        runaway = (
            "WITH RECURSIVE counter(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM counter"
            " WHERE n < 1000000000) SELECT count(*) FROM counter"
        )
        with ReadOnlyDatabase(db_file, timeout_s=0.2) as limited:
            with pytest.raises(QueryRefused, match=r"not authorized|0\.2 s time limit"):
                limited.query(runaway)

            assert limited.query("SELECT count(*) FROM emissions").rows == [[EMISSIONS_ROWS]]

    def test_row_cap_truncates(self, db_file: Path) -> None:
        with ReadOnlyDatabase(db_file, row_cap=10) as capped:
            result = capped.query("SELECT sensor FROM sensor_readings ORDER BY rowid")

        assert result.truncated is True
        assert result.rows == [[f"s{i}"] for i in range(10)]

    def test_row_cap_equal_to_row_count_is_not_truncated(self, db_file: Path) -> None:
        with ReadOnlyDatabase(db_file, row_cap=READINGS_ROWS) as capped:
            result = capped.query("SELECT sensor FROM sensor_readings")

        assert result.truncated is False
        assert len(result.rows) == READINGS_ROWS

    def test_distinct_values(self, db: ReadOnlyDatabase) -> None:
        assert sorted(db.distinct("emissions", "organisation", 10)) == [
            "Contoso Energy",
            "Fabrikam Foods",
            "Northwind Traders",
        ]
        assert len(db.distinct("emissions", "organisation", 2)) == 2
        assert None not in db.distinct("emissions", "tonnes", 100)


class TestPlanQueries:
    def test_question_naming_an_organisation_and_a_year(self, db: ReadOnlyDatabase) -> None:
        planned = plan_queries(db, "What were the emissions of Northwind Traders in 2023?")

        assert [p.table for p in planned] == ["emissions"]
        (query,) = planned
        where = query.sql.split(" WHERE ", 1)[1]
        assert "'Northwind Traders'" in where
        assert "2023" in where
        assert "Contoso" not in query.sql
        result = db.query(query.sql)
        column = {name: i for i, name in enumerate(result.columns)}
        assert sorted((r[column["scope"]], r[column["tonnes"]]) for r in result.rows) == [
            ("Scope 1", 110),
            ("Scope 2", 40),
        ]
        assert {(r[column["organisation"]], r[column["year"]]) for r in result.rows} == {
            ("Northwind Traders", 2023)
        }

    def test_question_asking_for_a_total_adds_a_sum(self, db: ReadOnlyDatabase) -> None:
        planned = plan_queries(db, "What were the total tonnes of Contoso Energy in 2023?")

        totals = [p for p in planned if "SUM(" in p.sql]
        assert len(totals) == 1
        result = db.query(totals[0].sql)
        row = dict(zip(result.columns, result.rows[0], strict=True))
        assert len(result.rows) == 1
        assert row["organisation"] == "Contoso Energy"
        assert row["year"] == 2023
        assert row["total_tonnes"] == 280  # the empty cell counts as nothing

    def test_question_about_nothing_in_the_tables_plans_nothing(self, db: ReadOnlyDatabase) -> None:
        assert plan_queries(db, "How do I bake sourdough bread at home?") == []

    def test_year_absent_from_the_table_is_not_a_condition(self, db: ReadOnlyDatabase) -> None:
        (query,) = plan_queries(db, "Fabrikam Foods emissions in 1999")

        assert "1999" not in query.sql
        assert db.query(query.sql).rows == [["Fabrikam Foods", 2023, "Scope 1", 75, 1.0]]

    def test_value_in_a_copied_sqlite_table_is_planned(self, db: ReadOnlyDatabase) -> None:
        planned = plan_queries(db, "What is the price of the hex bolt part?")

        assert [p.table for p in planned] == ["parts"]
        assert "'hex bolt'" in planned[0].sql
        assert db.query(planned[0].sql).rows == [[1, "hex bolt", 0.25]]
