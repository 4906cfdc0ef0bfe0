"""DuckDB vs Spark local[2] vs a one-worker Spark standalone cluster, at 1M and 5M generated lab rows.

    .venv/bin/python benchmarks/spark_engines.py 1M 5M            # the lead's figures (a quiet machine)
    .venv/bin/python benchmarks/spark_engines.py --input data_samples   # a quick check that it works

Each run is `hypomag run` in a fresh process (the same command a user runs), so Spark's start-up (the
JVM, the session) is part of its time; the standalone cluster (a master and one worker of 2 cores and
2 GB, pipelines/spark/standalone.py) is started once before and stopped after, outside the times.
Prints wall seconds, the model steps' seconds (manifest.json: normalise + flag + analyse) and each
Spark time as a ratio of DuckDB's. On one 2-core machine Spark is slower: the figures show its fixed
cost per model and how each engine scales from 1M to 5M.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from common import DATA, ROOT, dataset, timed

MODEL_STEPS = ("normalise", "flag", "analyse")


def run_once(folder: Path, engine: str, config: str = "") -> tuple[float, float]:
    """(wall seconds, model steps' seconds) of one `hypomag run --engine ENGINE` on `folder`."""
    DATA.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"hypomag-spark-bench-{engine}-", dir=DATA))
    try:
        cmd = [sys.executable, "-m", "pipelines.cli", "run", "--source", "generic", "--input", str(folder),
               "--out", str(work / "out"), "--db", str(work / "bench.duckdb"), "--engine", engine]
        if config:
            (work / "hypomag.toml").write_text(config, encoding="utf-8")
            cmd += ["--config", str(work / "hypomag.toml")]
        seconds, _peak = timed(cmd)
        steps = json.loads((work / "out" / "manifest.json").read_text())["step_seconds"]
        return seconds, sum(steps.get(s, 0.0) for s in MODEL_STEPS)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def cluster_config(master: str) -> str:
    from pipelines.spark.standalone import driver_settings

    settings = {**driver_settings(), "spark.cores.max": "2", "spark.executor.memory": "2g"}
    return (f'[engine]\nspark_master = "{master}"\n[engine.spark_settings]\n'
            + "".join(f'"{k}" = "{v}"\n' for k, v in settings.items()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sizes", nargs="*", default=["1M", "5M"])
    parser.add_argument("--input", type=Path, help="benchmark this generic input folder instead of generated sizes")
    args = parser.parse_args()
    from pipelines.spark import standalone

    cluster = standalone.start(Path(tempfile.mkdtemp(prefix="hypomag-spark-cluster-")), cores=2, memory="2g")
    try:
        inputs = [(args.input.name, args.input.resolve())] if args.input else [(s, dataset(s, "parquet")) for s in args.sizes]
        print(f"{'input':>12} {'engine':>10} {'run s':>7} {'models s':>9} {'x duckdb':>9}", flush=True)
        for label, folder in inputs:
            duck_run, duck_models = run_once(folder, "duckdb")
            print(f"{label:>12} {'duckdb':>10} {duck_run:>7.1f} {duck_models:>9.1f} {1.0:>9.1f}", flush=True)
            for name, config in (("local[2]", ""), ("standalone", cluster_config(cluster.master))):
                wall, model_s = run_once(folder, "spark", config)
                print(f"{label:>12} {name:>10} {wall:>7.1f} {model_s:>9.1f} {wall / duck_run:>9.1f}", flush=True)
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
