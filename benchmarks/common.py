"""Shared helpers for the benchmark scripts: data sets, timing, peak memory of a child process."""
from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("HYPOMAG_BENCH_DATA", ROOT / "benchmarks" / "data"))
ROWS_PER_PATIENT = 20.3          # what `hypomag generate` writes on average (skewed: about 40)
SIZES = {"1M": 1_000_000, "5M": 5_000_000, "10M": 10_000_000, "100M": 100_000_000}


def dataset(label: str, fmt: str = "parquet", skewed: bool = False) -> Path:
    """Generate (once) about SIZES[label] lab rows with `hypomag generate`; returns the folder."""
    rows = SIZES[label]
    folder = DATA / f"{label}-{fmt}{'-skewed' if skewed else ''}"
    if not (folder / f"labs.{fmt}").is_file():
        patients = int(rows / (ROWS_PER_PATIENT * (1.96 if skewed else 1)))
        cmd = [sys.executable, "-m", "pipelines.cli", "generate", "--patients", str(patients), "--seed", "7",
               "--out", str(folder), "--format", fmt] + (["--skewed"] if skewed else [])
        seconds, peak = timed(cmd)
        print(f"generate {label} {fmt}{' skewed' if skewed else ''}: {seconds:.1f} s, peak RSS {peak / 1e6:.0f} MB",
              flush=True)
    return folder


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, int]:
    """Run a command; return (wall seconds, peak RSS of the largest child so far, bytes)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def python_snippet(code: str) -> tuple[float, int, str]:
    """Run Python code in a fresh process (same conditions as a run); returns (s, peak RSS, stdout)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, proc.stdout


def floor_seconds(folder: Path, fmt: str) -> float:
    """DuckDB alone reading the labs file into a table (2 threads), in a fresh process."""
    reader = "read_parquet" if fmt == "parquet" else "read_csv"
    code = (
        "import duckdb, time, tempfile, os\n"
        "d = tempfile.mkdtemp()\n"
        "con = duckdb.connect(os.path.join(d, 'floor.duckdb'))\n"
        "con.execute('SET threads = 2')\n"
        "con.execute('SET enable_progress_bar = false')\n"
        "t = time.perf_counter()\n"
        f"con.execute(\"CREATE TABLE labs AS SELECT * FROM {reader}('{folder / f'labs.{fmt}'}')\")\n"
        "print(time.perf_counter() - t)\n"
        "con.close(); import shutil; shutil.rmtree(d)\n"
    )
    return float(python_snippet(code)[2].strip())


def hypomag_run(folder: Path, work: Path, extra: list[str] | None = None) -> dict:
    """`hypomag run` end to end in a fresh process; its wall time, exit code and step times."""
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pipelines.cli", "run", "--source", "generic", "--input", str(folder),
           "--out", str(work / "out"), "--db", str(work / "bench.duckdb"), *(extra or [])]
    seconds, _ = timed(cmd)
    manifest = work / "out" / "manifest.json"
    steps = json.loads(manifest.read_text())["step_seconds"] if manifest.is_file() else {}
    return {"seconds": seconds, "steps": steps}


def peak_rss_of(cmd: list[str], log: Path | None = None) -> tuple[float, int, int]:
    """Wall time, peak resident memory (the command and all its children) and exit code of one
    command, run from a fresh wrapper process; its output goes to `log` (default: discarded)."""
    target = str(log) if log else os.devnull
    code = (
        "import resource, subprocess, sys, time\n"
        f"t = time.perf_counter(); f = open({target!r}, 'w')\n"
        f"p = subprocess.run({cmd!r}, stdout=f, stderr=subprocess.STDOUT)\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, p.returncode)\n"
    )
    out = python_snippet(code)[2].split()
    return float(out[0]), int(out[1]), int(out[2])


def standing_server() -> tuple[subprocess.Popen, str]:
    """`prefect server start` on a free local port with a fresh PREFECT_HOME; returns it once healthy."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": tempfile.mkdtemp(prefix="prefect-home-"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return server, url
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the Prefect server did not start within 120 s")
