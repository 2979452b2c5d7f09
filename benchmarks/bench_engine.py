"""Benchmark the answer engine on a generated corpus: indexing, incremental sync, one answer.

Run by hand (not part of pytest)::

    .venv/bin/python -m benchmarks.bench_engine                  # 1,000 files, ~20 MB
    .venv/bin/python -m benchmarks.bench_engine --files 200 --mb 4 --repeat 3
    .venv/bin/python -m benchmarks.bench_engine --keep /tmp/bench --json /tmp/bench.json

What it does:

1. writes a deterministic (seeded) corpus of realistic markdown files into a temporary
   folder: an H1 title, front matter on some files, 4-10 H2/H3 sections of paragraphs drawn
   from a Zipf-weighted vocabulary (common English words plus a few thousand synthetic but
   pronounceable words, with per-file topic words so that BM25 sees realistic term
   statistics), bullet lists, tables and fenced code blocks. One file carries a planted fact
   ("The Zephyrine reactor budget is EUR 42.7 million") for the answer run to find;
2. times ``SectionIndex.sync`` for a full index from scratch (``--full-repeat`` times, each
   into a fresh index folder), an incremental sync after appending a paragraph to one file, a
   sync with no change, and one question answered end to end by ``run_pipeline`` with the
   offline extractive writer (``--repeat`` times each), and checks the answer holds "42.7";
3. prints the medians against the targets (full index < 15 s, incremental < 0.3 s,
   answer median < 0.2 s and 95th percentile < 0.5 s; the semantic half of retrieval, section
   vectors included, is part of every figure) with PASS/FAIL, plus machine and corpus facts;
   ``--json`` writes them.

Temporary folders are removed at the end unless ``--keep DIR`` names a folder to keep
everything in. The exit status is 0 when every line passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from app.config import AppConfig
from app.modules.orchestrator.module import run_pipeline
from app.modules.retrieval.index import SectionIndex, SyncReport, index_path_for

REPO_ROOT = Path(__file__).resolve().parent.parent

MB = 1_000_000
T = TypeVar("T")

TARGET_FULL_S = 15.0
TARGET_INCREMENTAL_S = 0.3
TARGET_ANSWER_S = 0.2  # median
TARGET_ANSWER_P95_S = 0.5

FACT_NAME = "Zephyrine"
FACT_SENTENCE = (
    "The Zephyrine reactor budget is EUR 42.7 million, approved by the steering board for "
    "the construction phase that starts in the spring of 2026."
)
FACT_ANSWER = "42.7"
QUESTION = "What is the Zephyrine reactor budget?"

# ----------------------------------------------------------------------------- vocabulary

COMMON_WORDS = """
the of and to in is that for it as was with be by on not he this are or his from at which
but have an they you were her all she there would their we him been has when who will more
no if out so said what up its about into than them can only other new some could time these
two may then do first any my now such like our over man me even most made after also did
many before must through back years where much your way well down should because each just
those people how too little state good very make world still own see men work long get here
between both life being under never day same another know while last might us great old year
off come since against go came right used take three states himself few house use during
without again place around however home small found thought went say part once general high
upon school every don does got united left number course war until always away something fact
though water less public put think almost hand enough far took head yet government system
better set told nothing night end why called didn eyes find going look asked later knew point
next program city business give group toward young days let room president side social given
present several order national possible rather second face per among form important often
things looking early white case john become large big need four within felt along children
saw best church ever least power development light thing seemed family interest want members
mind country area others done turned although open problem whole sense service certain
report plan project budget cost team review policy data process level market energy support
quality design network supply model contract target schedule capacity risk safety customer
""".split()

ONSETS = (
    "b br c ch cl d dr f fl fr g gl gr h j k kl l m n p pl pr qu r s sc sh sk sl sn sp st "
    "str t th tr v w z"
).split()
VOWELS = "a e i o u a e i o ai ea ou ie oa".split()
CODAS = ["", "", "", "n", "r", "l", "s", "th", "nd", "st", "m", "x", "rk", "ng", "t"]
SUFFIXES = [""] * 12 + ["ine", "ar", "ion", "ent", "ory", "ite", "al", "ex", "ium", "ward"]

LANGUAGES = {
    "python": [
        "def {a}_{b}({c}, {d}=None):",
        "    result = {c}.{e}({d})",
        "    if not result:",
        '        raise ValueError("{a} {b} failed")',
        "    return [item for item in result if item.{f}]",
        "",
        "{a}_{b}({c}_config, {d}={n})",
    ],
    "bash": [
        "set -euo pipefail",
        "export {A}_HOME=/opt/{a}",
        "{a}ctl --{b} {n} --{c}={d}",
        'for host in {e} {f}; do ssh "$host" {a}ctl status; done',
        "tar -czf /var/backups/{b}-$(date +%F).tgz /srv/{c}",
    ],
    "yaml": [
        "{a}:",
        "  {b}: {n}",
        "  {c}:",
        "    - {d}",
        "    - {e}",
        "  {f}_enabled: true",
    ],
    "sql": [
        "SELECT {a}, sum({b}) AS total_{b}",
        "FROM {c}_{d}",
        "WHERE {e} > {n}",
        "GROUP BY {a}",
        "ORDER BY total_{b} DESC;",
    ],
}

SECTION_WORDS = (
    "Overview Background Scope Requirements Design Architecture Operations Maintenance Budget "
    "Schedule Risks Safety Procedures Results Findings Recommendations Governance Staffing "
    "Suppliers Testing Deployment Monitoring Incidents Lessons Appendix Glossary Costs Timeline "
    "Milestones Responsibilities Inventory Training Compliance Metrics Capacity Logistics"
).split()


def _synthetic_words(rng: random.Random, count: int) -> list[str]:
    reserved = {w.lower() for w in COMMON_WORDS} | {FACT_NAME.lower(), "reactor"}
    found: dict[str, None] = {}
    while len(found) < count:
        syllables = rng.choice((1, 2, 2, 2, 2, 3, 3))
        word = "".join(
            rng.choice(ONSETS) + rng.choice(VOWELS) + (rng.choice(CODAS) if i else "")
            for i in range(syllables)
        ) + rng.choice(SUFFIXES)
        if 3 <= len(word) <= 12 and word not in reserved and "zephyr" not in word:
            found[word] = None
    return list(found)


@dataclass(slots=True)
class Vocabulary:
    words: list[str]
    cum_weights: list[float]
    synthetic: list[str]

    @classmethod
    def build(cls, rng: random.Random, synthetic_count: int) -> Vocabulary:
        synthetic = _synthetic_words(rng, synthetic_count)
        common = list(dict.fromkeys(COMMON_WORDS))
        # Function words rank first (as in real text); the rest interleave at random.
        head, tail = common[:60], common[60:] + synthetic
        rng.shuffle(tail)
        words = head + tail
        cum: list[float] = []
        total = 0.0
        for rank in range(len(words)):
            total += 1.0 / (rank + 2.7) ** 1.05  # Zipf-Mandelbrot
            cum.append(total)
        return cls(words, cum, synthetic)

    def draw(self, rng: random.Random, count: int) -> list[str]:
        return rng.choices(self.words, cum_weights=self.cum_weights, k=count)


# ----------------------------------------------------------------------------- corpus


class FileWriter:
    """One markdown document, built from blocks until it reaches its byte budget."""

    def __init__(self, rng: random.Random, vocab: Vocabulary, topic: list[str]) -> None:
        self.rng = rng
        self.vocab = vocab
        self.topic = topic
        self.names = [w.capitalize() for w in rng.sample(vocab.synthetic, 6)]

    def word_list(self, count: int) -> list[str]:
        rng = self.rng
        out = self.vocab.draw(rng, count)
        for i in range(count):
            roll = rng.random()
            if roll < 0.22:
                out[i] = rng.choice(self.topic)
            elif roll < 0.25:
                out[i] = rng.choice(self.names)
            elif roll < 0.27:
                out[i] = self.number()
        return out

    def number(self) -> str:
        rng = self.rng
        kind = rng.random()
        if kind < 0.3:
            return str(rng.randint(2, 950))
        if kind < 0.5:
            return f"{rng.uniform(0.5, 99):.1f}%"
        if kind < 0.7:
            return str(rng.randint(2015, 2030))
        if kind < 0.85:
            return f"{rng.randint(1, 999):,}.{rng.randint(0, 99):02d}"
        return f"{rng.randint(1000, 250000):,}"

    def sentence(self) -> str:
        rng = self.rng
        tokens = self.word_list(rng.randint(8, 26))
        if rng.random() < 0.15:
            i = rng.randrange(len(tokens))
            tokens[i] = f"**{tokens[i]}**"
        if rng.random() < 0.08:
            i = rng.randrange(len(tokens))
            tokens[i] = f"`{tokens[i].lower()}_{rng.choice(self.topic)}`"
        if rng.random() < 0.05:
            i = rng.randrange(len(tokens))
            tokens[i] = f"[{tokens[i]}](https://example.org/{rng.choice(self.topic)})"
        for _ in range(rng.randint(0, 2)):
            i = rng.randrange(1, len(tokens))
            tokens[i] += ","
        text = " ".join(tokens)
        return text[0].upper() + text[1:] + rng.choice("..........?!")

    def paragraph(self) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(2, 7)))

    def bullets(self) -> str:
        rng = self.rng
        ordered = rng.random() < 0.3
        items = []
        for n in range(1, rng.randint(3, 8) + 1):
            text = " ".join(self.word_list(rng.randint(3, 14)))
            text = text[0].upper() + text[1:]
            items.append(f"{n}. {text}" if ordered else f"- {text}")
        return "\n".join(items)

    def table(self) -> str:
        rng = self.rng
        columns = rng.randint(3, 5)
        header = [rng.choice(self.topic).capitalize()] + [
            rng.choice(("Cost", "Count", "Share", "Year", "Owner", "Status", "Target"))
            for _ in range(columns - 1)
        ]
        rows = ["| " + " | ".join(header) + " |", "|" + "---|" * columns]
        for _ in range(rng.randint(3, 9)):
            cells = [" ".join(self.word_list(rng.randint(1, 3)))] + [
                self.number() if rng.random() < 0.7 else rng.choice(self.names)
                for _ in range(columns - 1)
            ]
            rows.append("| " + " | ".join(cells) + " |")
        return "\n".join(rows)

    def code(self) -> str:
        rng = self.rng
        language = rng.choice(list(LANGUAGES))
        picks = [w.lower() for w in rng.sample(self.topic, 6)]
        values = {
            "a": picks[0],
            "b": picks[1],
            "c": picks[2],
            "d": picks[3],
            "e": picks[4],
            "f": picks[5],
            "A": picks[0].upper(),
            "n": str(rng.randint(1, 512)),
        }
        template = LANGUAGES[language]
        lines = [line.format(**values) for line in template]
        if rng.random() < 0.5:
            lines = lines + [line.format(**values) for line in rng.sample(template, 2)]
        return f"```{language}\n" + "\n".join(lines) + "\n```"

    def heading(self) -> str:
        rng = self.rng
        words = [rng.choice(SECTION_WORDS)]
        words += [w.capitalize() for w in rng.sample(self.topic, rng.randint(0, 2))]
        if rng.random() < 0.3:
            words.append(rng.choice(("and", "for", "of")))
            words.append(rng.choice(SECTION_WORDS).lower())
        return " ".join(words)

    def document(self, title: str, budget: int, *, fact: bool) -> str:
        rng = self.rng
        out: list[str] = []
        if rng.random() < 0.4:
            tags = ", ".join(rng.sample(self.topic, 3))
            out.append(
                "---\n"
                f"title: {title}\n"
                f"description: {' '.join(self.word_list(rng.randint(8, 16)))}\n"
                f"tags: [{tags}]\n"
                f"updated: {rng.randint(2019, 2025)}-{rng.randint(1, 12):02d}-"
                f"{rng.randint(1, 28):02d}\n"
                f"owner: {rng.choice(self.names)} {rng.choice(self.names)}\n"
                "---\n"
            )
        out.append(f"# {title}\n")
        out.append(self.paragraph() + "\n")
        sections = rng.randint(4, 10)
        fact_at = rng.randrange(sections) if fact else -1
        per_section = max(budget - sum(len(b) + 1 for b in out), 0) // sections
        for s in range(sections):
            level = "###" if s and rng.random() < 0.3 else "##"
            if s == fact_at:
                out.append(f"{level} {FACT_NAME} Reactor Funding\n")
                out.append(self.paragraph() + " " + FACT_SENTENCE + " " + self.sentence() + "\n")
            else:
                out.append(f"{level} {self.heading()}\n")
            used = 0
            while True:
                roll = rng.random()
                if roll < 0.68:
                    block = self.paragraph()
                elif roll < 0.82:
                    block = self.bullets()
                elif roll < 0.92:
                    block = self.table()
                else:
                    block = self.code()
                # Stop at the block that would overshoot the budget by more than half its
                # size, so that files average their budget instead of exceeding it.
                if used and used + (len(block) + 1) / 2 > per_section:
                    break
                out.append(block + "\n")
                used += len(block) + 1
        return "\n".join(out)


@dataclass(slots=True)
class Corpus:
    root: Path
    files: int
    bytes: int
    fact_file: str
    paths: list[Path] = field(default_factory=list)


def generate_corpus(root: Path, *, files: int, megabytes: float, seed: int) -> Corpus:
    rng = random.Random(seed)
    vocab = Vocabulary.build(rng, synthetic_count=3000)
    folders = [f"{w}-{v}" for w, v in zip(rng.sample(vocab.synthetic, 12), range(12), strict=True)]
    mean = megabytes * MB / files
    fact_index = rng.randrange(files)
    total = 0
    paths: list[Path] = []
    fact_file = ""
    for i in range(files):
        topic = rng.sample(vocab.synthetic, 40)
        writer = FileWriter(rng, vocab, topic)
        title_words = [w.capitalize() for w in rng.sample(topic, rng.randint(2, 4))]
        title = " ".join([*title_words, rng.choice(SECTION_WORDS)])
        budget = int(mean * rng.uniform(0.6, 1.4))
        text = writer.document(title, budget, fact=i == fact_index)
        folder = root / folders[i % len(folders)]
        folder.mkdir(parents=True, exist_ok=True)
        slug = "-".join(w.lower() for w in title_words)
        path = folder / f"{slug}-{i:04d}.md"
        data = text.encode("utf-8")
        path.write_bytes(data)
        total += len(data)
        paths.append(path)
        if i == fact_index:
            fact_file = path.relative_to(root).as_posix()
    return Corpus(root, files, total, fact_file, paths)


# ----------------------------------------------------------------------------- measuring


def timed(action: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    value = action()
    return time.perf_counter() - started, value


@dataclass(slots=True)
class Figures:
    full: list[float] = field(default_factory=list)
    incremental: list[float] = field(default_factory=list)
    no_change: list[float] = field(default_factory=list)
    answer: list[float] = field(default_factory=list)
    answer_found: list[bool] = field(default_factory=list)
    answer_steps: list[dict[str, float]] = field(default_factory=list)
    sections: int = 0
    index_bytes: int = 0
    incremental_indexed: list[int] = field(default_factory=list)


def _sync(config: AppConfig, db_path: Path, root: Path) -> tuple[float, SyncReport]:
    with SectionIndex.open(db_path) as index:
        return timed(
            lambda: index.sync(
                root, max_chars=config.chunk_max_chars, overlap_chars=config.chunk_overlap_chars
            )
        )


def measure(args: argparse.Namespace, work: Path, corpus: Corpus) -> Figures:
    figures = Figures()
    base = AppConfig(
        base_dir=work,
        llm_provider="extractive",
        markdown_path=str(corpus.root),
        output_dir=work / "output",
        index_dir=work / "index-main",
        enable_sql=False,
        pipeline=None,
    )

    # (a) full index from scratch, each time into a fresh index folder.
    main_db = index_path_for(base.index_root, corpus.root)
    for n in range(args.full_repeat):
        last = n == args.full_repeat - 1
        index_root = base.index_root if last else work / f"index-full-{n}"
        db_path = index_path_for(index_root, corpus.root)
        seconds, report = _sync(base, db_path, corpus.root)
        figures.full.append(seconds)
        figures.sections = report.sections
        print(
            f"  full index {n + 1}/{args.full_repeat}: {seconds:.3f} s "
            f"({report.indexed} files, {report.sections} sections)",
            flush=True,
        )
        if not last:
            shutil.rmtree(index_root, ignore_errors=True)
    figures.index_bytes = sum(p.stat().st_size for p in main_db.parent.iterdir() if p.is_file())

    # (b) incremental, (c) no change, (d) one answer; each repeated.
    rng = random.Random(args.seed + 1)
    candidates = [
        p for p in corpus.paths if p.relative_to(corpus.root).as_posix() != corpus.fact_file
    ]
    for n in range(args.repeat):
        target = rng.choice(candidates)
        with target.open("a", encoding="utf-8") as handle:
            handle.write(
                f"\n\nAppended note {n}: the quarterly review moved the inspection window to "
                f"week {rng.randint(1, 52)} and recorded {rng.randint(3, 90)} open actions.\n"
            )
        seconds, report = _sync(base, main_db, corpus.root)
        figures.incremental.append(seconds)
        figures.incremental_indexed.append(report.indexed)

        seconds, report = _sync(base, main_db, corpus.root)
        figures.no_change.append(seconds)

        run_id = f"bench-{n:02d}"
        seconds, result = timed(partial(run_pipeline, base, QUESTION, run_id))
        final_path = result.final_output_path
        final = final_path.read_text(encoding="utf-8") if final_path else ""
        found = FACT_ANSWER in final
        figures.answer.append(seconds)
        figures.answer_found.append(found)
        if result.run_log_path:
            run_log = json.loads(result.run_log_path.read_text(encoding="utf-8"))
            figures.answer_steps.append({s["name"]: s["seconds"] for s in run_log["steps"]})
        print(
            f"  repeat {n + 1}/{args.repeat}: incremental {figures.incremental[-1]:.3f} s, "
            f"no-change {figures.no_change[-1]:.3f} s, answer {seconds:.3f} s "
            f"({result.status}, '{FACT_ANSWER}' {'found' if found else 'MISSING'})",
            flush=True,
        )
        if n == 0 and not found:
            print("--- final.md ---\n" + final + "\n---", flush=True)
    return figures


# ----------------------------------------------------------------------------- reporting


def machine_info() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        nproc = os.cpu_count() or 0
    return {
        "nproc": nproc,
        "cpu": cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": statistics.median(values),
        "p95": ordered[min(len(ordered) - 1, max(0, -(-95 * len(ordered) // 100) - 1))],
        "min": min(values),
        "max": max(values),
    }


def report(
    args: argparse.Namespace, corpus: Corpus, figures: Figures, generate_s: float
) -> tuple[bool, dict[str, Any]]:
    machine = machine_info()
    rows: list[tuple[str, list[float], float | None, str]] = [
        ("full index (from scratch)", figures.full, TARGET_FULL_S, "median"),
        ("incremental sync (1 file)", figures.incremental, TARGET_INCREMENTAL_S, "median"),
        ("no-change sync", figures.no_change, None, "median"),
        ("answer (run_pipeline)", figures.answer, TARGET_ANSWER_S, "median"),
        ("answer, 95th percentile", figures.answer, TARGET_ANSWER_P95_S, "p95"),
    ]
    found = sum(figures.answer_found)
    all_pass = found == len(figures.answer_found)
    lines = [
        "",
        f"Machine: nproc {machine['nproc']}, Python {machine['python']}, "
        f"SQLite {machine['sqlite']}, {machine['platform']}",
        f"CPU:     {machine['cpu'] or 'unknown'}",
        f"Corpus:  {corpus.files} files, {corpus.bytes / MB:.2f} MB ({corpus.bytes:,} bytes), "
        f"{figures.sections:,} sections, index {figures.index_bytes / MB:.1f} MB, "
        f"generated in {generate_s:.1f} s (seed {args.seed})",
        f"Question: {QUESTION!r}  (fact in {corpus.fact_file})",
        "",
        f"{'measure':<28}{'runs':>5}{'value':>11}{'min':>10}{'max':>10}   {'target':<10}result",
        "-" * 83,
    ]
    table: dict[str, Any] = {}
    for name, values, target, statistic in rows:
        s = _stats(values)
        if target is None:
            verdict, target_text = "-", "-"
        else:
            ok = s[statistic] < target
            all_pass = all_pass and ok
            verdict, target_text = ("PASS" if ok else "FAIL"), f"< {target:g} s"
        lines.append(
            f"{name:<28}{len(values):>5}{s[statistic]:>9.3f} s{s['min']:>8.3f} s"
            f"{s['max']:>8.3f} s   {target_text:<10}{verdict}"
        )
        table[name] = {**s, "runs": values, "target_s": target, "result": verdict}
    lines.append(
        f"{'answer contains ' + repr(FACT_ANSWER):<28}{len(figures.answer_found):>5}"
        f"{f'{found}/{len(figures.answer_found)}':>11}{'':>20}   {'all':<10}"
        f"{'PASS' if found == len(figures.answer_found) else 'FAIL'}"
    )
    step_names = list(dict.fromkeys(k for steps in figures.answer_steps for k in steps))
    breakdown = {
        name: statistics.median(steps.get(name, 0.0) for steps in figures.answer_steps)
        for name in step_names
    }
    lines.append("")
    lines.append(
        "answer stages (median s): "
        + ", ".join(f"{name} {value:.3f}" for name, value in breakdown.items())
    )
    lines.append(f"overall: {'PASS' if all_pass else 'FAIL'}")
    print("\n".join(lines), flush=True)
    data = {
        "machine": machine,
        "corpus": {
            "files": corpus.files,
            "bytes": corpus.bytes,
            "sections": figures.sections,
            "index_bytes": figures.index_bytes,
            "seed": args.seed,
            "fact_file": corpus.fact_file,
            "generate_s": generate_s,
        },
        "question": QUESTION,
        "results": table,
        "answer_found": figures.answer_found,
        "answer_stages_median_s": breakdown,
        "incremental_files_indexed": figures.incremental_indexed,
        "pass": all_pass,
    }
    return all_pass, data


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=1000, help="number of markdown files")
    parser.add_argument("--mb", type=float, default=20.0, help="total corpus size in MB (10^6)")
    parser.add_argument("--seed", type=int, default=20240611, help="random seed")
    parser.add_argument("--repeat", type=int, default=20, help="runs of incremental/answer")
    parser.add_argument("--full-repeat", type=int, default=3, help="runs of the full index")
    parser.add_argument("--keep", type=Path, help="keep corpus, indexes and output in DIR")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.files < 1 or args.mb <= 0 or args.repeat < 1 or args.full_repeat < 1:
        parser.error("--files, --mb, --repeat and --full-repeat must be positive")
    if args.keep and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep}: the folder exists and is not empty")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The benchmark is offline whatever the shell says: no model, no APP_* overrides.
    for key in list(os.environ):
        if key.startswith("APP_") or key == "OPENAI_API_KEY":
            del os.environ[key]

    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        work = args.keep.resolve()
    else:
        work = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    try:
        print(f"Generating {args.files} files (~{args.mb:g} MB) in {work} ...", flush=True)
        generate_s, corpus = timed(
            lambda: generate_corpus(
                work / "corpus", files=args.files, megabytes=args.mb, seed=args.seed
            )
        )
        print(f"  {corpus.bytes / MB:.2f} MB in {generate_s:.1f} s", flush=True)
        figures = measure(args, work, corpus)
        ok, data = report(args, corpus, figures, generate_s)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            print(f"figures written to {args.json}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
