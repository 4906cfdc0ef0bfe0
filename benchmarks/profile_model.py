"""Profile one SQL model on a database a run left behind: DuckDB's EXPLAIN ANALYZE, per operator.

    .venv/bin/hypomag run --source generic --input benchmarks/data/10M-parquet --db /tmp/p/10M.duckdb
    .venv/bin/python benchmarks/profile_model.py /tmp/p/10M.duckdb intermediate/int_index_windows \
        [--memory-limit 400MB] [--threads 2]

Runs the model's SELECT (the same text `build_models` uses) under EXPLAIN ANALYZE with the run's
connection settings (memory limit, threads; overridable, so that a 10M database
with a tenth of the memory limit shows where a 100M run would spill), on a copy of the database
so the run's own file is never changed. Prints the wall time, the peak size of the temporary
directory, and the slowest operators with their rows (`--tree`: DuckDB's whole plan instead).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT


def spill_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def operators(node: dict) -> list[dict]:
    """Every operator of a JSON profile, flat: name, own time, rows out, a short detail."""
    found = []
    for child in node.get("children", []) + node.get("operator", []):
        extra = child.get("extra_info", {})
        detail = next((extra[k] for k in ("Partitions", "Groups", "Conditions", "Table", "CTE Name", "Join Type")
                       if k in extra), "")
        found.append({"name": child.get("name", "?"), "timing": child.get("timing", 0.0),
                      "rows": child.get("operator_cardinality", child.get("intermediate_rows", 0)),
                      "detail": " ".join(detail) if isinstance(detail, list) else str(detail)})
        found.extend(operators(child))
    return found


def main() -> None:
    import duckdb

    from pipelines.config import Config
    from pipelines.db import connect
    from pipelines.models import model_sql

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", type=Path, help="a DuckDB file built by `hypomag run --db`")
    parser.add_argument("model", help="e.g. intermediate/int_index_windows or marts/mart_cooccurrence")
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory_limit (default: the run's)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--top", type=int, default=15, help="how many of the slowest operators to list")
    parser.add_argument("--tree", action="store_true", help="print DuckDB's whole plan tree instead")
    args = parser.parse_args()
    if not args.db.is_file():
        sys.exit(f"{args.db}: no such database (build one with `hypomag run --db`)")
    work = Path(tempfile.mkdtemp(prefix="hypomag-profile-"))
    try:
        copy = work / "profile.duckdb"
        shutil.copyfile(args.db, copy)
        con = connect(copy, Config())
        if args.memory_limit:
            con.execute(f"SET memory_limit = '{args.memory_limit}'")
        if args.threads:
            con.execute(f"SET threads = {args.threads}")
        con.execute("SET preserve_insertion_order = false")  # as build_models
        spill = work / "spill"  # its own, so another run's temporary files are not counted
        spill.mkdir()
        con.execute("SET temp_directory = ?", [str(spill)])
        peak = [0]
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.5):
                peak[0] = max(peak[0], spill_bytes(spill))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        started = time.perf_counter()
        failure = None
        explain = "EXPLAIN ANALYZE" if args.tree else "EXPLAIN (ANALYZE, FORMAT JSON)"
        try:
            plan = con.execute(f"{explain} {model_sql(args.model)}").fetchall()[0][1]
        except duckdb.Error as exc:  # e.g. out of memory: the figure that matters, not a traceback
            plan, failure = None, str(exc).splitlines()[0]
        seconds = time.perf_counter() - started
        done.set()
        watcher.join()
        print(f"{args.model}: {seconds:.1f} s (memory_limit {limit}, temporary files peak "
              f"{peak[0] / 1e9:.2f} GB)")
        if failure:
            print(f"FAILED: {failure}")
        elif args.tree:
            print(plan)
        else:
            print(f"{'operator':<22} {'seconds':>8} {'rows':>13}  detail")
            for op in sorted(operators(json.loads(plan)), key=lambda o: -o["timing"])[:args.top]:
                print(f"{op['name']:<22} {op['timing']:>8.2f} {op['rows']:>13,}  {op['detail'][:90]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
