"""The `hypomag` command end to end (real Prefect flow, real DuckDB file): outputs, exit codes,
one-line errors, and a failed run that leaves the previous outputs intact."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder import digest, hypomag, lab, write_generic

PROJECT_ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # every test here runs the command in a child process


def test_demo_writes_every_output_and_says_where(demo_run):
    out, proc = demo_run
    demo = out / "demo"
    printed = "".join(proc.stdout.split())  # the console may wrap a long path
    assert f"Report:{demo / 'report.html'}" in printed and f"Results:{demo / 'results.json'}" in printed
    for name in ("report.html", "results.json", "manifest.json", "validation.json",
                 "restricted/quarantine.parquet", "restricted/flags.parquet"):
        assert (demo / name).is_file(), name
    assert (out / "demo.duckdb").is_file()


def test_demo_accounting_identity_holds_per_file(demo_run):
    out, _ = demo_run
    manifest = json.loads((out / "demo" / "manifest.json").read_text())
    exact = json.loads((out / "demo" / "restricted" / "accounting.json").read_text())
    assert {i["table"] for i in manifest["inputs"]} == {"labs", "medications"}
    for item in exact["inputs"]:
        assert item["rows_read"] == item["rows_loaded"] + item["rows_out_of_scope"] + item["rows_quarantined"]
        assert item["rows_read"] > 0 and len(item["sha256"]) == 64
    # the shared manifest withholds the medications' 7 quarantined rows and their complement
    meds = next(i for i in manifest["inputs"] if i["table"] == "medications")
    assert (meds["rows_quarantined"], meds["rows_loaded"], meds["suppressed"]) == (None, None, True)
    assert meds["rows_read"] == next(i for i in exact["inputs"] if i["table"] == "medications")["rows_read"]
    labs = next(i for i in exact["inputs"] if i["table"] == "labs")
    n_lines = len((PROJECT_ROOT / "data_samples" / "labs.csv").read_text().splitlines()) - 1
    assert labs["rows_read"] == n_lines
    assert labs["rows_quarantined"] > 0 and labs["rows_out_of_scope"] > 0
    assert set(manifest["versions"]) == {"hypomag", "python", "duckdb", "great_expectations", "prefect"}
    assert manifest["parameters"]["thresholds"]["hypomagnesemia_mg_dl"] == 1.7
    results = json.loads((out / "demo" / "results.json").read_text())
    assert results["counts"]["lab_rows_read"] == labs["rows_read"]
    assert results["counts"]["lab_rows_quarantined"] == labs["rows_quarantined"]


def test_quarantine_parquet_has_reason_and_source_row(demo_run):
    import duckdb

    out, _ = demo_run
    with duckdb.connect() as con:
        rows = con.execute(f"SELECT reason, source_row FROM '{out / 'demo' / 'restricted' / 'quarantine.parquet'}'").fetchall()
    exact = json.loads((out / "demo" / "restricted" / "accounting.json").read_text())
    assert len(rows) == sum(i["rows_quarantined"] for i in exact["inputs"])
    assert all(r[0] and r[1] >= 1 for r in rows)


def test_report_is_self_contained_and_has_no_patient_ids(demo_run):
    out, _ = demo_run
    page = (out / "demo" / "report.html").read_text()
    assert page.count("plotly.js v") == 1, "plotly.js embedded exactly once"
    assert "<script src=" not in page and "<link " not in page, "no external script or stylesheet"
    assert "Whang" in page and "42%" in page
    patients = {line.split(",")[0] for line in (PROJECT_ROOT / "data_samples" / "labs.csv").read_text().splitlines()[1:]}
    patients.discard("")
    patients.discard('""')
    assert not [p for p in patients if f">{p}<" in page or f"'{p}'" in page or f'"{p}"' in page]


def test_failed_run_exits_2_with_one_line_and_keeps_previous_outputs(tmp_path):
    good = write_generic(tmp_path / "good", labs=[lab("p1", "2024-03-01 08:00", "MG", "1.5", "mg/dL")])
    out, db = tmp_path / "out", tmp_path / "hm.duckdb"
    first = hypomag("run", "--source", "generic", "--input", str(good), "--out", str(out), "--db", str(db), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p: digest(p) for p in [out / "results.json", out / "report.html", db]}

    bad = write_generic(tmp_path / "bad", labs=[lab("p1", "03/01/2024 08:00", "MG", "1.5", "mg/dL"),
                                                 lab("p2", "03/02/2024 08:00", "MG", "1.5", "mg/dL")])
    second = hypomag("run", "--source", "generic", "--input", str(bad), "--out", str(out), "--db", str(db), cwd=tmp_path)
    assert second.returncode == 2
    assert "Traceback" not in second.stderr
    assert (f"hypomag: error: {bad / 'labs.csv'}: column 'collected_at': no value is an ISO 8601 date and time "
            "(row 1: '03/01/2024 08:00')") in " ".join(second.stderr.split())
    assert {p: digest(p) for p in before} == before
    assert not list(tmp_path.glob(".out.partial-*")) and not list(tmp_path.glob("*.building"))


@pytest.mark.parametrize("case,message", [
    ("missing_folder", "input folder not found"),
    ("missing_labs_file", "input file not found (expected one of labs.csv, labs.csv.gz, labs.parquet)"),
    ("missing_column", "labs.csv: required column 'unit' is missing"),
    ("bad_config", "thresholds.hypomagnesemia: unknown key"),
    ("bad_source", "--source 'csv': expected one of generic, mimic-iv, omop"),
])
def test_user_errors_exit_2_with_a_message_naming_file_and_column(tmp_path, case, message):
    folder = tmp_path / "in"
    args = ["run", "--source", "generic", "--input", str(folder), "--out", str(tmp_path / "o"),
            "--db", str(tmp_path / "o.duckdb")]
    if case != "missing_folder":
        folder.mkdir()
        (folder / "medications.csv").write_text("patient_id,start_at,drug\n")
    if case in ("missing_column",):
        (folder / "labs.csv").write_text("patient_id,collected_at,analyte,value\np1,2024-03-01 08:00,MG,1.5\n")
    if case in ("bad_config", "bad_source"):
        write_generic(folder, labs=[lab("p1", "2024-03-01 08:00", "MG", "1.5", "mg/dL")])
    if case == "bad_config":
        (tmp_path / "c.toml").write_text("[thresholds]\nhypomagnesemia = 1.7\n")
        args += ["--config", str(tmp_path / "c.toml")]
    if case == "bad_source":
        args[2] = "csv"
    proc = hypomag(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr


def test_every_command_has_help(tmp_path):
    for command in ("run", "demo", "validate", "serve", "generate"):
        proc = hypomag(command, "--help", cwd=tmp_path)
        assert proc.returncode == 0 and "Usage" in proc.stdout, command
