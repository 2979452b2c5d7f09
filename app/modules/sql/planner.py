"""From a question to the SQL worth running: which tables, which rows.

No model is needed: a table is relevant when the question names it, its columns or values in
it ("Northwind", "Scope 1", "2023"); those values become the WHERE clause. Asked for a total,
the planner adds a grouped SUM. Every statement is built with quoted identifiers and
literals, and recorded exactly as executed.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from app.modules.retrieval.text import content_terms
from app.modules.sql.database import ReadOnlyDatabase, quote_identifier

_YEAR = re.compile(r"\b(19\d\d|20\d\d)\b")
_TOTAL_WORDS = frozenset({"total", "sum", "overall", "combined", "altogether", "aggregate"})
_MAX_DISTINCT = 2000


@dataclass(frozen=True, slots=True)
class PlannedQuery:
    table: str
    sql: str
    reason: str


def _literal(value: object) -> str:
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _is_year_column(name: str) -> bool:
    return "year" in name.lower()


def plan_queries(
    db: ReadOnlyDatabase, question: str, *, max_tables: int = 2, row_limit: int = 200
) -> list[PlannedQuery]:
    """SELECT statements over the tables the question is about (possibly none)."""
    asked = set(content_terms(question))
    years = {int(y) for y in _YEAR.findall(question)}
    wants_total = bool(asked & {t for w in _TOTAL_WORDS for t in content_terms(w)})
    candidates: list[tuple[float, PlannedQuery | None, list[PlannedQuery]]] = []

    for table, columns in db.tables().items():
        score = 2.0 * len(asked & set(content_terms(table.replace("_", " "))))
        conditions: list[str] = []
        matched: list[str] = []
        numeric = [c for c, kind in columns if kind in {"INTEGER", "REAL"}]
        for column, kind in columns:
            score += len(asked & set(content_terms(column.replace("_", " "))))
            if _is_year_column(column) and kind == "INTEGER" and years:
                present = sorted(
                    y for y in years if y in set(db.distinct(table, column, _MAX_DISTINCT))
                )
                if present:
                    conditions.append(
                        f"{quote_identifier(column)} IN ({', '.join(map(str, present))})"
                    )
                    matched.append(column)
                continue
            if kind != "TEXT":
                continue
            values = [v for v in db.distinct(table, column, _MAX_DISTINCT) if isinstance(v, str)]
            hits = _matching_values(values, asked)
            if hits:
                conditions.append(
                    f"{quote_identifier(column)} IN ({', '.join(_literal(v) for v in hits)})"
                )
                matched.append(column)
        score += 3.0 * len(matched)
        if score < 3.0 or not (matched or score >= 4.0):
            continue
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        order_columns = [c for c, _ in columns if _is_year_column(c)][:1]
        order = f" ORDER BY {quote_identifier(order_columns[0])}" if order_columns else ""
        rows_sql = f"SELECT * FROM {quote_identifier(table)}{where}{order} LIMIT {row_limit}"
        reason = f"matched {', '.join(matched)}" if matched else "table named in the question"
        extra: list[PlannedQuery] = []
        measures = [c for c in numeric if not _is_year_column(c) and not c.lower().endswith("id")]
        if wants_total and measures and matched:
            groups = ", ".join(quote_identifier(c) for c in matched)
            sums = ", ".join(
                f"SUM({quote_identifier(m)}) AS {quote_identifier('total_' + m)}" for m in measures
            )
            extra.append(
                PlannedQuery(
                    table,
                    f"SELECT {groups}, {sums} FROM {quote_identifier(table)}{where}"
                    f" GROUP BY {groups} ORDER BY {groups}",
                    "the question asks for a total",
                )
            )
        candidates.append((score, PlannedQuery(table, rows_sql, reason), extra))

    candidates.sort(key=lambda c: c[0], reverse=True)
    planned: list[PlannedQuery] = []
    for _, main, extra in candidates[:max_tables]:
        planned.extend(extra)
        if main:
            planned.append(main)
    return planned


def _matching_values(values: list[str], asked: set[str]) -> list[str]:
    """Values the question names: all their words, or their distinctive first word."""
    term_lists = {v: content_terms(v) for v in values}
    # A word shared by most values of a column ("Scope" in "Scope 1/2/3") names none of them.
    spread = Counter(t for terms in term_lists.values() for t in set(terms))
    common = {t for t, n in spread.items() if n > max(1, len(values) // 2)}
    hits = []
    for value, terms in term_lists.items():
        if not terms:
            continue
        if (set(terms) <= asked and not set(terms) <= common) or (
            len(terms) > 1 and terms[0] in asked and terms[0] not in common and len(terms[0]) >= 4
        ):
            hits.append(value)
    return hits
