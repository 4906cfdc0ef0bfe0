"""Killed and stopped runs (issue 15): a kill at any instant leaves a consistent published pair.

A run is paused at a named point with the test hook HYPOMAG_TEST_PAUSE_AT=<point>:<file> (the run
writes its pid to <file> and waits there while the file exists), then killed with SIGKILL (the main process only: its
Prefect API child must die with it) or stopped with SIGTERM/SIGINT. Afterwards `--db` and `--out`
must be one run's pair (the manifest's run id is the database's hypomag_meta run id), the
previous pair unless the kill came after the commit, and the next run must clear the leftovers.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import plotly
import pytest

from builder import LAB_COLUMNS, MED_COLUMNS, hypomag, lab, med, write_csv, write_generic

pytestmark = pytest.mark.slow
T = "2024-03-01 08:00"


def published_run_id(db: Path, out: Path) -> str:
    """The published pair's run id, asserting the database and the outputs belong to one run."""
    manifest = json.loads((out / "manifest.json").read_text())
    with duckdb.connect(str(db), read_only=True) as con:
        meta = dict(con.execute("SELECT key, value FROM hypomag_meta").fetchall())
        assert con.execute("SELECT count(*) FROM int_lab_results").fetchone()[0] > 0
    assert manifest["run_id"] == meta["run_id"]
    return meta["run_id"]


def digests(out: Path) -> dict[str, str]:
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest()
            for name in ("results.json", "manifest.json", "validation.json", "report.html")}


def children(pid: int) -> list[int]:
    """Pids of the processes whose parent is pid (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_paused(args: list[str], point: str, cwd: Path) -> tuple[subprocess.Popen, list[int]]:
    """Start `hypomag` paused at `point`; returns the process once it is there, and its children."""
    flag = cwd / f"paused-{point}"
    flag.unlink(missing_ok=True)
    env = {**os.environ, "HYPOMAG_TEST_PAUSE_AT": f"{point}:{flag}"}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 240
    while not flag.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {point}: {proc.stderr.read()[-3000:]}")
        assert time.time() < deadline, f"the run never reached {point}"
        time.sleep(0.1)
    return proc, children(proc.pid)


def assert_gone(pids: list[int], seconds: float = 30) -> None:
    deadline = time.time() + seconds
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not [p for p in pids if alive(p)], "a child process (Prefect's API) outlived its killed parent"


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """One published pair, on which every kill below is tried in turn."""
    folder = tmp_path_factory.mktemp("kill")
    labs = [lab(f"p{i}", T, "MG", "1.5" if i % 2 else "2.0", "mg/dL") for i in range(12)]
    inp = write_generic(folder / "in", labs=labs + [lab("p1", T, "K", "3.0", "mmol/L")])
    out, db = folder / "out", folder / "hm.duckdb"
    args = ["run", "--source", "generic", "--input", str(inp), "--out", str(out), "--db", str(db)]
    first = hypomag(*args, cwd=folder)
    assert first.returncode == 0, first.stderr[-3000:]
    return folder, args, out, db


def test_sigkill_at_each_step_and_around_the_commit_leaves_a_consistent_pair(published):
    folder, args, out, db = published
    store = folder / "hm.duckdb.hypomag"
    for point in ("ingest", "report", "publish", "commit", "published"):
        before_id, before = published_run_id(db, out), digests(out)
        victim, kids = start_paused(args, point, folder)
        assert kids, "the run has its Prefect API child"
        building = [p.name for p in (store / "runs").iterdir() if p.name != before_id]
        os.kill(victim.pid, signal.SIGKILL)  # the main process only: the child must die by itself
        victim.wait(timeout=30)
        assert victim.returncode == -signal.SIGKILL
        assert_gone(kids)
        after_id = published_run_id(db, out)  # a consistent pair, whatever the instant
        if point == "published":  # killed after the commit: the new pair is published
            assert after_id != before_id and after_id in building
        else:
            assert (after_id, digests(out)) == (before_id, before), point
    again = hypomag(*args, cwd=folder)
    assert again.returncode == 0, again.stderr[-3000:]
    last_id = published_run_id(db, out)
    previous_id = os.readlink(store / "previous").split("/")[1]
    # the killed runs' folders are gone: only the published run and the one before it remain
    assert sorted(p.name for p in (store / "runs").iterdir()) == sorted([last_id, previous_id])
    assert not [p for p in [*folder.iterdir(), *store.iterdir()] if ".tmp-" in p.name]


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_stop_cleanly_keeping_the_previous_outputs(published, signum, code):
    folder, args, out, db = published
    store = folder / "hm.duckdb.hypomag"
    before_id, before = published_run_id(db, out), digests(out)
    runs_before = sorted(p.name for p in (store / "runs").iterdir())
    victim, kids = start_paused(args, "publish" if signum == signal.SIGTERM else "ingest", folder)
    assert len(list((store / "runs").iterdir())) == len(runs_before) + 1  # the run built its folder
    os.kill(victim.pid, signum)
    _, stderr = victim.communicate(timeout=120)
    assert victim.returncode == code, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (f"hypomag: stopped by {signal.Signals(signum).name}; "
                                               "the previous outputs are intact")
    assert "Traceback" not in stderr
    assert (published_run_id(db, out), digests(out)) == (before_id, before)
    assert sorted(p.name for p in (store / "runs").iterdir()) == runs_before  # what it made is removed
    assert_gone(kids)


def test_sigkill_before_the_dated_commit_keeps_latest_index_and_db_together(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_csv(inbox / "labs-1.csv", LAB_COLUMNS, [lab(f"a{i}", T, "MG", "1.5", "mg/dL", result_id=f"R{i}")
                                                  for i in range(12)])
    write_csv(inbox / "medications-1.csv", MED_COLUMNS, [med("a1", T, "Magnesium Sulfate")])
    root, db = tmp_path / "dated", tmp_path / "nightly.duckdb"
    args = ["run", "--incremental", "--source", "generic", "--input", str(inbox), "--out", str(root), "--db", str(db)]
    first = hypomag(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    index = (root / "index.html").read_bytes()
    before_id = published_run_id(db, root / "latest")
    write_csv(inbox / "labs-2.csv", LAB_COLUMNS, [lab(f"b{i}", T, "MG", "2.0", "mg/dL", result_id=f"S{i}")
                                                  for i in range(12)])
    victim, kids = start_paused(args, "commit", tmp_path)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert_gone(kids)
    assert published_run_id(db, root / "latest") == before_id
    assert (root / "index.html").read_bytes() == index
    run_date = next(p.name for p in root.iterdir() if p.name[:2] == "20")
    assert published_run_id(db, root / run_date) == before_id
    with duckdb.connect(str(db), read_only=True) as con:  # the killed run's new extract is not in it
        assert con.execute("SELECT count(*) FROM loaded_files").fetchone()[0] == 2
    again = hypomag(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert published_run_id(db, root / "latest") != before_id
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM loaded_files").fetchone()[0] == 3
    runs = sorted(p.name for p in root.iterdir() if p.name[:2] == "20")  # same-day runs are kept apart
    assert len(runs) == 2 and runs[0] == run_date
    assert {p.name for p in root.iterdir()} - set(runs) == {".hypomag-output", "index.html", "latest",
                                                            f"plotly-{plotly.__version__}.min.js"}


def test_an_os_error_inside_the_flow_exits_2_with_one_line_and_keeps_the_previous_pair(published):
    folder, args, out, db = published
    store = folder / "hm.duckdb.hypomag"
    before_id, before = published_run_id(db, out), digests(out)
    runs_before = {p.name for p in (store / "runs").iterdir()}
    victim, _ = start_paused(args, "publish", folder)
    building = next(p for p in (store / "runs").iterdir() if p.name not in runs_before)
    (building / "db").rename(building / "db-gone")  # the file system loses the run's database folder
    (folder / "paused-publish").unlink()  # let the paused run go on
    _, stderr = victim.communicate(timeout=700)
    assert victim.returncode == 2, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (f"hypomag: error: {building / 'db' / 'hypomag.duckdb'}: "
                                               "No such file or directory")
    assert "Traceback" not in stderr
    assert (published_run_id(db, out), digests(out)) == (before_id, before)
    assert {p.name for p in (store / "runs").iterdir()} == runs_before
