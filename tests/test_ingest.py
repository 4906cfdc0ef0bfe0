"""Generic ingest and normalisation: every row's fate, units, censoring, duplicates, scope
(analysis plan sections 1.1, 2 and Row accounting). Patients are named after their case."""
from __future__ import annotations

import pytest

from builder import fates, lab, make_db, med, scalar
from pipelines.errors import InputError
from pipelines.models import NORMALISE_MODELS

T = "2024-03-01 08:00"


def build(tmp_path, labs, meds=()):
    return make_db(tmp_path, labs=labs, meds=meds, models=NORMALISE_MODELS)


def test_each_quarantine_reason_in_the_plans_order(tmp_path):
    con = build(tmp_path, [
        lab("ok", T, "MG", "1.8", "mg/dL"),                                   # 1 loaded
        lab("", T, "MG", "HEMOLYZED", "mg%"),                                 # 2 missing patient first
        lab("bad_time", "2024-03-01", "MG", "1.8", "mg/dL"),                  # 3 date without time
        lab("bad_time_and_value", "01/03/2024 08:00", "MG", "x", "mg/dL"),    # 4 timestamp before value
        lab("text_value", T, "MG", "HEMOLYZED", "mg/dL"),                     # 5
        lab("text_value_bad_unit", T, "MG", "HEMOLYZED", "mg%"),              # 6 value before unit
        lab("unknown_unit", T, "MG", "1.8", "mg%"),                           # 7
        lab("blank_unit", T, "K", "4.0", ""),                                 # 8 blank unit: unknown
        lab("implausible", T, "MG", "18", "mg/dL"),                           # 9 7.4 mmol/L > 5.0
        lab("implausible_low", T, "NA", "89.9", "mmol/L"),                    # 10 below 90
        lab("dup", T, "K", "4.0", "mmol/L", specimen_id="s1"),                # 11 first copy loads
        lab("dup", T, "K", "4.0", "MMOL/L ", specimen_id="s1"),               # 12 same unit, other case
        lab("dup", T, "K", "4.0", "mmol/L", specimen_id="s2"),                # 13 other specimen: loads
        lab("ts_with_offset", "2024-03-01T08:00:00+01:00", "K", "4.0", "mmol/L"),  # 14
    ])
    assert fates(con) == {
        1: ("loaded", None),
        2: ("quarantined", "missing_patient_id"),
        3: ("quarantined", "bad_timestamp"),
        4: ("quarantined", "bad_timestamp"),
        5: ("quarantined", "non_numeric_value"),
        6: ("quarantined", "non_numeric_value"),
        7: ("quarantined", "unknown_unit"),
        8: ("quarantined", "unknown_unit"),
        9: ("quarantined", "implausible_value"),
        10: ("quarantined", "implausible_value"),
        11: ("loaded", None),
        12: ("quarantined", "duplicate"),
        13: ("loaded", None),
        14: ("quarantined", "bad_timestamp"),
    }
    assert scalar(con, "SELECT count(*) FROM int_quarantine") == 11


def test_plausible_range_is_inclusive_at_both_ends(tmp_path):
    con = build(tmp_path, [
        lab("k_exactly_1", T, "K", "1.0", "mmol/L"),
        lab("k_exactly_10", T, "K", "10", "mmol/L"),
        lab("k_just_above_10", T, "K", "10.01", "mmol/L"),
    ])
    assert fates(con) == {1: ("loaded", None), 2: ("loaded", None), 3: ("quarantined", "implausible_value")}


def test_same_magnesium_in_three_units_normalises_to_one_value(tmp_path):
    con = build(tmp_path, [
        lab("mg_in_mg_dl", T, "MG", "2.0", "mg/dL"),
        lab("mg_in_mmol_l", T, "MG", "0.8228", "mmol/L"),
        lab("mg_in_meq_l", T, "MG", "1.6456", "mEq/L"),
        lab("mg_unit_case_and_space", T, "MG", "2.0", "  MG/DL "),
    ])
    values = [r[0] for r in con.execute("SELECT value_canonical FROM int_lab_results ORDER BY row_id").fetchall()]
    assert values == pytest.approx([0.8228] * 4, abs=1e-12)
    assert values[0] == 2.0 * 0.4114


@pytest.mark.parametrize("analyte,value,unit,expected", [
    ("K", "4.2", "mEq/L", 4.2),
    ("NA", "140", "mEq/L", 140.0),
    ("PHOS", "3.1", "mg/dL", 3.1 * 0.3229),
    ("CA", "9.0", "mg/dL", 9.0 * 0.2495),
    ("CA", "4.5", "mEq/L", 2.25),
    ("ICA", "4.6", "mg/dL", 4.6 * 0.2495),
    ("ALB", "3.5", "g/dL", 35.0),
])
def test_conversion_factors_are_the_plans(tmp_path, analyte, value, unit, expected):
    con = build(tmp_path, [lab("p", T, analyte, value, unit, fluid="blood" if analyte == "ICA" else "")])
    assert scalar(con, "SELECT value_canonical FROM int_lab_results") == expected


def test_censored_values_load_at_their_bound(tmp_path):
    con = build(tmp_path, [
        lab("censored_lt", T, "MG", "<0.5", "mmol/L"),
        lab("censored_le", T, "K", "<= 2.0", "mmol/L"),
        lab("censored_gt", T, "K", ">10", "mmol/L"),
        lab("not_censored", T, "NA", "140", "mmol/L"),
    ])
    rows = con.execute("SELECT patient_id, value_canonical, censored FROM int_lab_results ORDER BY row_id").fetchall()
    assert rows == [("censored_lt", 0.5, True), ("censored_le", 2.0, True), ("censored_gt", 10.0, True),
                    ("not_censored", 140.0, False)]


def test_analyte_codes_loinc_exact_and_canonical_names_case_insensitive(tmp_path):
    con = build(tmp_path, [
        lab("loinc_mass", T, "19123-9", "1.8", "mg/dL"),
        lab("loinc_moles", T, "2601-3", "0.8", "mmol/L"),
        lab("name_lower", T, "mg", "1.8", "mg/dL"),
        lab("sodium_named_na", T, "NA", "140", "mmol/L"),
        lab("sodium_named_na_lower", T, " na ", "140", "mmol/L"),
        lab("ica_loinc_blood", T, "1994-3", "1.1", "mmol/L"),
        lab("whole_blood_k_loinc", T, "6298-4", "4.0", "mmol/L"),
        lab("glucose", T, "GLU", "100", "mg/dL"),
        lab("loinc_with_suffix", T, "19123-9x", "1.8", "mg/dL"),
    ])
    rows = con.execute("SELECT source_row, status, analyte FROM stg_lab_rows ORDER BY row_id").fetchall()
    assert rows == [
        (1, "loaded", "MG"), (2, "loaded", "MG"), (3, "loaded", "MG"), (4, "loaded", "NA"), (5, "loaded", "NA"),
        (6, "loaded", "ICA"), (7, "out_of_scope", "K"), (8, "out_of_scope", None), (9, "out_of_scope", None),
    ]


def test_fluid_decides_scope(tmp_path):
    con = build(tmp_path, [
        lab("blank_fluid", T, "K", "4.0", "mmol/L", fluid=""),
        lab("serum", T, "K", "4.0", "mmol/L", fluid="Serum"),
        lab("plasma", T, "K", "4.0", "mmol/L", fluid="plasma"),
        lab("serum_plasma", T, "K", "4.0", "mmol/L", fluid="serum/plasma"),
        lab("whole_blood_k", T, "K", "4.0", "mmol/L", fluid="whole blood"),
        lab("blood_ica", T, "ICA", "1.1", "mmol/L", fluid="Blood"),
        lab("urine_k", T, "K", "40", "mmol/L", fluid="urine"),
        lab("csf_with_bad_value", T, "NA", "HEMOLYZED", "mmol/L", fluid="CSF"),
    ])
    statuses = [r[0] for r in con.execute("SELECT status FROM stg_lab_rows ORDER BY row_id").fetchall()]
    assert statuses == ["loaded"] * 4 + ["out_of_scope", "loaded", "out_of_scope", "out_of_scope"]


def test_result_id_defaults_to_row_position_and_timestamps_accept_T(tmp_path):
    con = build(tmp_path, [
        lab("a", "2024-03-01T08:15", "K", "4.0", "mmol/L"),
        lab("b", "2024-03-01 08:15:30", "K", "4.0", "mmol/L", result_id="R-77"),
    ])
    rows = con.execute("SELECT result_id, strftime(collected_at, '%Y-%m-%d %H:%M:%S') FROM int_lab_results "
                       "ORDER BY row_id").fetchall()
    assert rows == [("1", "2024-03-01 08:15:00"), ("R-77", "2024-03-01 08:15:30")]


def test_accounting_identity_per_file(tmp_path):
    con = make_db(tmp_path, labs=[
        lab("a", T, "MG", "1.8", "mg/dL"), lab("", T, "MG", "1.8", "mg/dL"), lab("b", T, "GLU", "1", "mg/dL"),
    ], meds=[med("a", "2024-03-01", "Furosemide"), med("", "2024-03-01", "KCl"), med("c", "soon", "KCl")])
    rows = con.execute("SELECT input_table, rows_read, rows_loaded, rows_out_of_scope, rows_quarantined "
                       "FROM mart_row_accounting ORDER BY input_table").fetchall()
    assert rows == [("labs", 3, 1, 1, 1), ("medications", 3, 1, 0, 2)]


def test_medication_dates_without_time_mean_midnight(tmp_path):
    con = build(tmp_path, [], meds=[
        med("date_only", "2024-03-01", "Magnesium Sulfate"),
        med("bad_stop", "2024-03-01 10:00", "KCl", stop="tomorrow"),
        med("", "2024-03-01 10:00", "KCl"),  # no patient
    ])
    rows = con.execute("SELECT status, reason, strftime(start_at, '%Y-%m-%d %H:%M') FROM stg_medication_rows "
                       "ORDER BY row_id").fetchall()
    assert rows == [("loaded", None, "2024-03-01 00:00"), ("quarantined", "bad_timestamp", "2024-03-01 10:00"),
                    ("quarantined", "missing_patient_id", "2024-03-01 10:00")]


def test_identifier_columns_are_refused(tmp_path):
    folder = raw_input(tmp_path, "patient_id,patient_name,collected_at,analyte,value,unit\n"
                                     f"p1,Jane Doe,{T},MG,1.8,mg/dL\n")
    with pytest.raises(InputError, match=r"labs.csv: column 'patient_name' looks like a direct identifier"):
        _ingest(folder)


def test_identifier_values_are_refused_with_their_row(tmp_path):
    folder = raw_input(tmp_path, "patient_id,collected_at,analyte,value,unit\n"
                                     f"p1,{T},MG,1.8,mg/dL\njane@example.org,{T},MG,1.8,mg/dL\n")
    with pytest.raises(InputError, match=r"row 2, column 'patient_id' holds what looks like an e-mail address"):
        _ingest(folder)


@pytest.mark.parametrize("value, what", [
    ("123-45-6789", "a social security number"),
    ("(555) 123-4567", "a phone number"),
    ("+1 555.123.4567", "a phone number"),
])
def test_identifier_values_in_any_column_are_refused(tmp_path, value, what):
    # an extra column the pipeline does not use is scanned too; row 3 is the first offender
    folder = raw_input(tmp_path, "patient_id,collected_at,analyte,value,unit,comment\n"
                                 f"p1,{T},MG,1.8,mg/dL,ok\np2,{T},MG,1.8,mg/dL,12-3456\n"
                                 f"p3,{T},MG,1.8,mg/dL,{value}\np4,{T},MG,1.8,mg/dL,{value}\n")
    with pytest.raises(InputError, match=rf"row 3, column 'comment' holds what looks like {what}"):
        _ingest(folder)


def test_parquet_is_read_with_its_row_numbers_and_scanned(tmp_path):
    import duckdb

    folder = tmp_path / "in"
    folder.mkdir()
    with duckdb.connect() as writer:
        writer.execute(f"COPY (SELECT 'p' || i AS patient_id, TIMESTAMP '{T}' AS collected_at, 'MG' AS analyte, "
                       f"i / 10 AS value, 'mg/dL' AS unit FROM range(1, 2001) t(i) ORDER BY i) "
                       f"TO '{folder / 'labs.parquet'}' (ROW_GROUP_SIZE 500)")
        writer.execute(f"COPY (SELECT 'p1' AS patient_id, DATE '2024-03-01' AS start_at, 'KCl' AS drug) "
                       f"TO '{folder / 'medications.parquet'}'")
    con = _ingest(folder)
    assert con.execute("SELECT count(*), count(DISTINCT row_id), min(source_row), max(source_row) FROM raw_labs "
                       "WHERE patient_id = 'p' || source_row AND row_id = source_row").fetchone() == (2000, 2000, 1, 2000)
    with duckdb.connect() as writer:
        writer.execute(f"COPY (SELECT CASE WHEN i = 1500 THEN 'x@example.org' ELSE 'p' || i END AS patient_id, "
                       f"TIMESTAMP '{T}' AS collected_at, 'MG' AS analyte, 1.8 AS value, 'mg/dL' AS unit "
                       f"FROM range(1, 2001) t(i) ORDER BY i) TO '{folder / 'labs.parquet'}' (ROW_GROUP_SIZE 500)")
    with pytest.raises(InputError, match=r"labs.parquet: row 1500, column 'patient_id' holds what looks like an e-mail"):
        _ingest(folder)


def test_missing_required_column_names_file_and_column(tmp_path):
    folder = raw_input(tmp_path, f"patient_id,collected_at,analyte,value\np1,{T},MG,1.8\n")
    with pytest.raises(InputError, match=r"labs.csv: required column 'unit' is missing"):
        _ingest(folder)


def test_column_mapping_renames_source_columns(tmp_path):
    from pipelines.config import Config

    folder = raw_input(tmp_path, f"subject,charttime,item,result,uom\np1,{T},MG,1.8,mg/dL\n")
    cfg = Config(columns={"labs": {"patient_id": "subject", "collected_at": "charttime", "analyte": "item",
                                   "value": "result", "unit": "uom"}})
    con = _ingest(folder, cfg)
    assert con.execute("SELECT patient_id, analyte, value FROM raw_labs").fetchall() == [("p1", "MG", "1.8")]


def test_parquet_input_keeps_sodium_named_NA(tmp_path):
    import duckdb

    folder = tmp_path / "in"
    folder.mkdir()
    with duckdb.connect() as writer:
        writer.execute(f"COPY (SELECT 'p1' AS patient_id, TIMESTAMP '{T}' AS collected_at, 'NA' AS analyte, "
                       f"140.0 AS value, 'mmol/L' AS unit) TO '{folder / 'labs.parquet'}'")
        writer.execute(f"COPY (SELECT 'p1' AS patient_id, DATE '2024-03-01' AS start_at, 'KCl' AS drug) "
                       f"TO '{folder / 'medications.parquet'}'")
    con = _ingest(folder)
    from pipelines.models import build_models

    build_models(con, NORMALISE_MODELS)
    assert con.execute("SELECT r.analyte, r.value_canonical, s.source_row FROM int_lab_results AS r "
                       "JOIN stg_lab_rows AS s USING (row_id)").fetchall() == [("NA", 140.0, 1)]
    assert scalar(con, "SELECT status FROM stg_medication_rows") == "loaded"


def raw_input(tmp_path, labs_text: str):
    """A generic input folder with the given labs.csv text and an empty medications.csv."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "labs.csv").write_text(labs_text)
    (folder / "medications.csv").write_text("patient_id,start_at,drug\n")
    return folder


def _ingest(folder, config=None):
    from pipelines.config import Config
    from pipelines.db import connect, create_parameter_tables
    from pipelines.ingest import ingest_generic

    config = config or Config()
    con = connect(":memory:", config)
    create_parameter_tables(con, config)
    ingest_generic(con, folder, config.columns)
    return con
