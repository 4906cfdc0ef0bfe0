"""Nightly operation: incremental, idempotent loads; corrections; atomic publishing; one run at a
time; history; and the `hypomag-nightly` deployment served against a real local Prefect server."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from builder import LAB_COLUMNS, MED_COLUMNS, digest, hypomag, lab, med, write_csv
from pipelines.publish import RunLock, history_flags, write_index

T = "2024-03-01 08:00"


def ward_labs(prefix: str, n: int = 15, first_id: int = 1):
    rows = []
    for i in range(n):
        p = f"{prefix}{i}"
        rid = first_id + 2 * i
        rows += [lab(p, T, "MG", "1.5" if i % 3 == 0 else "2.0", "mg/dL", result_id=f"R{rid}", specimen_id=f"{p}s"),
                 lab(p, T, "K", "3.0", "mmol/L", result_id=f"R{rid + 1}", specimen_id=f"{p}s")]
    return rows


def nightly(inbox: Path, root: Path, db: Path, cwd: Path):
    return hypomag("run", "--incremental", "--source", "generic", "--input", str(inbox), "--out", str(root),
                   "--db", str(db), cwd=cwd)


@pytest.fixture()
def inbox(tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    write_csv(folder / "labs-2024-03-01.csv", LAB_COLUMNS, ward_labs("a"))
    write_csv(folder / "medications-2024-03-01.csv", MED_COLUMNS, [med("a1", T, "Magnesium Sulfate")])
    return folder


@pytest.mark.slow
def test_rerun_with_the_same_files_changes_nothing(tmp_path, inbox):
    root, db = tmp_path / "reports", tmp_path / "nightly.duckdb"
    first = nightly(inbox, root, db, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    latest = root / "latest"
    assert latest.is_symlink() and (latest / "report.html").is_file() and (root / "index.html").is_file()
    results_before = (latest / "results.json").read_text()
    second = nightly(inbox, root, db, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert (latest / "results.json").read_text() == results_before
    manifest = json.loads((latest / "manifest.json").read_text())
    assert [i["loaded_in_this_run"] for i in manifest["inputs"]] == [False, False]
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw_labs").fetchone()[0] == 30
        assert con.execute("SELECT count(*) FROM loaded_files").fetchone()[0] == 2


@pytest.mark.slow
def test_new_extract_adds_rows_and_a_corrected_result_replaces_the_old(tmp_path, inbox):
    root, db = tmp_path / "reports", tmp_path / "nightly.duckdb"
    assert nightly(inbox, root, db, tmp_path).returncode == 0
    before = json.loads((root / "latest" / "results.json").read_text())["counts"]
    # Next night: R3 (a1's magnesium, 2.0 mg/dL) corrected to 1.4 mg/dL, plus 15 new patients.
    correction = [lab("a1", T, "MG", "1.4", "mg/dL", result_id="R3", specimen_id="a1s")]
    write_csv(inbox / "labs-2024-03-02.csv", LAB_COLUMNS, correction + ward_labs("b", first_id=101))
    proc = nightly(inbox, root, db, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = json.loads((root / "latest" / "results.json").read_text())["counts"]
    assert after["lab_rows_read"] == before["lab_rows_read"] + 31
    assert after["mg_results"] == before["mg_results"] + 15            # the corrected one replaces, not adds
    with duckdb.connect(str(db), read_only=True) as con:               # small counts are withheld from results
        hypomg = con.execute("SELECT count(*) FROM int_lab_flags WHERE is_hypomagnesemia").fetchone()[0]
    assert hypomg == 5 + 5 + 1                                          # 5 + 5 new low, 1 corrected to low
    accounting = json.loads((root / "latest" / "restricted" / "accounting.json").read_text())
    first_file = next(i for i in accounting["inputs"] if i["path"].endswith("labs-2024-03-01.csv"))
    assert (first_file["rows_read"], first_file["rows_loaded"], first_file["rows_superseded"]) == (30, 29, 1)
    assert accounting["corrections"] == 1
    with duckdb.connect() as con:
        rows = con.execute("SELECT result_id, old_value, new_value, new_status FROM "
                           f"'{root / 'latest' / 'restricted' / 'corrections.parquet'}'").fetchall()
    assert rows == [("R3", "2.0", "1.4", "loaded")]


@pytest.mark.slow
def test_a_second_run_on_the_same_database_fails_fast(tmp_path, inbox):
    root, db = tmp_path / "reports", tmp_path / "nightly.duckdb"
    lock = RunLock(db)
    lock.acquire()
    building = Path(str(db) + ".building")
    building.write_bytes(b"the running run's half-built database")
    try:
        proc = nightly(inbox, root, db, tmp_path)
    finally:
        lock.release()
    assert proc.returncode == 2
    assert "another hypomag run" in " ".join(proc.stderr.split()) and f"pid {os.getpid()}" in proc.stderr
    assert not root.exists() and not db.exists()
    assert building.read_bytes() == b"the running run's half-built database"  # the other run's work is untouched


@pytest.mark.slow
def test_a_killed_run_loses_nothing_and_the_next_run_succeeds(tmp_path):
    from pipelines.generate import generate

    small, big = tmp_path / "small", tmp_path / "big"
    generate(150, 1, small)
    generate(6000, 2, big)
    out, db = tmp_path / "out", tmp_path / "hm.duckdb"
    first = hypomag("run", "--source", "generic", "--input", str(small), "--out", str(out), "--db", str(db), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = {p: digest(p) for p in (out / "results.json", out / "report.html", out / "manifest.json", db)}
    victim = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", "--source", "generic", "--input", str(big),
                               "--out", str(out), "--db", str(db)], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    runs = tmp_path / "hm.duckdb.hypomag" / "runs"  # each run builds in its own folder of the store
    deadline = time.time() + 180
    while len(list(runs.iterdir())) < 2 and time.time() < deadline and victim.poll() is None:
        time.sleep(0.1)
    assert len(list(runs.iterdir())) == 2, "the run never started building"
    time.sleep(1.0)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    assert {p: digest(p) for p in before} == before
    with duckdb.connect(str(db), read_only=True) as con:  # the published database still opens and reads
        assert con.execute("SELECT count(*) FROM int_lab_results").fetchone()[0] > 0
    again = hypomag("run", "--source", "generic", "--input", str(small), "--out", str(out), "--db", str(db), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(list(runs.iterdir())) == 2  # the published run and the one before it; the killed one is gone


def fake_results(prevalence: float, low: float, high: float) -> dict:
    cooc = [{"abnormality": a, "direction": "hypomg_given_abnormality", "window": "24h", "level": "result",
             "prevalence": prevalence, "ci_low": low, "ci_high": high}
            for a in ("hypokalemia", "hyponatremia", "hypophosphatemia", "hypocalcemia")]
    return {"cooccurrence": cooc, "audit": {"overall": {"rate": 0.5, "ci_low": 0.4, "ci_high": 0.6}},
            "counts": {"lab_rows_read": 100, "mg_results": 10}}


def test_history_flags_a_headline_rate_outside_the_previous_interval(tmp_path):
    previous = fake_results(0.30, 0.25, 0.35)
    assert history_flags(None, previous) == []
    assert history_flags(previous, fake_results(0.35, 0.3, 0.4)) == []  # on the edge: inside
    moved = history_flags(previous, fake_results(0.36, 0.3, 0.42))
    assert [f["measure"] for f in moved] == [f"low Mg among {a}" for a in
                                             ("hypokalemia", "hyponatremia", "hypophosphatemia", "hypocalcemia")]
    root = tmp_path / "reports"
    for name, res in (("2026-11-24", previous), ("2026-11-25", {**fake_results(0.36, 0.3, 0.42), "history_flags": moved})):
        (root / name).mkdir(parents=True)
        (root / name / "results.json").write_text(json.dumps(res))
    write_index(root)
    page = (root / "index.html").read_text()
    assert "2026-11-24/report.html" in page and "2026-11-25/report.html" in page
    assert "outside 25.0&ndash;35.0%" in page and "history-trend" in page


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, seconds: float = 120) -> None:
    import urllib.request

    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("prefect server did not become healthy")


@pytest.mark.slow
def test_nightly_deployment_on_a_real_prefect_server(tmp_path, inbox):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_RUNNER_POLL_FREQUENCY": "1",
           "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "1"}
    config = tmp_path / "nightly.toml"
    config.write_text('[schedule]\ncron = "30 3 * * *"\ntimezone = "Europe/London"\n')
    root, db = tmp_path / "reports", tmp_path / "nightly.duckdb"
    prefect_bin = str(Path(sys.executable).with_name("prefect"))
    server = subprocess.Popen([prefect_bin, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    served = None
    try:
        wait_healthy(api)
        served = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "--input", str(inbox), "--db", str(db),
                                   "--out", str(root), "--config", str(config)], cwd=tmp_path, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        script = (
            "import asyncio, json, time\n"
            "from prefect import get_client\n"
            "from prefect.deployments import run_deployment\n"
            "async def schedule():\n"
            "    async with get_client() as c:\n"
            "        for _ in range(120):\n"
            "            try:\n"
            "                d = await c.read_deployment_by_name('hypomag-pipeline/hypomag-nightly')\n"
            "                return [[s.schedule.cron, s.schedule.timezone] for s in d.schedules]\n"
            "            except Exception:\n"
            "                await asyncio.sleep(1)\n"
            "sched = asyncio.run(schedule())\n"
            "run = run_deployment('hypomag-pipeline/hypomag-nightly', timeout=400)\n"
            "print(json.dumps({'schedules': sched, 'state': run.state.type.value}))\n"
        )
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600,
                              cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outcome = json.loads(proc.stdout.strip().splitlines()[-1])
        assert outcome["schedules"] == [["30 3 * * *", "Europe/London"]]
        assert outcome["state"] == "COMPLETED"
        assert (root / "latest" / "report.html").is_file() and (root / "index.html").is_file()
        results = json.loads((root / "latest" / "results.json").read_text())
        assert results["counts"]["lab_rows_read"] == 30
    finally:
        for proc in (served, server):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
