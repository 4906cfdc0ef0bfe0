"""A night's cost against a full run, with a history of generated lab rows.

    .venv/bin/python benchmarks/nightly.py 10M [--night-rows 50000] [--server]

In one inbox: the history (the generated data set of that size, as labs-0000 / medications-0000,
linked, not copied). Then, each in a fresh process (`hypomag run --incremental` unless said):
(a) the first run: every model built from the history (the full run);
(b) a night: a new extract of about --night-rows lab rows (generated patients P1.., so new results of
    patients the history already has) and its medications: only their patients are recomputed;
(c) a full run on the history and the night together, in a fresh database: what the night's database
    is compared with (its size, and every figure of results.json);
(d) a plain `hypomag run` on the history (no inbox: no screening of each file before it loads).
Prints each run's time and steps, the night's time as a share of the full run, and the database's
size after each (the live database and its write-ahead log). With --server every run talks to a standing
Prefect server (`prefect server start`, PREFECT_API_URL), as the served nightly deployment does, instead
of booting Prefect's temporary API.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from common import DATA, ROOT, dataset, peak_rss_of, standing_server

RUN_KEYS = {"history_flags"}


def database_bytes(db: Path) -> int:
    live = db.resolve()
    return sum(p.stat().st_size for p in (live, live.with_name(live.name + ".wal")) if p.exists())


def incremental_run(inbox: Path, work: Path, log: Path) -> dict:
    cmd = [sys.executable, "-m", "pipelines.cli", "run", "--incremental", "--source", "generic", "--input",
           str(inbox), "--out", str(work / "dated"), "--db", str(work / "nightly.duckdb")]
    seconds, peak, code = peak_rss_of(cmd, log)
    if code not in (0, 3):
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
        raise SystemExit(f"run failed (exit {code}; see {log}): {tail[-600:]}")
    manifest = json.loads((work / "dated" / "latest" / "manifest.json").read_text())
    summary = next((line.split("incremental: ", 1)[1] for line in log.read_text().splitlines()
                    if "hypomag - incremental: " in line and "affected" not in line), "")
    return {"seconds": seconds, "peak": peak, "steps": manifest["step_seconds"], "summary": summary,
            "bytes": database_bytes(work / "nightly.duckdb"),
            "results": {k: v for k, v in json.loads((work / "dated" / "latest" / "results.json").read_text()).items()
                        if k not in RUN_KEYS}}


def night_extract(folder: Path, rows: int) -> Path:
    """About `rows` lab rows of generated patients P1.. (new results for patients the history has)."""
    patients = max(1, round(rows / 20.3))
    shutil.rmtree(folder, ignore_errors=True)
    import subprocess

    subprocess.run([sys.executable, "-m", "pipelines.cli", "generate", "--patients", str(patients), "--seed", "20261201",
                    "--out", str(folder), "--format", "csv"], cwd=ROOT, check=True, capture_output=True)
    return folder


def line(name: str, r: dict) -> str:
    steps = " ".join(f"{k}={v:.1f}" for k, v in r["steps"].items())
    return (f"{name:<22} {r['seconds']:>7.1f} s  db {r['bytes'] / 1e6:>8.1f} MB  peak {r['peak'] / 1e9:.2f} GB  "
            f"{r['summary']}  [{steps}]")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("size", nargs="?", default="10M")
    parser.add_argument("--night-rows", type=int, default=50_000)
    parser.add_argument("--server", action="store_true", help="run against a standing Prefect server")
    args = parser.parse_args()
    server = None
    if args.server:
        server, os.environ["PREFECT_API_URL"] = standing_server()
        print(f"against a standing Prefect server at {os.environ['PREFECT_API_URL']}", flush=True)
    history = dataset(args.size, "parquet")
    work = Path(tempfile.mkdtemp(prefix=f"hypomag-nightly-{args.size}-", dir=DATA))
    try:
        inbox = work / "inbox"
        inbox.mkdir()
        for stem in ("labs", "medications"):
            (inbox / f"{stem}-0000.parquet").symlink_to(history / f"{stem}.parquet")
        full = incremental_run(inbox, work / "a", DATA / f"nightly-{args.size}-full.log")
        print(line(f"full ({args.size} history)", full), flush=True)
        night = night_extract(work / "night", args.night_rows)
        lab_rows = sum(1 for _ in open(night / "labs.csv")) - 1
        shutil.copy(night / "labs.csv", inbox / "labs-0001.csv")
        shutil.copy(night / "medications.csv", inbox / "medications-0001.csv")
        nightly = incremental_run(inbox, work / "a", DATA / f"nightly-{args.size}-night.log")
        print(line(f"night ({lab_rows:,} rows)", nightly), flush=True)
        both = incremental_run(inbox, work / "b", DATA / f"nightly-{args.size}-both.log")
        print(line("full (history + night)", both), flush=True)
        (work / "plain").mkdir()
        plain, _, code = peak_rss_of([sys.executable, "-m", "pipelines.cli", "run", "--source", "generic", "--input",
                                      str(history), "--out", str(work / "plain" / "out"), "--db",
                                      str(work / "plain" / "plain.duckdb")], DATA / f"nightly-{args.size}-plain.log")
        print(f"plain `hypomag run` on the history {plain:>7.1f} s (exit {code}): the first inbox run screens each "
              "file in a scratch database before it loads it, a plain run does not", flush=True)
        print(f"night / full run: {nightly['seconds'] / full['seconds']:.1%} "
              f"(target <= 10%); night / full run on the same files: {nightly['seconds'] / both['seconds']:.1%}; "
              f"night / plain run on the history: {nightly['seconds'] / plain:.1%}")
        print(f"database: after the night {nightly['bytes'] / 1e6:.1f} MB, grown by "
              f"{(nightly['bytes'] - full['bytes']) / 1e6:.1f} MB; built whole on the same files "
              f"{both['bytes'] / 1e6:.1f} MB")
        same = nightly["results"] == both["results"]
        print(f"results.json of the night {'equals' if same else 'DIFFERS FROM'} the full run on the same files")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
