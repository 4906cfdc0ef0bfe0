"""End to end vs the input-reading floor, at 1M, 10M and 100M generated lab rows.

    .venv/bin/python benchmarks/end_to_end.py 1M 10M [100M] [--format csv|parquet]

For each size: (a) the floor, DuckDB alone reading the labs file into a table (2 threads, fresh
process); (b) `hypomag run` end to end (a fresh process: Prefect flow, GX validation, every
model, results and report); (c) each step's time (manifest.json step_seconds; `other` is the rest: imports, Prefect,
swaps); (d) peak resident
memory of the whole run (the process and its children). Prints (b)/(a).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from common import DATA, ROOT, dataset, floor_seconds, peak_rss_of


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sizes", nargs="*", default=["1M", "10M"])
    parser.add_argument("--format", default="parquet", choices=["csv", "parquet"])
    args = parser.parse_args()
    print(f"{'rows':>5} {'fmt':>7} {'floor s':>8} {'run s':>7} {'ratio':>6} {'peak RSS':>9}  steps")
    for label in args.sizes:
        folder = dataset(label, args.format)
        floor = floor_seconds(folder, args.format)
        work = Path(tempfile.mkdtemp(prefix=f"hypomag-bench-{label}-", dir=DATA))
        cmd = [sys.executable, "-m", "pipelines.cli", "run", "--source", "generic", "--input", str(folder),
               "--out", str(work / "out"), "--db", str(work / "bench.duckdb")]
        log = DATA / f"end_to_end-{label}-{args.format}.log"
        seconds, peak, code = peak_rss_of(cmd, log)
        manifest = work / "out" / "manifest.json"
        steps = json.loads(manifest.read_text())["step_seconds"] if code == 0 and manifest.is_file() else {"failed": 1}
        if "failed" in steps:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
            step_text = f"FAILED (exit {code}; see {log}): {tail[-600:]}"
        else:  # other: imports, Prefect's API and task runs, database swaps: the fixed cost
            steps["other"] = seconds - sum(steps.values())
            step_text = " ".join(f"{k}={v:.1f}" for k, v in steps.items())
        print(f"{label:>5} {args.format:>7} {floor:>8.2f} {seconds:>7.1f} {seconds / floor:>6.1f} "
              f"{peak / 1e9:>7.2f}GB  {step_text}", flush=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
