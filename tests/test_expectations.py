"""Every Great Expectations check can fail (issue 18): each one is made to fail by corrupting one
table of a small clean database, and passes on the clean database. A check without a corruption
in FAILING_CASES fails this file. Rules that the SQL guarantees by construction (a status from
the CASE that makes it, a loaded row's fields, a flag's threshold) are not expectations: they are
tested here on hand-made rows that the SQL produced."""
from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from builder import LAB_COLUMNS, MED_COLUMNS, lab, make_db, med, write_csv
from pipelines.analyse import build_results, store_proportions
from pipelines.config import Config
from pipelines.db import connect, create_parameter_tables
from pipelines.ingest.generic import ingest_inbox
from pipelines.models import NORMALISE_MODELS, build_models
from pipelines.validate import load_suites, run_suites

T = "2024-03-01 08:00"
LATER = "2024-03-01 12:00"

# expectation id -> (table it checks, a statement that breaks exactly that check on the clean database)
FAILING_CASES: dict[str, tuple[str, str]] = {
    # ingest: the raw tables as read
    "labs_not_empty": ("raw_labs", "DELETE FROM raw_labs"),
    "labs_patient_id_present": ("raw_labs", "UPDATE raw_labs SET patient_id = NULL WHERE source_row = 1"),
    "meds_patient_id_present": ("raw_medications", "UPDATE raw_medications SET patient_id = NULL WHERE source_row = 1"),
    # normalise: every row's fate, canonical units
    "labs_result_id_conflict_within_file": (
        "stg_lab_rows", "UPDATE stg_lab_rows SET given_result_id = 'r1' WHERE source_row IN (1, 2)"),
    "labs_quarantine_fraction": (
        "stg_lab_rows", "UPDATE stg_lab_rows SET status = 'quarantined', reason = 'non_numeric_value' "
                        "WHERE source_row <= 10"),
    "labs_out_of_scope_share_jump": (
        "stg_lab_rows", "UPDATE stg_lab_rows SET source_file = 'labs_later.csv', status = 'out_of_scope', "
                        "reason = NULL WHERE row_id > (SELECT min(row_id) + 10 FROM stg_lab_rows)"),
    "meds_start_before_stop": (
        "stg_medication_rows", "UPDATE stg_medication_rows SET stop_at = start_at - INTERVAL 1 DAY "
                               "WHERE source_row = 1"),
    "meds_quarantine_fraction": (
        "stg_medication_rows", "UPDATE stg_medication_rows SET status = 'quarantined', reason = 'bad_timestamp' "
                               "WHERE source_row = 1"),
    # int_lab_results is a view of stg_lab_rows' loaded rows
    "results_not_in_future": (
        "int_lab_results", "UPDATE stg_lab_rows SET collected_at = TIMESTAMP '2999-01-01 08:00' "
                           "WHERE row_id = (SELECT min(row_id) FROM int_lab_results)"),
    "results_has_magnesium": (
        "int_lab_results", "UPDATE stg_lab_rows SET analyte = 'K' WHERE analyte = 'MG' AND status = 'loaded'"),
    # analyse: the marts and the published rates
    "accounting_identity": (
        "mart_row_accounting", "UPDATE mart_row_accounting SET rows_loaded = rows_loaded + 1 "
                               "WHERE input_table = 'labs'"),
    "accounting_grain_unique": (
        "mart_row_accounting", "INSERT INTO mart_row_accounting SELECT * FROM mart_row_accounting "
                               "WHERE input_table = 'labs'"),
    "cooccurrence_grain_unique": (
        "mart_cooccurrence", "INSERT INTO mart_cooccurrence SELECT * FROM mart_cooccurrence "
                             "WHERE level = 'result' AND abnormality = 'hypokalemia' "
                             "AND direction = 'abnormality_given_hypomg' AND window_name = 'same_draw'"),
    "cooccurrence_numerator_le_denominator_le_index": (
        "mart_cooccurrence", "UPDATE mart_cooccurrence SET numerator = denominator + 1 "
                             "WHERE level = 'result' AND abnormality = 'hypokalemia' "
                             "AND direction = 'abnormality_given_hypomg' AND window_name = 'same_draw'"),
    "cooccurrence_patients_le_results": (
        "mart_cooccurrence", "UPDATE mart_cooccurrence SET index_count = index_count + 1000, "
                             "denominator = denominator + 1000 WHERE level = 'patient' AND abnormality = 'hypokalemia' "
                             "AND direction = 'abnormality_given_hypomg' AND window_name = 'same_draw'"),
    "sensitivity_grain_unique": (
        "mart_sensitivity", "INSERT INTO mart_sensitivity SELECT * FROM mart_sensitivity WHERE rowid = 0"),
    "sensitivity_numerator_le_denominator": (
        "mart_sensitivity", "UPDATE mart_sensitivity SET numerator = denominator + 1 WHERE rowid = 0"),
    "audit_grain_unique": (
        "mart_audit", "INSERT INTO mart_audit SELECT * FROM mart_audit WHERE grouping = 'overall'"),
    "audit_mg_checked_le_episodes": (
        "mart_audit", "UPDATE mart_audit SET mg_checked = episodes + 1 WHERE grouping = 'overall'"),
    "audit_mg_repleted_le_low_mg_le_episodes": (
        "mart_audit", "UPDATE mart_audit SET mg_repleted = low_mg_episodes + 1 WHERE grouping = 'overall'"),
    "audit_refractory_mg_checked_le_refractory_le_episodes": (
        "mart_audit", "UPDATE mart_audit SET refractory_mg_checked = refractory_episodes + 1 "
                      "WHERE grouping = 'overall'"),
    "exposures_grain_unique": (
        "mart_exposures", "INSERT INTO mart_exposures SELECT * FROM mart_exposures WHERE drug_class = 'mg_supplement'"),
    "exposures_hypomg_le_mg_results": (
        "mart_exposures", "UPDATE mart_exposures SET exposed_hypomg = exposed_mg_results + 1 "
                          "WHERE drug_class = 'mg_supplement'"),
    "rates_numerator_le_denominator": (
        "res_proportions", "UPDATE res_proportions SET numerator = 5, denominator = 4, prevalence = NULL, "
                           "ci_low = NULL, ci_high = NULL WHERE rowid = 0"),
    "rates_prevalence_in_0_1": (
        "res_proportions", "UPDATE res_proportions SET prevalence = 1.5, ci_low = NULL, ci_high = NULL WHERE rowid = 0"),
    "rates_ci_low_le_prevalence": (
        "res_proportions", "UPDATE res_proportions SET prevalence = 0.5, ci_low = 0.6, ci_high = NULL WHERE rowid = 0"),
    "rates_prevalence_le_ci_high": (
        "res_proportions", "UPDATE res_proportions SET prevalence = 0.5, ci_low = NULL, ci_high = 0.4 WHERE rowid = 0"),
}


def ward_labs() -> list[dict]:
    """Twelve patients, each with one draw of every analyte and a second potassium 4 h later.

    Half have low magnesium and low potassium, so every mart has rows: co-occurrences, hypokalemia
    episodes (the audit), exposures (the medications below). Nothing is quarantined or out of scope.
    """
    rows = []
    for i in range(12):
        low = i % 2 == 0
        draw = {"specimen_id": f"s{i}"}
        rows += [
            lab(f"p{i}", T, "MG", "1.5" if low else "2.0", "mg/dL", result_id=f"{10 * i + 1}", **draw),
            lab(f"p{i}", T, "K", "3.0" if low else "4.0", "mmol/L", result_id=f"{10 * i + 2}", **draw),
            lab(f"p{i}", T, "NA", "130" if low else "140", "mmol/L", result_id=f"{10 * i + 3}", **draw),
            lab(f"p{i}", T, "PHOS", "2.0" if low else "3.5", "mg/dL", result_id=f"{10 * i + 4}", **draw),
            lab(f"p{i}", T, "CA", "8.0" if low else "9.5", "mg/dL", result_id=f"{10 * i + 5}", **draw),
            lab(f"p{i}", T, "ICA", "1.0" if low else "1.2", "mmol/L", result_id=f"{10 * i + 6}", **draw),
            lab(f"p{i}", T, "ALB", "40", "g/L", result_id=f"{10 * i + 7}", **draw),
            lab(f"p{i}", LATER, "K", "3.2" if low else "4.1", "mmol/L", result_id=f"{10 * i + 8}"),
        ]
    return rows


def ward_meds() -> list[dict]:
    return [med(f"p{i}", "2024-02-29 08:00", drug, stop="2024-03-02 08:00")
            for i, drug in enumerate(("Magnesium Sulfate", "Potassium Chloride", "Furosemide", "Omeprazole"))]


@pytest.fixture(scope="module")
def clean_db(tmp_path_factory) -> Path:
    """The ward's database file as a run leaves it after the analyse step (models and published rates)."""
    folder = tmp_path_factory.mktemp("clean")
    path = folder / "clean.duckdb"
    con = make_db(folder, labs=ward_labs(), meds=ward_meds(), db=path)
    try:
        store_proportions(con, build_results(con, Config()))
    finally:
        con.close()
    return path


def suite_of(expectation_id: str) -> dict:
    return next(s for s in load_suites() if expectation_id in {e["meta"]["id"] for e in s["expectations"]})


def failed(db: Path, stage: str) -> set[str]:
    return {e["id"] for s in run_suites(db, stage, Config()) for e in s["expectations"] if not e["success"]}


def test_every_expectation_has_a_case_that_makes_it_fail():
    """A new expectation needs its corruption here: an expectation that cannot fail checks nothing."""
    suites = load_suites()
    tables = {e["meta"]["id"]: s["meta"]["table"] for s in suites for e in s["expectations"]}
    assert sorted(set(tables) - set(FAILING_CASES)) == [], "expectations without a failing case"
    assert sorted(set(FAILING_CASES) - set(tables)) == [], "failing cases of expectations that no longer exist"
    assert {ident: FAILING_CASES[ident][0] for ident in tables} == tables


def test_the_clean_database_passes_every_suite(clean_db):
    stages = sorted({s["meta"]["stage"] for s in load_suites()})
    assert {stage: failed(clean_db, stage) for stage in stages} == {stage: set() for stage in stages}


@pytest.mark.parametrize("expectation_id", sorted(FAILING_CASES))
def test_each_expectation_fails_on_its_corruption_alone(expectation_id, clean_db, tmp_path):
    table, corruption = FAILING_CASES[expectation_id]
    suite = suite_of(expectation_id)
    assert suite["meta"]["table"] == table
    db = tmp_path / "corrupt.duckdb"
    shutil.copyfile(clean_db, db)
    with duckdb.connect(str(db)) as con:
        con.execute(corruption)
    assert failed(db, suite["meta"]["stage"]) == {expectation_id}


def test_mart_invariants_are_blocking():
    """A mart that breaks its grain or nests its counts wrongly is a bug: nothing may be published."""
    for suite in load_suites():
        if suite["meta"]["table"].startswith("mart_"):
            assert all(e["meta"]["blocking"] for e in suite["expectations"]), suite["name"]


# --- rules the SQL guarantees by construction, tested on hand-made rows --------------------------

def staged(tmp_path: Path):
    """Two lab extracts and one medication file: every fate and every quarantine reason once."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_csv(inbox / "labs_1.csv", LAB_COLUMNS, [
        lab("p1", T, "MG", "1.8", "mg/dL", result_id="1"),           # loaded
        lab("p1", T, "GLU", "90", "mg/dL", result_id="2"),           # out_of_scope
        lab("", T, "MG", "1.8", "mg/dL", result_id="3"),             # missing_patient_id
        lab("p2", "2024-03-01", "MG", "1.8", "mg/dL", result_id="4"),  # bad_timestamp
        lab("p3", T, "MG", "HEMOLYZED", "mg/dL", result_id="5"),     # non_numeric_value
        lab("p4", T, "MG", "1.8", "mg%", result_id="6"),             # unknown_unit
        lab("p5", T, "K", "99", "mmol/L", result_id="8"),            # implausible_value
        lab("p6", T, "K", "3.0", "mmol/L", result_id="9"),           # loaded
        lab("p6", T, "K", "3.0", "mmol/L", result_id="10"),          # duplicate
        lab("p7", T, "K", "3.4", "mmol/L", result_id="11"),          # superseded by labs_2.csv
    ])
    write_csv(inbox / "labs_2.csv", LAB_COLUMNS, [lab("p7", T, "K", "3.5", "mmol/L", result_id="11")])
    write_csv(inbox / "medications_1.csv", MED_COLUMNS, [
        med("p1", T, "Furosemide"),                                  # loaded
        med("", T, "Furosemide"),                                    # missing_patient_id
        med("p2", "yesterday", "Furosemide"),                        # bad_timestamp
        med("p3", T, "Furosemide", stop="soon"),                     # bad_timestamp (stop)
    ])
    con = connect(":memory:", Config())
    create_parameter_tables(con, Config())
    ingest_inbox(con, inbox, {}, Config())
    build_models(con, NORMALISE_MODELS)
    return con


def test_every_row_has_one_of_the_fates_and_a_reason_exactly_when_quarantined(tmp_path):
    con = staged(tmp_path)
    labs = con.execute("SELECT status, reason FROM stg_lab_rows").fetchall()
    assert sorted(set(s for s, _ in labs)) == ["loaded", "out_of_scope", "quarantined", "superseded"]
    assert sorted(r for s, r in labs if s == "quarantined") == sorted([
        "missing_patient_id", "bad_timestamp", "non_numeric_value", "unknown_unit", "implausible_value", "duplicate"])
    assert [r for s, r in labs if s != "quarantined"] == [None] * 5
    meds = con.execute("SELECT status, reason FROM stg_medication_rows ORDER BY source_row").fetchall()
    assert meds == [("loaded", None), ("quarantined", "missing_patient_id"), ("quarantined", "bad_timestamp"),
                    ("quarantined", "bad_timestamp")]


def test_loaded_results_have_a_patient_a_time_a_known_unit_and_a_plausible_value(tmp_path):
    con = staged(tmp_path)
    loaded = con.execute(
        "SELECT r.patient_id, r.analyte, r.value_canonical, u.factor IS NOT NULL, "
        "r.value_canonical BETWEEN a.plausible_low AND a.plausible_high, r.collected_at IS NOT NULL "
        "FROM int_lab_results AS r JOIN stg_lab_fields AS s USING (row_id) "
        "LEFT JOIN ref_unit_factors AS u ON u.analyte = r.analyte AND u.unit = lower(s.unit) "
        "LEFT JOIN ref_analytes AS a ON a.analyte = r.analyte ORDER BY r.patient_id").fetchall()
    assert [(p, a, pytest.approx(v)) for p, a, v, *_ in loaded] == [
        ("p1", "MG", 1.8 * 0.4114), ("p6", "K", 3.0), ("p7", "K", 3.5)]
    assert all(known and plausible and timed for *_, known, plausible, timed in loaded)


def test_flags_are_the_thresholds_strictly(tmp_path):
    # at the threshold (1.7 mg/dL, 3.5 mmol/L) no flag; just below it a flag
    con = make_db(tmp_path, labs=[
        lab("a", T, "MG", "1.7", "mg/dL"), lab("b", T, "MG", "1.69", "mg/dL"),
        lab("c", T, "K", "3.5", "mmol/L"), lab("d", T, "K", "3.49", "mmol/L"), lab("e", T, "K", "1.5", "mmol/L"),
    ], models=NORMALISE_MODELS + ("intermediate/int_lab_flags",))
    assert con.execute("SELECT patient_id, is_hypomagnesemia, is_hypokalemia FROM int_lab_flags "
                       "ORDER BY patient_id").fetchall() == [
        ("a", False, False), ("b", True, False), ("c", False, False), ("d", False, True), ("e", False, True)]


def test_every_magnesium_result_is_counted_once_in_every_drug_class(tmp_path):
    """int_mg_exposures is (magnesium results) x (drug classes) by construction (a cross join filtered
    back to the results), so exposed + unexposed is the number of magnesium results in every class;
    this replaces an expectation that re-counted int_lab_flags on every run (docs/performance.md)."""
    con = make_db(tmp_path, labs=[
        lab("p1", T, "MG", "1.5", "mg/dL"),       # two overlapping furosemide orders: exposed once
        lab("p2", T, "MG", "2.0", "mg/dL"),       # an order starting exactly at T: exposed
        lab("p3", T, "MG", "2.0", "mg/dL"),       # no order: unexposed in every class
        lab("p4", T, "MG", "1.5", "mg/dL"),       # exposed at T ...
        lab("p4", LATER, "MG", "2.0", "mg/dL"),   # ... not at T + 4 h (the order stopped at T + 1 h)
    ], meds=[
        med("p1", "2024-03-01 06:00", "Furosemide", stop="2024-03-01 10:00"),
        med("p1", "2024-03-01 07:00", "Furosemide", stop="2024-03-01 09:00"),
        med("p2", T, "Furosemide", stop="2024-03-01 09:00"),
        med("p4", "2024-03-01 07:00", "Furosemide", stop="2024-03-01 09:00"),
    ])
    classes = con.execute("SELECT count(DISTINCT drug_class) FROM ref_drug_classes").fetchone()[0]
    assert con.execute("SELECT count(*), count(DISTINCT (row_id, drug_class)) FROM int_mg_exposures").fetchone() == (
        5 * classes, 5 * classes)
    totals = con.execute("SELECT DISTINCT exposed_mg_results + unexposed_mg_results FROM mart_exposures").fetchall()
    assert totals == [(5,)]
    assert con.execute("SELECT exposed_mg_results, exposed_hypomg, unexposed_mg_results, unexposed_hypomg "
                       "FROM mart_exposures WHERE drug_class = 'loop_diuretic'").fetchone() == (3, 2, 2, 0)
