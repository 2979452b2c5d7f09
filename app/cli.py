"""The command line: serve the API, ask one question in the terminal, evaluate the engine."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.config import AppConfig
from app.modules.atomic_file import write_json_atomic
from app.modules.evaluation import EvalFileError, compare, evaluate, load_questions
from app.modules.orchestrator.module import PipelineError, run_pipeline
from app.modules.run_ids import build_run_id


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    docs_help = (
        "your folder of markdown files, anywhere: the only documents root and the default "
        "folder every run reads (env: APP_DOCS; default: ./documents)"
    )
    serve = commands.add_parser(
        "serve",
        help="start the HTTP API, the demo page and the API docs (uvicorn)",
        description="Start the HTTP API on HOST:PORT: the demo page at /demo/, the API docs "
        "at /docs, runs at /api/v1/runs. Settings come from APP_* environment variables "
        "(README, Configuration).",
    )
    serve.add_argument("--docs", metavar="PATH", help=docs_help)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")

    ask = commands.add_parser(
        "ask",
        help="answer one question in the terminal",
        description="Answer QUESTION from the documents: prints each stage to stderr, the "
        "answer with its Sources to stdout, and keeps final.md, context_bundle.json and "
        "run.json in output/<run_id>/ (listed by the API like any run).",
    )
    ask.add_argument("question", help="what to ask, in your own words")
    ask.add_argument("--docs", metavar="PATH", help=docs_help)
    ask.add_argument(
        "--markdown-path",
        metavar="PATH",
        help="the folder to read, if not the default one (a folder below a root, or any path)",
    )
    ask.add_argument("--sql", action="store_true", help="also query CSV/SQLite tables")
    ask.add_argument(
        "--run-id", help="name of the run folder under output/ (default: a new time-based id)"
    )

    run_eval = commands.add_parser("eval", help="score the engine on a questions.jsonl file")
    run_eval.add_argument("questions", type=Path, help="one JSON question per line (README)")
    run_eval.add_argument("--docs", metavar="PATH", help=docs_help)
    run_eval.add_argument("--markdown-path", help="folder of markdown files (default: documents)")
    run_eval.add_argument("--out", type=Path, help="where to write the JSON report")
    run_eval.add_argument(
        "--split", choices=["dev", "test"], help="only the questions of this half of the set"
    )
    run_eval.add_argument(
        "--baseline", type=Path, help="an earlier report: list the questions won and lost"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    overrides: dict[str, Any] = {}
    if args.docs:
        overrides["docs"] = args.docs
    if args.markdown_path:
        overrides["markdown_path"] = args.markdown_path
    if getattr(args, "sql", False):
        overrides["enable_sql"] = True
    config = AppConfig(**overrides)
    if args.command == "ask":
        return _ask(config, args.question, args.run_id or build_run_id())
    return _eval(config, args)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn  # noqa: PLC0415 - only the server needs it

    from app.api.logging_setup import uvicorn_log_config  # noqa: PLC0415

    if args.docs:
        folder = Path(args.docs).expanduser().resolve()
        if not folder.is_dir():
            print(f"error: --docs {args.docs}: no such folder", file=sys.stderr)
            return 2
        # The app is built from the environment in each worker process.
        os.environ["APP_DOCS"] = str(folder)
    shown = "127.0.0.1" if args.host in {"0.0.0.0", "::"} else args.host
    url = f"http://{shown}:{args.port}"
    print(
        f"demo: {url}/demo/ · API docs: {url}/docs · API: {url}/api/v1/runs",
        file=sys.stderr,
        flush=True,
    )

    uvicorn.run(
        "app.api.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=uvicorn_log_config(json_lines=AppConfig().log_json),
    )
    return 0


def _ask(config: AppConfig, question: str, run_id: str) -> int:
    streaming = False

    def show(event: dict[str, Any]) -> None:
        # The reader may go away (`| head`): the run still finishes and saves.
        with contextlib.suppress(BrokenPipeError):
            _show(event)

    # Stages reported once the answer has begun ("Checking citations", "Saving") wait for
    # its end: the answer and its Sources read as one piece.
    later: list[str] = []

    def _show(event: dict[str, Any]) -> None:
        nonlocal streaming
        if event["type"] == "progress":
            line = f"[{event['step']}/{event['total_steps']}] {event['message']}"
            if streaming:
                later.append(line)
            else:
                print(line, file=sys.stderr, flush=True)
        elif event["type"] == "answer_delta":
            if not streaming:
                print(file=sys.stderr)
                streaming = True
            print(event["text"], end="", flush=True)

    try:
        result = run_pipeline(config, question, run_id, on_event=show)
    except PipelineError as exc:
        print(f"\nerror: {exc.message}", file=sys.stderr)
        return 1
    print(file=sys.stderr)
    for line in later:
        print(line, file=sys.stderr)
    print(f"status: {result.status} ({result.seconds:.2f} s)", file=sys.stderr)
    if result.final_output_path:
        print(f"answer: {config.relative(result.final_output_path)}", file=sys.stderr)
    if result.context_bundle_path:
        print(f"context: {config.relative(result.context_bundle_path)}", file=sys.stderr)
    return 0


def _eval(config: AppConfig, args: argparse.Namespace) -> int:
    try:
        questions = load_questions(args.questions, split=args.split)
        baseline = (
            json.loads(args.baseline.read_text(encoding="utf-8"))["results"]
            if args.baseline
            else None
        )
    except EvalFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: cannot read the baseline {args.baseline}: {exc}", file=sys.stderr)
        return 2
    if not questions:
        print(f"error: no questions in {args.questions} (split: {args.split})", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
    # Eval runs go to a hidden folder so that they do not crowd the API's run list.
    eval_config = config.model_copy(update={"output_dir": config.output_root / ".eval" / stamp})
    report = evaluate(eval_config, questions, run_prefix="eval")
    for row in report.results:
        facts = (
            len(row["key_facts_found"]),
            len(row["key_facts_found"]) + len(row["key_facts_missing"]),
        )
        print(
            f"{row['id']:<8} {row['kind']:<12} hit@1={_flag(row['hit_at_1'])} "
            f"hit@5={_flag(row['hit_at_5'])} facts={facts[0]}/{facts[1]} "
            f"gap={_flag(row['gap_reported'])} {'ok' if row['correct'] else 'WRONG'}"
        )
    print()
    columns = ["correct", "hit_at_1", "hit_at_5", "mrr", "key_fact_recall", "all_facts_rate",
               "citation_precision", "false_gap_rate", "gap_on_unanswerable"]  # fmt: skip
    print(f"{'kind':<14}{'n':>4} " + " ".join(f"{c[:10]:>10}" for c in columns))
    for kind, summary in [*report.by_kind.items(), ("ALL", report.summary)]:
        cells = " ".join(f"{_cell(summary.get(c)):>10}" for c in columns)
        print(f"{kind:<14}{summary['questions']:>4} {cells}")
    print()
    for key, value in report.summary.items():
        print(f"{key:<32} {value}")
    data = report.to_json()
    if baseline is not None:
        changes = compare(report.results, baseline)
        data["compared_with"] = {"baseline": str(args.baseline), **changes}
        for label in ("won", "lost"):
            print(f"\n{label}: {len(changes[label])}")
            for change in changes[label]:
                print(f"  {change['id']:<8} {change['before']} -> {change['after']}  "
                      f"{change['question'][:70]}")  # fmt: skip
    target = args.out or eval_config.output_root / "eval.json"
    write_json_atomic(target, data)
    print(f"\nreport: {target}")
    print(json.dumps(report.summary))
    return 0


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _flag(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")
