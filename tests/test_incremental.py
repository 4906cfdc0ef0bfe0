"""Incremental computation (pipelines/incremental.py): nightly loads bring the database up to date for
the affected patients only, and give what one run on the same accepted files gives.

The nights are generated data with result ids, split over files: later files correct earlier results
(a new value, a result moved to another patient), repeat an earlier row under a new file (a
duplicate), add new patients, and one file is rejected. After every night the tables and results.json
equal those of a fresh run on the files accepted so far.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from builder import hypomag
from pipelines.generate import generate
from pipelines.models import BUILD_ORDER, VIEWS, table_name
from pipelines.paths import PROJECT_ROOT

# results.json keys that describe the run itself, not the data
RUN_KEYS = {"history_flags"}
# model tables compared row by row (every table model; views are computed from them)
TABLES = [table_name(m) for m in BUILD_ORDER if m not in VIEWS]


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def write_rows(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def population(tmp_path_factory) -> dict[str, tuple[list[str], list[dict[str, str]]]]:
    """Generated labs (every row given a result id) and medications, 240 patients."""
    folder = tmp_path_factory.mktemp("population")
    generate(240, 20241201, folder)
    columns, labs = read_rows(folder / "labs.csv")
    for i, row in enumerate(labs):
        row["result_id"] = f"R{i}"
    med_columns, meds = read_rows(folder / "medications.csv")
    return {"labs": (columns + ["result_id"], labs), "medications": (med_columns, meds)}


def nights(population) -> list[dict[str, list[dict[str, str]]]]:
    """Three nights of files: name -> rows. Night 2 corrects night 1; night 3 has a rejected file."""
    columns, labs = population["labs"]
    _, meds = population["medications"]
    cut1, cut2 = len(labs) * 6 // 10, len(labs) * 9 // 10
    mg_rows = [r for r in labs[:cut1] if r["analyte"] in ("MG", "19123-9") and r["patient_id"]]
    corrected = [{**r, "value": "2.0", "unit": "mg/dL"} for r in mg_rows[:15]]  # a new value, same result id
    moved = [{**r, "patient_id": mg_rows[-1]["patient_id"]} for r in mg_rows[20:23]]  # to another patient
    repeated = [{**r, "result_id": f"{r['result_id']}-again"} for r in labs[5:9] if r["patient_id"]]  # duplicates
    newcomer = [{"patient_id": "NEW1", "collected_at": "2025-03-01 08:00:00", "analyte": "MG", "value": "1.4",
                 "unit": "mg/dL", "result_id": "N1"},
                {"patient_id": "NEW1", "collected_at": "2025-03-01 09:00:00", "analyte": "K", "value": "3.1",
                 "unit": "mmol/L", "result_id": "N2"}]
    late_fix = [{**mg_rows[30], "value": "1.1", "unit": "mg/dL"}]
    m1, m2 = len(meds) // 2, len(meds) * 3 // 4
    return [
        {"labs-1.csv": labs[:cut1], "medications-1.csv": meds[:m1]},
        {"labs-2.csv": labs[cut1:cut2] + corrected + moved + repeated, "medications-2.csv": meds[m1:m2]},
        {"labs-3.csv": [{k: v for k, v in r.items() if k != "value"} for r in labs[cut2:cut2 + 5]],  # rejected
         "labs-4.csv": labs[cut2:] + newcomer + late_fix, "medications-3.csv": meds[m2:]},
    ]


def run(inbox: Path, root: Path, db: Path, cwd: Path) -> subprocess.CompletedProcess:
    return hypomag("run", "--incremental", "--source", "generic", "--input", str(inbox), "--out", str(root),
                   "--db", str(db), cwd=cwd)


def results(root: Path) -> dict:
    document = json.loads((root / "latest" / "results.json").read_text(encoding="utf-8"))
    return {k: v for k, v in document.items() if k not in RUN_KEYS}


def differing_tables(db_a: Path, db_b: Path) -> dict[str, tuple[int, int]]:
    """Tables whose rows differ (EXCEPT ALL both ways), with the two counts."""
    out = {}
    with duckdb.connect(str(db_a), read_only=True) as con:
        con.execute("ATTACH ? AS other (READ_ONLY)", [str(db_b.resolve())])
        here = con.execute("SELECT current_database()").fetchone()[0]
        for t in TABLES:
            a = con.execute(f'SELECT count(*) FROM (SELECT * FROM "{here}".main.{t} EXCEPT ALL '
                            f"SELECT * FROM other.main.{t})").fetchone()[0]
            b = con.execute(f'SELECT count(*) FROM (SELECT * FROM other.main.{t} EXCEPT ALL '
                            f'SELECT * FROM "{here}".main.{t})').fetchone()[0]
            if a or b:
                out[t] = (a, b)
    return out


def test_nightly_loads_equal_one_run_on_the_accepted_files(tmp_path, population):
    columns, _ = population["labs"]
    med_columns, _ = population["medications"]
    inbox, root, db = tmp_path / "inbox", tmp_path / "dated", tmp_path / "nightly.duckdb"
    inbox.mkdir()
    for night, files in enumerate(nights(population), start=1):
        for name, rows in files.items():
            names = med_columns if name.startswith("medications") else columns
            write_rows(inbox / name, [c for c in names if name != "labs-3.csv" or c != "value"], rows)
        proc = run(inbox, root, db, tmp_path)
        assert proc.returncode == (3 if night == 3 else 0), proc.stderr[-3000:]
        if night > 1:
            assert "patients recomputed" in proc.stderr, proc.stderr[-3000:]
        # one run on the files accepted so far, in a fresh database (every model built whole)
        fresh_root, fresh_db = tmp_path / f"fresh-{night}", tmp_path / f"fresh-{night}.duckdb"
        again = run(inbox, fresh_root, fresh_db, tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "every model rebuilt" in again.stderr
        assert differing_tables(db, fresh_db) == {}, f"night {night}"
        assert results(root) == results(fresh_root), f"night {night}"
    with duckdb.connect(str(db), read_only=True) as con:
        corrections = con.execute("SELECT count(*) FROM int_result_corrections").fetchone()[0]
        moved = con.execute("SELECT count(*) FROM stg_lab_rows WHERE status = 'superseded'").fetchone()[0]
    assert corrections == moved == 15 + 3 + 1  # night 2's corrections and moves, night 3's late fix


def test_a_change_of_result_id_kind_recomputes_every_patient(tmp_path):
    """Numeric result ids order ties as numbers; a night that brings a text id changes that for every
    patient: the run rebuilds everything and still equals one run on both files."""
    inbox, root, db = tmp_path / "inbox", tmp_path / "dated", tmp_path / "nightly.duckdb"
    inbox.mkdir()
    columns = ["patient_id", "collected_at", "analyte", "value", "unit", "result_id"]
    first = [{"patient_id": "P1", "collected_at": "2024-01-01 08:00", "analyte": "MG", "value": v, "unit": "mg/dL",
              "result_id": rid} for v, rid in (("1.5", "10"), ("2.0", "9"))]
    first.append({"patient_id": "P1", "collected_at": "2024-01-01 08:00", "analyte": "K", "value": "3.0",
                  "unit": "mmol/L", "result_id": "11"})
    write_rows(inbox / "labs-1.csv", columns, first)
    assert run(inbox, root, db, tmp_path).returncode == 0
    write_rows(inbox / "labs-2.csv", columns, [{**first[0], "patient_id": "P2", "result_id": "X1"}])
    second = run(inbox, root, db, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "result ids changed between all numeric and not" in second.stderr
    fresh_root, fresh_db = tmp_path / "fresh", tmp_path / "fresh.duckdb"
    assert run(inbox, fresh_root, fresh_db, tmp_path).returncode == 0
    assert differing_tables(db, fresh_db) == {}
    assert results(root) == results(fresh_root)


def test_a_kill_inside_the_transaction_leaves_the_last_committed_database(tmp_path, population):
    """SIGKILL while a night's models are rebuilt: the live database reopens as the last run committed
    it (nothing of the killed night in it), and the next run loads the night's files."""
    columns, labs = population["labs"]
    inbox, root, db = tmp_path / "inbox", tmp_path / "dated", tmp_path / "nightly.duckdb"
    inbox.mkdir()
    write_rows(inbox / "labs-1.csv", columns, labs[:2000])
    assert run(inbox, root, db, tmp_path).returncode == 0
    with duckdb.connect(str(db), read_only=True) as con:
        before = con.execute("SELECT count(*) FROM stg_lab_rows").fetchone()[0]
    write_rows(inbox / "labs-2.csv", columns, labs[2000:])
    flag = tmp_path / "pause"
    env = {**os.environ, "HYPOMAG_TEST_PAUSE_AT": f"commit:{flag}"}
    victim = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", "--incremental", "--source", "generic",
                               "--input", str(inbox), "--out", str(root), "--db", str(db)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(1200):  # the run writes its pid into the flag at the pause point
            if flag.exists() or victim.poll() is not None:
                break
            subprocess.run(["sleep", "0.1"])
        assert flag.exists(), "the run never reached its commit"
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM stg_lab_rows").fetchone()[0] == before
        assert con.execute("SELECT count(*) FROM loaded_files").fetchone()[0] == 1
    again = run(inbox, root, db, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM stg_lab_rows").fetchone()[0] == len(labs)


# A nightly run killed right after its database transaction commits, before its rename of `current`.
KILL_AT_RENAME = """
import os, signal, sys
import pipelines.publish as publish
real = publish.point
def point(link, target):
    if link.name == "current" and publish.Store(link.parent).pointer("current") is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    real(link, target)
publish.point = point
sys.argv = ["hypomag", *sys.argv[1:]]
from pipelines.cli import main
main()
"""


def test_the_next_run_publishes_a_night_killed_between_its_commit_and_its_rename(tmp_path, population):
    """The killed night's database commit stands (its outputs were complete in its folder): the next run
    publishes them first, then its own; the history lists all three nights and the database agrees
    with the latest outputs."""
    columns, labs = population["labs"]
    inbox, root, db = tmp_path / "inbox", tmp_path / "dated", tmp_path / "nightly.duckdb"
    inbox.mkdir()
    write_rows(inbox / "labs-1.csv", columns, labs[:500])
    assert run(inbox, root, db, tmp_path).returncode == 0
    write_rows(inbox / "labs-2.csv", columns, labs[500:800])
    script = tmp_path / "kill.py"
    script.write_text(KILL_AT_RENAME, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                                     os.environ.get("PYTHONPATH")]))}
    killed = subprocess.run([sys.executable, str(script), "run", "--incremental", "--source", "generic", "--input",
                             str(inbox), "--out", str(root), "--db", str(db)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    write_rows(inbox / "labs-3.csv", columns, labs[800:1000])
    proc = run(inbox, root, db, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "committed its database but stopped before publishing its outputs: published now" in proc.stderr
    assert len([p for p in root.iterdir() if p.name[:2] == "20"]) == 3
    latest = json.loads((root / "latest" / "manifest.json").read_text(encoding="utf-8"))
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM loaded_files").fetchone()[0] == len(latest["inputs"]) == 3


def test_a_plain_run_is_refused_on_a_nightly_database(tmp_path):
    """A run without --incremental would publish a database of its own input over the nightly history."""
    inbox, root, db = tmp_path / "inbox", tmp_path / "dated", tmp_path / "nightly.duckdb"
    inbox.mkdir()
    write_rows(inbox / "labs-1.csv", ["patient_id", "collected_at", "analyte", "value", "unit"],
               [{"patient_id": "P1", "collected_at": "2024-01-01 08:00", "analyte": "MG", "value": "1.5",
                 "unit": "mg/dL"}])
    assert run(inbox, root, db, tmp_path).returncode == 0
    plain = hypomag("run", "--source", "generic", "--input", str(PROJECT_ROOT / "data_samples"), "--out",
                    str(tmp_path / "plain"), "--db", str(db), cwd=tmp_path)
    assert plain.returncode == 2
    assert "the database of nightly runs (--incremental, serve)" in plain.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw_labs").fetchone()[0] == 1


def test_a_care_unit_reaching_min_cell_size_rebuilds_the_strata(tmp_path):
    """The strata show a care unit by name once min_cell_size (11) patients have results in it, else as
    'other'. ICU-A has 10 patients after night 1 (shown as 'other') and 11 after night 2: every earlier
    ICU-A result moves from 'other' to 'ICU-A', not only the new patient's, so the strata mart is rebuilt
    whole that night; WARD (12 patients from the start) is brought up to date by its new patient alone."""
    inbox, root, db = tmp_path / "inbox", tmp_path / "dated", tmp_path / "nightly.duckdb"
    inbox.mkdir()
    columns = ["patient_id", "collected_at", "analyte", "value", "unit", "care_unit", "result_id"]

    def patient(pid: str, unit: str) -> list[dict[str, str]]:
        return [{"patient_id": pid, "collected_at": "2024-03-01 08:00", "analyte": analyte, "value": value,
                 "unit": u, "care_unit": unit, "result_id": f"{pid}-{analyte}"}
                for analyte, value, u in (("MG", "1.4", "mg/dL"), ("K", "3.1", "mmol/L"))]

    first = [r for i in range(10) for r in patient(f"A{i}", "ICU-A")]
    first += [r for i in range(12) for r in patient(f"W{i}", "WARD")]
    write_rows(inbox / "labs-1.csv", columns, first)
    assert run(inbox, root, db, tmp_path).returncode == 0
    strata = "SELECT stratum_value, sum(index_count) FROM mart_cooccurrence_strata WHERE stratum = 'care_unit' " \
             "AND level = 'result' AND direction = 'abnormality_given_hypomg' AND window_name = '24h' " \
             "AND abnormality = 'hypokalemia' GROUP BY ALL ORDER BY ALL"
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute(strata).fetchall() == [("WARD", 12), ("other", 10)]
    write_rows(inbox / "labs-2.csv", columns, patient("W12", "WARD"))
    second = run(inbox, root, db, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "model mart_cooccurrence_strata: 1 patients recomputed" in second.stderr
    write_rows(inbox / "labs-3.csv", columns, patient("A10", "ICU-A"))
    third = run(inbox, root, db, tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "model mart_cooccurrence_strata: rebuilt whole" in third.stderr
    assert "model mart_cooccurrence: 1 patients recomputed" in third.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute(strata).fetchall() == [("ICU-A", 11), ("WARD", 13)]
    fresh_root, fresh_db = tmp_path / "fresh", tmp_path / "fresh.duckdb"
    assert run(inbox, fresh_root, fresh_db, tmp_path).returncode == 0
    assert differing_tables(db, fresh_db) == {}
    assert results(root) == results(fresh_root)


def test_an_additive_count_below_zero_stops_the_night_and_publishes_nothing(tmp_path):
    """The additive models' safety net: a stored count that disagrees with the patients' contributions
    (here set to zero by hand) would go below zero when a correction takes a patient's low magnesium
    away (0 + 0 now - 1 before); the night stops as an internal error (exit 70), and the database and
    the published results stay as the first night left them."""
    inbox, root, db = tmp_path / "inbox", tmp_path / "dated", tmp_path / "nightly.duckdb"
    inbox.mkdir()
    columns = ["patient_id", "collected_at", "analyte", "value", "unit", "result_id"]
    first = [{"patient_id": "A", "collected_at": "2024-03-01 08:00", "analyte": "MG", "value": "1.4",
              "unit": "mg/dL", "result_id": "A-MG"},
             {"patient_id": "A", "collected_at": "2024-03-01 08:00", "analyte": "K", "value": "3.1",
              "unit": "mmol/L", "result_id": "A-K"}]
    write_rows(inbox / "labs-1.csv", columns, first)
    assert run(inbox, root, db, tmp_path).returncode == 0
    published = results(root)
    with duckdb.connect(str(db)) as con:
        assert con.execute("SELECT numerator, denominator FROM mart_cooccurrence WHERE abnormality = 'hypokalemia' "
                           "AND direction = 'abnormality_given_hypomg' AND window_name = 'same_draw' "
                           "AND level = 'result'").fetchall() == [(1, 1)]
        con.execute("UPDATE mart_cooccurrence SET numerator = 0, denominator = 0, index_count = 0")
        tampered = con.execute("SELECT * FROM mart_cooccurrence ORDER BY ALL").fetchall()
    write_rows(inbox / "labs-2.csv", columns, [{**first[0], "value": "2.0"}])  # A's magnesium corrected to normal
    night = run(inbox, root, db, tmp_path)
    assert night.returncode == 70, night.stderr[-3000:]
    assert "incremental update of mart_cooccurrence: " in night.stderr and "below zero" in night.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT * FROM mart_cooccurrence ORDER BY ALL").fetchall() == tampered
        assert con.execute("SELECT count(*) FROM loaded_files").fetchone()[0] == 1
    assert results(root) == published


def test_older_runs_lose_their_restricted_files_beyond_keep_restricted_runs(tmp_path):
    """`[schedule] keep_restricted_runs = 1`: after the second night only the latest run keeps restricted/;
    the first night's shared outputs stay on the history."""
    inbox, root, db = tmp_path / "inbox", tmp_path / "dated", tmp_path / "nightly.duckdb"
    inbox.mkdir()
    config = tmp_path / "hypomag.toml"
    config.write_text("[schedule]\nkeep_restricted_runs = 1\n")
    columns = ["patient_id", "collected_at", "analyte", "value", "unit"]
    for night, patient in enumerate(("A", "B"), start=1):
        write_rows(inbox / f"labs-{night}.csv", columns,
                   [{"patient_id": patient, "collected_at": "2024-03-01 08:00", "analyte": "MG", "value": "1.4",
                     "unit": "mg/dL"}])
        done = hypomag("run", "--incremental", "--source", "generic", "--input", str(inbox), "--out", str(root),
                       "--db", str(db), "--config", str(config), cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(p for p in root.iterdir() if p.name[:4].isdigit())
    assert len(runs) == 2
    assert [(r / "restricted").exists() for r in runs] == [False, True]
    assert all((r / "results.json").is_file() and (r / "report.html").is_file() for r in runs)
    assert (root / "latest" / "restricted" / "flags.parquet").is_file()
