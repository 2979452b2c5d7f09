"""Start-up with many runs on disk: time from starting the server to its first 200 /readyz.

Run by hand (not part of pytest)::

    .venv/bin/python -m benchmarks.bench_startup                       # 10,000 runs
    .venv/bin/python -m benchmarks.bench_startup --runs 100000 --rounds 3

``--runs`` finished runs are written into a temporary output/ (as ``bench_api`` writes
them: state, final.md and context bundle, as the store leaves them). Then, ``--rounds``
times, alternating so that the machine's noise falls on all three alike:

- **bare**: a bare FastAPI app (``benchmarks/bare_app.py``) under the same uvicorn command:
  the floor that the interpreter, FastAPI and uvicorn set on this machine;
- **cold**: the answer service with ``output/.runs-summary.json`` removed first, so that every
  run's folder is read and checked (the first start after an upgrade, or after the file was
  lost);
- **warm**: the answer service again, with the summary its last clean stop wrote.

Each server is ``sys.executable -m uvicorn <app> --workers 1``, polled every 10 ms until
ready (bounded), then stopped with SIGTERM. Targets (issue 17): warm < 1 s with 10,000
runs, < 3 s with 100,000. Medians are printed with each start and the ratio to bare.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_api import BARE_APP, SERVICE_APP, write_runs
from benchmarks.common import server_env, start_server, stop_server, wait_ready

SUMMARY = ".runs-summary.json"
TARGETS_S = {10_000: 1.0, 100_000: 3.0}


def start_once(app: str, output: Path, log: Path, path: str) -> float:
    server = start_server(app, server_env(output), log, workers=1)
    try:
        return wait_ready(server, path)
    finally:
        stop_server(server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10_000, help="finished runs in output/")
    parser.add_argument("--rounds", type=int, default=3, help="bare/cold/warm rounds")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 10 or not 1 <= args.runs <= 200_000:
        parser.error("--rounds 1..10, --runs 1..200000")
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        work = Path(tmp)
        output = work / "output"
        began = time.perf_counter()
        write_runs(output, args.runs, 0, 1000)
        print(f"{args.runs:,} runs written in {time.perf_counter() - began:.1f} s", flush=True)
        # A first start writes the summary: the warm starts of round 1 find it.
        start_once(SERVICE_APP, output, work / "first.log", "/readyz")
        times: dict[str, list[float]] = {"bare": [], "cold": [], "warm": []}
        for round_no in range(1, args.rounds + 1):
            times["bare"].append(start_once(BARE_APP, work / "bare", work / "bare.log", "/bare"))
            (output / SUMMARY).unlink(missing_ok=True)
            times["cold"].append(start_once(SERVICE_APP, output, work / "cold.log", "/readyz"))
            if not (output / SUMMARY).exists():  # a version without it: warm = cold
                print("  (the cold start's stop wrote no summary)", flush=True)
            times["warm"].append(start_once(SERVICE_APP, output, work / "warm.log", "/readyz"))
            print(
                f"  round {round_no}: "
                + "   ".join(f"{kind} {values[-1]:.3f} s" for kind, values in times.items()),
                flush=True,
            )
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    target = TARGETS_S.get(args.runs)
    print(f"\nstart-up to the first 200, {args.runs:,} runs, median of {args.rounds} rounds:")
    for kind, value in medians.items():
        print(f"  {kind:<5} {value:.3f} s   x{value / medians['bare']:.2f} of bare")
    if target is None:
        return 0
    verdict = "PASS" if medians["warm"] < target else "FAIL"
    print(f"  target: warm < {target:g} s  {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
