"""Answer quality on every evaluation corpus: the figures of ``python -m app eval``, side by side.

Run by hand (not part of pytest)::

    .venv/bin/python -m benchmarks.eval_corpora                      # test halves + sample
    .venv/bin/python -m benchmarks.eval_corpora --split dev          # the halves to tune on
    .venv/bin/python -m benchmarks.eval_corpora --out /tmp/now.json \\
        --baseline benchmarks/results/answer-quality-before.json     # before/after columns

The corpora are under ``benchmarks/corpora/<name>/`` (``docs/``, ``questions.jsonl``,
``SOURCE.md``); the bundled sample is ``documents/`` with ``documents/eval/questions.jsonl``.
Tune on the dev halves; report the test halves. Each corpus is indexed from scratch in a
temporary folder, so index build time is not part of the answer latencies printed here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from app.config import AppConfig
from app.modules.evaluation import evaluate, load_questions, summarise

REPO = Path(__file__).resolve().parent.parent
CORPORA = REPO / "benchmarks" / "corpora"
COLUMNS = (
    "correct",
    "hit_at_1",
    "hit_at_5",
    "mrr",
    "key_fact_recall",
    "all_facts_rate",
    "citation_validity",
    "citation_precision",
    "gap_on_unanswerable",
    "false_gap_rate",
    "p50_seconds",
    "p95_seconds",
)


def corpora() -> list[tuple[str, Path, Path]]:
    """(name, documents folder, questions file) for every corpus, the sample last."""
    found = [
        (folder.name, folder / "docs", folder / "questions.jsonl")
        for folder in sorted(CORPORA.iterdir())
        if (folder / "questions.jsonl").is_file()
    ]
    return [*found, ("sample", REPO / "documents", REPO / "documents" / "eval" / "questions.jsonl")]


def run(split: str) -> dict[str, Any]:
    """Evaluate every corpus (the sample whole: it has no halves) and return the reports."""
    reports: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="eval-corpora-") as work:
        for name, docs, questions_file in corpora():
            questions = load_questions(questions_file, split=None if name == "sample" else split)
            config = AppConfig(base_dir=REPO, markdown_path=str(docs), output_dir=Path(work) / name)
            report = evaluate(config, questions, run_prefix=name)
            key = name if name == "sample" else f"{name}:{split}"
            reports[key] = report.to_json()
            print(f"{key:<20} {json.dumps(report.summary)}", file=sys.stderr)
    return reports


def table(reports: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    """A markdown table per corpus: overall and per kind, with the baseline where given."""
    lines: list[str] = []
    for key, report in reports.items():
        lines += [f"\n### {key}\n", "| kind | n | " + " | ".join(COLUMNS) + " |"]
        lines.append("|---|---|" + "---|" * len(COLUMNS))
        before = (baseline or {}).get(key)
        rows = [*report["by_kind"].items(), ("all", report["summary"])]
        for kind, summary in rows:
            old = None
            if before is not None:
                old = before["summary"] if kind == "all" else before["by_kind"].get(kind)
            cells = [_cell(summary.get(c), None if old is None else old.get(c)) for c in COLUMNS]
            lines.append(f"| {kind} | {summary['questions']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


POOLED_COLUMNS = (
    "correct",
    "hit_at_1",
    "key_fact_recall",
    "all_facts_rate",
    "gap_on_unanswerable",
    "false_gap_rate",
)


def pooled(reports: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    """One table over the corpora's halves together (the sample left out), per question kind."""

    def by_kind(source: dict[str, Any]) -> dict[str, dict[str, Any]]:
        rows = [r for key, rep in source.items() if key in keys for r in rep["results"]]
        kinds = sorted({r["kind"] for r in rows})
        out = {k: summarise([r for r in rows if r["kind"] == k]) for k in kinds}
        out["all"] = summarise(rows)
        return out

    keys = [k for k in reports if k != "sample"]
    now, before = by_kind(reports), by_kind(baseline) if baseline else {}
    lines = [
        f"\n### {' + '.join(keys)}, per kind\n",
        "| kind | n | " + " | ".join(POOLED_COLUMNS) + " |",
        "|---|---|" + "---|" * len(POOLED_COLUMNS),
    ]
    for kind, summary in now.items():
        old = before.get(kind)
        cells = [_cell(summary.get(c), None if old is None else old.get(c)) for c in POOLED_COLUMNS]
        lines.append(f"| {kind} | {summary['questions']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: Any, old: Any) -> str:
    now = "-" if value is None else f"{value:g}"
    if old is None or old == value:
        return now
    return f"{'-' if old is None else f'{old:g}'} → {now}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=["dev", "test"], default="test")
    parser.add_argument("--out", type=Path, help="write the reports (JSON) here")
    parser.add_argument("--baseline", type=Path, help="an earlier --out, shown as before → after")
    args = parser.parse_args()
    baseline = json.loads(args.baseline.read_text()) if args.baseline else None
    reports = run(args.split)
    if args.out:
        args.out.write_text(json.dumps(reports, indent=1))
    print(table(reports, baseline))
    print(pooled(reports, baseline))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
