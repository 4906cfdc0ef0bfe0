"""Nightly operation: incremental, idempotent loads; corrections; atomic publishing; one run at a
time; history; and, on one real local Prefect server for the module, the `hypomag-nightly`
deployment served (a user error in one line), a poisoned inbox over several nights (rejected
files set aside, exit 3, Completed with a message, failed and same-day runs on the history page,
a stale feed) with its events and artifacts read back, and the README's automation."""
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


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """One real `prefect server start` on a free local port for this module's tests (about 8 s)."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_RUNNER_POLL_FREQUENCY": "1",
           "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "1"}
    prefect_bin = str(Path(sys.executable).with_name("prefect"))
    server = subprocess.Popen([prefect_bin, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_healthy(api)
        yield env
    finally:
        stop(server)


def stop(proc) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def ask_server(env: dict, script: str) -> dict:
    """Run `script` (which prints one JSON line last) against the server; its JSON."""
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_nightly_deployment_on_a_real_prefect_server(tmp_path, inbox, prefect_server):
    env = prefect_server
    config = tmp_path / "nightly.toml"
    config.write_text('[schedule]\ncron = "30 3 * * *"\ntimezone = "Europe/London"\n')
    root, db = tmp_path / "reports", tmp_path / "nightly.duckdb"
    out_of_scope = tmp_path / "out-of-scope"  # data that fail a blocking check after the first run: a user error
    out_of_scope.mkdir()
    write_csv(out_of_scope / "labs-1.csv", LAB_COLUMNS, [lab(f"z{i}", T, "GLU", "90", "mg/dL") for i in range(30)])
    log = tmp_path / "serve.log"
    served = None
    try:
        with open(log, "wb") as sink:
            served = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "--input", str(inbox), "--db",
                                       str(db), "--out", str(root), "--config", str(config)], cwd=tmp_path, env=env,
                                      stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
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
            "bad = run_deployment('hypomag-pipeline/hypomag-nightly', timeout=400,\n"
            f"                     parameters={{'input_dir': '{out_of_scope}'}})\n"
            "print(json.dumps({'schedules': sched, 'state': run.state.type.value, 'bad': bad.state.type.value,\n"
            "                  'message': bad.state.message}))\n"
        )
        outcome = ask_server(env, script)
        assert outcome["schedules"] == [["30 3 * * *", "Europe/London"]]
        assert outcome["state"] == "COMPLETED"
        assert outcome["bad"] == "FAILED" and "labs_out_of_scope_share_jump" in outcome["message"]
        served_log = log.read_text(errors="replace")
        assert "labs_out_of_scope_share_jump" in served_log and "Traceback" not in served_log  # one line, no traceback
        assert (root / "latest" / "report.html").is_file() and (root / "index.html").is_file()
        results = json.loads((root / "latest" / "results.json").read_text())
        assert results["counts"]["lab_rows_read"] == 30
    finally:
        stop(served)


def quarantined_labs(prefix: str, n: int, bad_rows: set[int], first_id: int) -> list[dict]:
    """n MG rows (result ids from first_id); the data rows numbered in bad_rows have an unreadable value."""
    return [lab(f"{prefix}{i}", T, "MG", "n/a" if i + 1 in bad_rows else "2.0", "mg/dL", result_id=f"R{first_id + i}")
            for i in range(n)]


def run_ids(db: Path) -> set[str]:
    """The ids of the runs made on this database: its store's run folders and the failed records."""
    ids = {p.name for p in (db.parent / (db.name + ".hypomag") / "runs").iterdir()}
    failed = db.parent / "reports" / "failed"
    return ids | {json.loads((f / "failure.json").read_text())["run_id"] for f in failed.iterdir() if f.is_dir()}


READ_BACK = """
import json
from prefect import get_client
from prefect.client.schemas.sorting import FlowRunSort
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
from prefect.types._datetime import now
from datetime import timedelta
import time
with get_client(sync_client=True) as c:
    window = EventOccurredFilter(since=now("UTC") - timedelta(hours=1))
    for _ in range(60):  # the server persists events in batches
        page = c.read_events(EventFilter(event=EventNameFilter(prefix=["hypomag."]), occurred=window), limit=50)
        names = [e.event for e in page.events]
        if (names.count("hypomag.run.published") >= 4 and "hypomag.feed.stale" in names
                and "hypomag.run.failed" in names):
            break
        time.sleep(1)
    events = [{"event": e.event, "resource": e.resource.id, "payload": e.payload} for e in page.events]
    runs = c.read_flow_runs(sort=FlowRunSort.START_TIME_ASC)
    states = [[r.state.type.value, r.state.name, r.state.message] for r in runs]
    artifacts = [[a.key, a.type, a.data] for a in c.read_artifacts()]
print(json.dumps({"events": events, "states": states, "artifacts": artifacts}, default=str))
"""


@pytest.mark.slow
def test_a_poisoned_inbox_over_three_nights_on_a_real_prefect_server(tmp_path, prefect_server):
    """Night 1: a good file and one whose `value` column was renamed; night 2: the renamed one still
    there, plus one 12% unreadable and a good one; night 3: the renamed one corrected. Each night
    publishes the good files, exits 3 while a file is rejected, and ends Completed with the reason;
    then a data-level failure (exit 1, listed on the history page) and a night without new data
    (a stale feed). The events and artifacts are read back from the server."""
    env = prefect_server
    box, root, db = tmp_path / "inbox", tmp_path / "reports", tmp_path / "nightly.duckdb"
    box.mkdir()
    config = tmp_path / "nightly.toml"
    config.write_text("[schedule]\nmax_hours_without_data = 0.0005\n")  # 1.8 s: the fifth night is stale

    def night():
        return subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--incremental", "--source", "generic",
                               "--input", str(box), "--out", str(root), "--db", str(db), "--config", str(config)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    write_csv(box / "labs-1.csv", LAB_COLUMNS, ward_labs("a"))
    write_csv(box / "medications-1.csv", MED_COLUMNS, [med("a1", T, "Magnesium Sulfate")])
    renamed = box / "labs-2.csv"
    renamed.write_text("patient_id,collected_at,analyte,result,unit\nb1,2024-03-01 08:00,MG,1.5,mg/dL\n")
    first = night()
    assert first.returncode == 3, first.stderr[-3000:]
    assert "labs-2.csv: required_column_missing" in " ".join(first.stdout.split())
    reason = (box / "rejected" / "labs-2.csv.reason.txt").read_text()
    assert "check: required_column_missing" in reason and "'value'" in reason and not renamed.exists()

    renamed.write_bytes((box / "rejected" / "labs-2.csv").read_bytes())  # someone puts it back unchanged
    write_csv(box / "labs-3.csv", LAB_COLUMNS, quarantined_labs("c", 25, {4, 9, 20}, first_id=200))
    write_csv(box / "labs-4.csv", LAB_COLUMNS, ward_labs("d", first_id=300))
    second = night()
    assert second.returncode == 3, second.stderr[-3000:]
    assert "skipped labs-2.csv: the same content was rejected before" in " ".join(second.stderr.split())
    reason = (box / "rejected" / "labs-3.csv.reason.txt").read_text()
    assert "figure: 12.0% of 25 in-scope rows quarantined; limit 5%" in reason
    assert "example rows: row 4 (non_numeric_value); row 9 (non_numeric_value); row 20 (non_numeric_value)" in reason
    assert json.loads((root / "latest" / "results.json").read_text())["counts"]["lab_rows_read"] == 60

    renamed.write_text("patient_id,collected_at,analyte,value,unit\nb1,2024-03-01 08:00,MG,1.5,mg/dL\n")  # corrected
    third = night()
    assert third.returncode == 0, third.stderr[-3000:]
    assert json.loads((root / "latest" / "results.json").read_text())["counts"]["lab_rows_read"] == 61

    # a data-level failure after the files are accepted: 30 out-of-scope rows against none before
    write_csv(box / "labs-5.csv", LAB_COLUMNS, [lab(f"e{i}", T, "GLU", "90", "mg/dL") for i in range(30)])
    fourth = night()
    assert fourth.returncode == 1, fourth.stderr[-3000:]
    assert json.loads((root / "latest" / "results.json").read_text())["counts"]["lab_rows_read"] == 61
    (box / "labs-5.csv").unlink()
    time.sleep(2)
    fifth = night()
    assert fifth.returncode == 0, fifth.stderr[-3000:]
    assert "no new extract in the inbox" in fifth.stderr and "the feed is stale" in fifth.stderr

    # every run kept apart (same day, same minute), the failed one on the history page with its checks
    runs = sorted(p.name for p in root.iterdir() if p.name.startswith("20"))
    assert len(runs) == 4 and all(len(name) == len("2026-12-01T020000Z") for name in runs)
    failed = list((root / "failed").iterdir())
    assert len([f for f in failed if f.is_dir()]) == 1
    page = (root / "index.html").read_text()
    assert "labs_out_of_scope_share_jump" in page and "/validation.json" in page and "No new data since" in page
    assert "published; rejected: labs-3.csv: labs_quarantine_fraction" in page

    seen = ask_server(prefect_server, READ_BACK)
    states = seen["states"][-5:]
    assert [s[0] for s in states] == ["COMPLETED", "COMPLETED", "COMPLETED", "FAILED", "COMPLETED"]
    assert states[0][1] == "Completed" and states[0][2].startswith("published; some inputs rejected: ")
    assert "labs-2.csv: required_column_missing" in states[0][2]
    assert "labs-3.csv: labs_quarantine_fraction" in states[1][2]
    assert "labs_out_of_scope_share_jump" in states[3][2]
    events = [e for e in seen["events"] if e["payload"].get("run_id") in run_ids(db)]
    rejected = [e for e in events if e["event"] == "hypomag.file.rejected"]
    assert sorted((e["payload"]["path"].rsplit("/", 1)[-1], e["payload"]["check"]) for e in rejected) == [
        ("labs-2.csv", "required_column_missing"), ("labs-3.csv", "labs_quarantine_fraction")]
    assert all(e["resource"] == f"hypomag.file.{e['payload']['sha256']}" for e in rejected)
    assert sum(e["event"] == "hypomag.run.published" for e in events) == 4
    stale = next(e for e in events if e["event"] == "hypomag.feed.stale")
    assert stale["payload"]["stale"] is True and stale["payload"]["new_files"] == 0
    published = next(e for e in events if e["event"] == "hypomag.run.published")
    assert {"headline", "report", "files_rejected", "drift_flags"} <= set(published["payload"])
    assert "n/a" not in json.dumps(events)  # facts, not values
    summaries = [a for a in seen["artifacts"] if a[0] == "hypomag-run-summary"]
    assert summaries and any("labs-3.csv" in a[2] for a in summaries)


@pytest.mark.slow
def test_the_readme_automation_is_created_on_a_real_prefect_server(prefect_server):
    """The README's automation code, run as written, registers a reactive trigger on hypomag.file.rejected."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    code = readme.split("<!-- automation:begin -->")[1].split("<!-- automation:end -->")[0]
    code = code.split("```python\n")[1].split("```")[0]
    seen = ask_server(prefect_server, code + (
        "import json\nfrom prefect import get_client\n"
        "with get_client(sync_client=True) as c:\n"
        "    a = c.read_automations_by_name('hypomag rejected a file')[0]\n"
        "print(json.dumps({'expect': sorted(a.trigger.expect), 'posture': a.trigger.posture.value,\n"
        "                  'action': a.actions[0].type, 'body': a.actions[0].body}))\n"))
    assert seen == {"expect": ["hypomag.file.rejected"], "posture": "Reactive", "action": "send-notification",
                    "body": "{{ event.payload.reason }}"}
