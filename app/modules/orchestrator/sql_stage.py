"""The SQL stage: planned read-only queries over the tables in the documents, as evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.config import AppConfig
from app.modules.evidence import Evidence
from app.modules.retrieval.text import stems
from app.modules.run_logger import RunLogger
from app.modules.sql.database import QueryRefused, ReadOnlyDatabase, build_table_database
from app.modules.sql.planner import plan_queries

SQL_TABLE_ROWS_SHOWN = 25


def run_sql(
    config: AppConfig, question: str, root: Path, evidence: list[Evidence], logger: RunLogger
) -> list[dict[str, Any]]:
    """Run the planned read-only queries; each result with rows becomes evidence."""
    db_path, warnings = build_table_database(root, config.index_root)
    for warning in warnings:
        logger.warn(warning)
    if db_path is None:
        return []
    runs: list[dict[str, Any]] = []
    with ReadOnlyDatabase(
        db_path, timeout_s=config.sql_timeout_s, row_cap=config.sql_row_cap
    ) as db:
        for planned in plan_queries(db, question, row_limit=config.sql_row_cap):
            record: dict[str, Any] = {
                "table": planned.table,
                "sql": planned.sql,
                "reason": planned.reason,
            }
            try:
                result = db.query(planned.sql)
            except QueryRefused as exc:
                record["error"] = str(exc)
                logger.warn(f"SQL on {planned.table} failed: {exc}")
                runs.append(record)
                continue
            record.update(
                columns=result.columns,
                row_count=len(result.rows),
                truncated=result.truncated,
                seconds=round(result.seconds, 4),
            )
            if result.rows:
                item = Evidence(
                    id=len(evidence) + 1,
                    kind="sql",
                    text=_markdown_table(result.columns, result.rows),
                    score=1.0,
                    table=planned.table,
                    sql=result.sql,
                    columns=result.columns,
                    rows=result.rows,
                    truncated=result.truncated,
                    stems=frozenset(
                        stems(
                            " ".join(
                                [
                                    planned.table.replace("_", " "),
                                    *result.columns,
                                    *(str(v) for r in result.rows for v in r),
                                ]
                            )
                        )
                    ),
                )
                evidence.append(item)
                record["evidence_id"] = item.id
            runs.append(record)
    return runs


def _markdown_table(columns: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        text = (
            ""
            if value is None
            else (
                f"{value:,}"
                if isinstance(value, int) and not (1900 <= value <= 2100)
                else str(value)
            )
        )
        return text.replace("|", "\\|").replace("\n", " ")

    shown = rows[:SQL_TABLE_ROWS_SHOWN]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown]
    if len(rows) > len(shown):
        lines.append(f"\n_First {len(shown)} of {len(rows)} rows._")
    return "\n".join(lines)
