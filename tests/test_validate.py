"""Great Expectations validation (issue: validation that blocks bad loads): the DuckDB adapter,
blocking gates that publish nothing, warnings that reach the report, checks run in DuckDB."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from builder import digest, hypomag, lab, med, write_generic
from pipelines.config import Config
from pipelines.db import connect, create_parameter_tables
from pipelines.ingest import ingest_generic
from pipelines.models import BUILD_ORDER, build_models
from pipelines.run_spec import RunSpec
from pipelines.stages import validate_only
from pipelines.validate import blocking_failures, run_suites

T = "2024-03-01 08:00"


def good_labs(n=12):
    rows = []
    for i in range(n):
        rows += [lab(f"p{i}", T, "MG", "1.5" if i % 2 else "2.0", "mg/dL", specimen_id=f"s{i}", result_id=f"{2 * i + 1}"),
                 lab(f"p{i}", T, "K", "3.0", "mmol/L", specimen_id=f"s{i}", result_id=f"{2 * i + 2}")]
    return rows


def test_stock_gx_sql_datasource_fails_on_duckdb_and_the_adapter_fixes_it(tmp_path):
    """Documents the GX 1.24 bug the adapter exists for (GX #10738/#11579)."""
    import great_expectations as gx

    from pipelines.validate import _gx

    db = tmp_path / "t.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE t AS SELECT i AS a FROM range(100) r(i)")
    expectation = gx.expectations.ExpectColumnValuesToBeBetween(column="a", min_value=0, max_value=99)
    _, context, _ = _gx()
    stock = context.data_sources.add_sql(name="stock", connection_string=f"duckdb:///{db}")
    stock_result = stock.add_table_asset(name="t", table_name="t").add_batch_definition_whole_table("b").get_batch().validate(expectation)
    stock.get_execution_engine().engine.dispose()
    stock.get_engine().dispose()
    context.data_sources.delete("stock")
    ours = context.data_sources.add_hypomag_duckdb(name="ours", connection_string=f"duckdb:///{db}")
    our_result = ours.add_table_asset(name="t", table_name="t").add_batch_definition_whole_table("b").get_batch().validate(expectation)
    ours.get_execution_engine().engine.dispose()
    ours.get_engine().dispose()
    context.data_sources.delete("ours")
    assert stock_result.success is False
    assert our_result.success is True
    assert our_result.result["element_count"] == 100


def build_file_db(tmp_path, labs, meds=(), config=None) -> Path:
    config = config or Config()
    folder = write_generic(tmp_path / "in", labs, meds)
    path = tmp_path / "v.duckdb"
    con = connect(path, config)
    create_parameter_tables(con, config)
    ingest_generic(con, folder, {})
    build_models(con, BUILD_ORDER)
    from pipelines.analyse import build_results, store_proportions

    store_proportions(con, build_results(con, config))
    con.close()
    return path


def ids(summaries, success=False):
    return {e["id"] for s in summaries for e in s["expectations"] if e["success"] is success}


def test_clean_load_passes_every_suite(tmp_path):
    db = build_file_db(tmp_path, good_labs(), [med("p1", T, "Furosemide", stop="2024-03-02 08:00")])
    failed = set()
    for stage in ("ingest", "normalise", "analyse"):
        failed |= ids(run_suites(db, stage, Config()))
    assert failed == set()


def test_suites_run_in_the_runs_own_session_and_leave_it_open_and_writable(tmp_path):
    """The run's connection is lent to GX: a temporary table of that session is what GX checks (no
    other connection could see it), and afterwards the session is open, outside any transaction,
    and what it writes is kept."""
    db = build_file_db(tmp_path, good_labs())
    con = duckdb.connect(str(db))
    try:
        # in this session only, int_lab_results has no magnesium (a temporary table shadows the file's)
        con.execute("CREATE TEMP TABLE int_lab_results AS SELECT * FROM main.int_lab_results WHERE analyte <> 'MG'")
        first = {e["id"]: e["success"] for s in run_suites(con, "normalise", Config()) for e in s["expectations"]}
        assert first["results_has_magnesium"] is False
        con.execute("DROP TABLE temp.int_lab_results")
        second = {e["id"]: e["success"] for s in run_suites(con, "normalise", Config()) for e in s["expectations"]}
        assert all(second.values()), second
        con.execute("BEGIN")  # raises if GX left a transaction open
        con.execute("CREATE TABLE written_after_validation AS SELECT 42 AS answer")
        con.execute("COMMIT")
    finally:
        con.close()
    with duckdb.connect(str(db), read_only=True) as again:
        assert again.execute("SELECT answer FROM written_after_validation").fetchall() == [(42,)]



def test_validation_queries_the_tables_without_copying_them(tmp_path):
    """GX's SQL engine copies a whole table into a temporary table before checking it unless told not
    to; on the run's session such copies would stay visible, and they cost most of the validation time."""
    db = build_file_db(tmp_path, good_labs())
    con = duckdb.connect(str(db))
    try:
        run_suites(con, "normalise", Config())
        copies = con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()
    finally:
        con.close()
    assert copies == []

def test_a_broken_mart_invariant_blocks_and_examples_hide_patients(tmp_path):
    db = build_file_db(tmp_path, good_labs())
    with duckdb.connect(str(db)) as con:  # a numerator above its denominator, an interval beside its rate
        con.execute("UPDATE mart_cooccurrence SET numerator = denominator + 1 WHERE level = 'result' "
                    "AND abnormality = 'hypokalemia' AND direction = 'abnormality_given_hypomg' "
                    "AND window_name = 'same_draw'")
        con.execute("UPDATE res_proportions SET prevalence = 0.5, ci_low = 0.6, ci_high = 0.7 WHERE rowid = 0")
        con.execute("UPDATE stg_lab_rows SET collected_at = TIMESTAMP '2999-01-01 08:00' "
                    "WHERE status = 'loaded' AND analyte = 'MG' AND patient_id = 'p0'")
    summaries = run_suites(db, "analyse", Config())
    failures = {e["id"]: e for s in summaries for e in blocking_failures(s)}
    assert set(failures) == {"cooccurrence_numerator_le_denominator_le_index", "rates_ci_low_le_prevalence"}
    assert failures["cooccurrence_numerator_le_denominator_le_index"]["unexpected_count"] == 1
    # a failed row check shows only row numbers, reasons and counts: here the analyte, never the
    # patient or the value (the collection time) that made it fail
    warned = {e["id"]: e for s in run_suites(db, "normalise", Config()) for e in s["expectations"] if not e["success"]}
    assert set(warned) == {"results_not_in_future"} and warned["results_not_in_future"]["blocking"] is False
    assert warned["results_not_in_future"]["examples"] == [{"analyte": "MG"}]
    shown = json.dumps([failures, warned])
    assert "p0" not in shown and "2999" not in shown


def test_one_result_id_for_two_different_results_is_blocking(tmp_path):
    labs = good_labs()
    labs[3]["result_id"] = labs[2]["result_id"]  # p1's K result takes the id of p1's MG result
    db = build_file_db(tmp_path, labs)
    failures = {e["id"] for s in run_suites(db, "normalise", Config()) for e in blocking_failures(s)}
    assert failures == {"labs_result_id_conflict_within_file"}


def test_quarantine_fraction_gate_and_its_override(tmp_path):
    # 24 in-scope rows, 2 quarantined: 8.3% > 5% (blocking); made a warning by config it passes.
    labs = good_labs() + [lab("p1", T, "MG", "HEMOLYZED", "mg/dL", result_id="100"),
                          lab("p2", T, "MG", "1.9", "mg%", result_id="101")]
    db = build_file_db(tmp_path, labs)
    failures = {e["id"] for s in run_suites(db, "normalise", Config()) for e in blocking_failures(s)}
    assert failures == {"labs_quarantine_fraction"}
    from pipelines.config import Validation

    relaxed = Config(validation=Validation(make_warning=("labs_quarantine_fraction",)))
    summaries = run_suites(db, "normalise", relaxed)
    assert not any(blocking_failures(s) for s in summaries)
    assert "labs_quarantine_fraction" in ids(summaries)


@pytest.mark.slow
def test_validate_command_reports_no_magnesium_as_blocking(tmp_path):
    folder = write_generic(tmp_path / "in", [lab(f"p{i}", T, "K", "3.0", "mmol/L") for i in range(20)])
    summary = validate_only(RunSpec(source="generic", input_dir=folder))
    failures = {e["id"] for s in summary["suites"] for e in blocking_failures(s)}
    assert failures == {"results_has_magnesium"}
    proc = hypomag("validate", "--source", "generic", "--input", str(folder), cwd=tmp_path)
    assert proc.returncode == 1
    assert "FAIL  int_lab_results.results_has_magnesium:" in proc.stdout


@pytest.mark.slow
def test_blocking_failure_exits_1_and_publishes_nothing_new(tmp_path):
    out, db = tmp_path / "out", tmp_path / "hm.duckdb"
    good = write_generic(tmp_path / "good", good_labs())
    first = hypomag("run", "--source", "generic", "--input", str(good), "--out", str(out), "--db", str(db), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = {p: digest(p) for p in (out / "results.json", out / "report.html", out / "validation.json", db)}
    labs = good_labs()
    labs[3]["result_id"] = labs[2]["result_id"]
    bad = write_generic(tmp_path / "bad", labs)
    second = hypomag("run", "--source", "generic", "--input", str(bad), "--out", str(out), "--db", str(db), cwd=tmp_path)
    assert second.returncode == 1, second.stderr[-3000:]
    # the log names every check; the one-line error at the end must name the one that failed
    error = second.stderr.strip().splitlines()[-1]
    assert error.startswith("hypomag: error: ")
    assert "blocking expectation failed in suite stg_lab_rows: labs_result_id_conflict_within_file" in error
    assert error.endswith("unexpected: 2)")
    assert "Traceback" not in second.stderr
    assert {p: digest(p) for p in before} == before


@pytest.mark.slow
def test_warning_continues_and_shows_in_report(tmp_path):
    out, db = tmp_path / "out", tmp_path / "hm.duckdb"
    labs = good_labs() + [lab("from_the_future", "2999-01-01 08:00", "K", "4.0", "mmol/L", result_id="500")]
    folder = write_generic(tmp_path / "in", labs)
    proc = hypomag("run", "--source", "generic", "--input", str(folder), "--out", str(out), "--db", str(db), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    validation = json.loads((out / "validation.json").read_text())
    failed = {e["id"]: e for s in validation["suites"] for e in s["expectations"] if not e["success"]}
    assert set(failed) == {"results_not_in_future"}
    assert failed["results_not_in_future"]["blocking"] is False
    page = (out / "report.html").read_text()
    assert "Data-quality warnings" in page and "no collection time after the extract date" in page
    assert "from_the_future" not in page


@pytest.mark.slow
def test_validate_runs_the_analyse_checks_without_starting_the_worklist(tmp_path, monkeypatch):
    """`hypomag validate` stops after the analyse step's checks and writes no outputs: the review
    worklist's child process (which a run starts in the analyse step) is never started."""
    from pipelines import worklist

    started = []
    monkeypatch.setattr(worklist, "start_writing", lambda *args: started.append(args))
    folder = write_generic(tmp_path / "in", good_labs())
    summary = validate_only(RunSpec(source="generic", input_dir=folder))
    assert [s["suite"] for s in summary["suites"]][-1] == "res_proportions"  # the analyse stage was checked
    assert started == []
