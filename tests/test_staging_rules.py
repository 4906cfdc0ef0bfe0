"""Staging rules of the analysis plan, section 2 (issues 15 and 16): malformed lines, the number
grammar, whitespace of any kind, the fluid rule, re-exported rows and identity conflicts, and the
out-of-scope share of an incremental load. Every expected fate below was worked out by hand."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from builder import LAB_COLUMNS, fates, lab, med, scalar, write_csv, write_generic
from pipelines.config import Config, Validation
from pipelines.db import connect, create_parameter_tables
from pipelines.ingest import ingest_generic
from pipelines.ingest.generic import ingest_inbox
from pipelines.models import BUILD_ORDER, NORMALISE_MODELS, build_models
from pipelines.paths import EXPECTATIONS_DIR
from pipelines.validate import run_suites

T = "2024-03-01 08:00"
TAB, NBSP = "\t", "\u00a0"


def add_malformed(con, table: str, source_row: int, **fields) -> None:
    """A malformed line as ingest records it: its row number and parse error, fields null unless given."""
    row_id, source_file = con.execute(
        f"SELECT coalesce(max(row_id), 0) + 1, min(source_file) FROM {table}").fetchone()
    names = ["row_id", "source_file", "source_row", "parse_error", *fields]
    con.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
                [row_id, source_file, source_row, "unterminated quote", *fields.values()])


def build(tmp_path: Path, labs=(), meds=(), models=NORMALISE_MODELS, db: str = ":memory:", malformed=None):
    """Ingest hand-made rows (plus malformed lines, if a callback adds them) and build `models`."""
    folder = write_generic(tmp_path / "input", labs, meds)
    con = connect(db, Config())
    create_parameter_tables(con, Config())
    ingest_generic(con, folder, {}, Config())
    if malformed:
        malformed(con)
    build_models(con, models)
    return con


def build_file_db(tmp_path: Path, labs, meds=()) -> Path:
    """A database file with every model built, closed so that GX can open it."""
    path = tmp_path / "rules.duckdb"
    build(tmp_path, labs, meds, models=BUILD_ORDER, db=str(path)).close()
    return path


def normalised_failures(db: Path) -> dict[str, dict]:
    return {e["id"]: e for s in run_suites(db, "normalise", Config()) for e in s["expectations"]
            if not e["success"]}


# --- duplicates and identity conflicts (issue 16 item 1) -----------------------------------------

ISSUE_16_ROWS = [
    lab("P", "2024-06-01 08:00:00", "MG", "1.2", "mg/dL", result_id="1"),
    lab("P", "2024-06-01 08:00:00", "MG", "1.2", "mg/dL", result_id="1"),
    lab("P", "2024-06-01 08:00:00", "K", "3.0", "mEq/L", result_id="2"),
]


def test_a_re_exported_row_loads_once_and_does_not_block(tmp_path):
    # issue 16 item 1, its rows exactly: 3 read, 2 loaded, 1 duplicate; MG 1.2 mg/dL = 0.494 mmol/L
    # is low, K 3.0 is low, same draw: hypokalemia among hypomagnesemia 1/1 at result level
    db = build_file_db(tmp_path, ISSUE_16_ROWS)
    with duckdb.connect(str(db)) as con:
        assert fates(con) == {1: ("loaded", None), 2: ("quarantined", "duplicate"), 3: ("loaded", None)}
        assert con.execute("SELECT rows_read, rows_loaded, rows_out_of_scope, rows_quarantined FROM "
                           "mart_row_accounting WHERE input_table = 'labs'").fetchall() == [(3, 2, 0, 1)]
        assert con.execute(
            "SELECT numerator, denominator FROM mart_cooccurrence WHERE abnormality = 'hypokalemia' AND "
            "direction = 'abnormality_given_hypomg' AND window_name = 'same_draw' AND level = 'result'"
        ).fetchone() == (1, 1)
    assert normalised_failures(db) == {}


def test_one_result_id_with_different_content_blocks_naming_file_and_rows(tmp_path):
    labs = [
        lab("P-private", T, "MG", "1.25", "mg/dL", result_id="R-77"),             # 1
        lab("P-private", T, "K", "3.9", "mmol/L", result_id="R-78"),              # 2
        lab("P-private", T, "MG", "1.35", "mg/dL", result_id="R-77"),             # 3 other value
        lab("P-private", T, "K", "3.9", f"{TAB}MMOL/L ", result_id=" R-78"),      # 4 same after trim/case
    ]
    db = build_file_db(tmp_path, labs)
    failures = normalised_failures(db)
    assert set(failures) == {"labs_result_id_conflict_within_file"}
    conflict = failures["labs_result_id_conflict_within_file"]
    assert conflict["blocking"] is True and conflict["unexpected_count"] == 2
    labs_csv = str(tmp_path / "input" / "labs.csv")
    assert conflict["examples"] == [{"source_file": labs_csv, "source_row": "1"},
                                    {"source_file": labs_csv, "source_row": "3"}]
    shown = json.dumps(conflict)
    assert "R-77" not in shown and "P-private" not in shown and "1.25" not in shown and "1.35" not in shown


def expectation_query(suite: str, ident: str, table: str) -> str:
    """An unexpected-rows expectation's own query, on `table`."""
    doc = json.loads((EXPECTATIONS_DIR / f"{suite}.json").read_text())
    query = next(e for e in doc["expectations"] if e["meta"]["id"] == ident)["kwargs"]["unexpected_rows_query"]
    return query.replace("{batch}", table)


@pytest.mark.parametrize("field,other,conflict", [
    ("patient_id", "Q", True),
    ("analyte", "K", True),
    ("collected_at", "2024-03-01 09:00", True),
    ("unit", "mmol/L", True),
    ("specimen_id", "s2", True),
    ("value", "1.35", True),
    ("value", "<1.25", True),
    ("value", "1.250", False),           # the same number
    ("unit", f"{TAB}MG/DL ", False),     # the same unit
    ("collected_at", "2024-03-01T08:00:00", False),  # the same time
    ("encounter_id", "E2", False),       # not part of a result's content
])
def test_each_content_field_counts_in_the_conflict(tmp_path, field, other, conflict):
    first = lab("P", T, "MG", "1.25", "mg/dL", result_id="9", specimen_id="s1", encounter_id="E1")
    con = build(tmp_path, [first, {**first, field: other}])
    query = expectation_query("stg_lab_rows", "labs_result_id_conflict_within_file", "stg_lab_rows")
    labs_csv = str(tmp_path / "input" / "labs.csv")
    assert con.execute(query).fetchall() == ([(labs_csv, 1), (labs_csv, 2)] if conflict else [])



def test_a_row_without_a_result_id_is_known_by_its_row_number_in_the_conflict(tmp_path):
    # rows 1 and 3 give no id (they are "1" and "3"); row 2 gives "3" for other content, row 4 gives "1"
    # for row 1's content; row 5 gives "9", which no row repeats
    con = build(tmp_path, [
        lab("P", T, "MG", "1.25", "mg/dL"),
        lab("P", T, "MG", "1.40", "mg/dL", result_id="3"),
        lab("P", T, "K", "3.1", "mmol/L"),
        lab("P", T, "MG", "1.25", "mg/dL", result_id="1"),
        lab("P", T, "NA", "140", "mmol/L", result_id="9"),
    ])
    query = expectation_query("stg_lab_rows", "labs_result_id_conflict_within_file", "stg_lab_rows")
    labs_csv = str(tmp_path / "input" / "labs.csv")
    assert con.execute(query).fetchall() == [(labs_csv, 2), (labs_csv, 3)]

# --- the number grammar (issue 15 item 3, issue 16 item 4) ---------------------------------------

NON_NUMERIC = ["1_38", "1,7", "NaN", "nan", "inf", "-inf", "Infinity", "1.2.3", ".", "e5", "1.7 mg/dL",
               "1.7mg", "<", "< NaN", "1e", "--1", "0x1A", "1 7"]


def test_every_spelling_outside_the_grammar_is_non_numeric(tmp_path):
    con = build(tmp_path, [lab(f"p{i}", T, "MG", value, "mg/dL") for i, value in enumerate(NON_NUMERIC)])
    assert fates(con) == {i + 1: ("quarantined", "non_numeric_value") for i in range(len(NON_NUMERIC))}


def test_sodium_with_a_digit_separator_is_not_138(tmp_path):
    con = build(tmp_path, [lab("p", T, "NA", "1_38", "mmol/L"), lab("p", T, "NA", "138", "mmol/L")])
    assert fates(con) == {1: ("quarantined", "non_numeric_value"), 2: ("loaded", None)}


@pytest.mark.parametrize("value,expected,censored", [
    (" 1.7 ", 1.7, False),
    ("+1.7", 1.7, False),
    ("1.7e0", 1.7, False),
    ("17E-1", 1.7, False),
    (f"{TAB}3.2{NBSP}", 3.2, False),
    (".5", 0.5, False),
    ("2.", 2.0, False),
    ("<0.5", 0.5, True),
    (f"<={NBSP}0.5", 0.5, True),
    (f"{NBSP}> 4{TAB}", 4.0, True),
])
def test_spellings_inside_the_grammar_load_with_their_value(tmp_path, value, expected, censored):
    con = build(tmp_path, [lab("p", T, "MG", value, "mg/dL")])
    assert con.execute("SELECT status, value_num, censored FROM stg_lab_rows").fetchall() == [
        ("loaded", expected, censored)]


def test_an_overflowing_number_is_implausible_not_non_numeric(tmp_path):
    con = build(tmp_path, [lab("p", T, "K", "1e400", "mmol/L"), lab("p", T, "K", "-3", "mmol/L")])
    assert fates(con) == {1: ("quarantined", "implausible_value"), 2: ("quarantined", "implausible_value")}


# --- whitespace of any kind (issue 15 item 3) ----------------------------------------------------

def test_whitespace_only_patient_ids_are_missing(tmp_path):
    con = build(tmp_path, [
        lab(TAB, T, "MG", "1.8", "mg/dL"),
        lab(NBSP, T, "MG", "1.8", "mg/dL"),
        lab(f" {TAB}\u3000\u2009\ufeff", T, "MG", "1.8", "mg/dL"),
        lab(f"{NBSP}p1{TAB}", T, "MG", "1.8", "mg/dL"),
    ], meds=[med(TAB, "2024-03-01", "KCl"), med(f"{NBSP}p1 ", "2024-03-01", "KCl")])
    assert fates(con) == {1: ("quarantined", "missing_patient_id"), 2: ("quarantined", "missing_patient_id"),
                          3: ("quarantined", "missing_patient_id"), 4: ("loaded", None)}
    assert scalar(con, "SELECT patient_id FROM stg_lab_rows WHERE source_row = 4") == "p1"
    assert con.execute("SELECT status, reason, patient_id FROM stg_medication_rows ORDER BY source_row").fetchall() == [
        ("quarantined", "missing_patient_id", None), ("loaded", None, "p1")]


def test_every_text_column_is_trimmed_the_same_way(tmp_path):
    con = build(tmp_path, [
        lab("p1", f"{TAB}{T}{NBSP}", f"{NBSP}mg{TAB}", "1.8", f"{TAB}mg/dL\u2003", result_id=f"{TAB}R1 ",
            specimen_id=f"{NBSP}S1", encounter_id=f"E1{TAB}", fluid=f"{TAB}Serum{NBSP}", care_unit=f"\u3000MICU{TAB}"),
        lab("p1", T, "K", "4.0", "mmol/L", fluid=f"{NBSP}urine{TAB}"),
    ], meds=[med("p1", f"{TAB}2024-03-01 10:00", f"{NBSP}Furosemide{TAB}", stop=f"2024-03-02{NBSP}",
                 atc_code=f"{TAB}c03ca01 ", route=f"{NBSP}IV", dose=f"40{TAB}", dose_unit=f" mg{NBSP}",
                 encounter_id=f"{TAB}E1", rxnorm_code=f"4603{NBSP}")])
    assert con.execute(
        "SELECT s.status, s.analyte, s.fluid_class, t.unit, s.given_result_id, s.specimen_id, s.encounter_id, "
        "s.care_unit, strftime(s.collected_at, '%Y-%m-%d %H:%M') FROM stg_lab_rows AS s "
        "JOIN stg_lab_fields AS t ON t.row_id = s.row_id ORDER BY s.source_row").fetchall() == [
        ("loaded", "MG", "serum_plasma", "mg/dL", "R1", "S1", "E1", "MICU", T),
        ("out_of_scope", "K", "other", "mmol/L", None, None, None, None, T),
    ]
    assert con.execute(
        "SELECT status, drug, atc_code, route, dose, dose_unit, encounter_id, rxnorm_code, "
        "strftime(start_at, '%Y-%m-%d %H:%M'), strftime(stop_at, '%Y-%m-%d %H:%M') FROM stg_medication_rows"
    ).fetchall() == [("loaded", "Furosemide", "C03CA01", "IV", "40", "mg", "E1", "4603", "2024-03-01 10:00",
                      "2024-03-02 00:00")]


def test_a_result_id_padded_with_a_tab_is_the_same_result_across_files(tmp_path):
    # row 1 of the first extract is corrected by the second, whose id carries a tab and a no-break space
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_csv(inbox / "labs_1.csv", LAB_COLUMNS, [lab("p", T, "K", "3.0", "mmol/L", result_id="7")])
    write_csv(inbox / "labs_2.csv", LAB_COLUMNS, [lab("p", T, "K", "3.1", "mmol/L", result_id=f"{TAB}7{NBSP}")])
    con = connect(":memory:", Config())
    create_parameter_tables(con, Config())
    ingest_inbox(con, inbox, {}, Config())
    build_models(con, NORMALISE_MODELS)
    assert con.execute("SELECT status, value_num FROM stg_lab_rows ORDER BY row_id").fetchall() == [
        ("superseded", 3.0), ("loaded", 3.1)]


# --- the fluid rule (issue 16 item 2) ------------------------------------------------------------

def test_a_stated_fluid_wins_over_the_codes_fluid(tmp_path):
    con = build(tmp_path, [
        lab("ica_urine", T, "1994-3", "1.1", "mmol/L", fluid="urine"),      # 1 stated urine: out of scope
        lab("ica_blank", T, "1994-3", "1.1", "mmol/L"),                     # 2 code's fluid: whole blood, ICA ok
        lab("ica_blood", T, "1994-3", "1.1", "mmol/L", fluid="Blood"),      # 3 whole blood, ICA ok
        lab("ica_serum", T, "1994-3", "1.1", "mmol/L", fluid="serum"),      # 4 stated serum: in scope
        lab("k_blood", T, "2823-3", "4.0", "mmol/L", fluid="blood"),        # 5 serum K code, stated blood: out
        lab("k_blank", T, "2823-3", "4.0", "mmol/L"),                       # 6 serum K
        lab("gas_k_blank", T, "6298-4", "4.0", "mmol/L"),                   # 7 code's fluid: whole blood K, out
        lab("gas_k_plasma", T, "6298-4", "4.0", "mmol/L", fluid="plasma"),  # 8 stated plasma wins: in scope
        lab("ica_csf", T, "ICA", "1.1", "mmol/L", fluid="CSF"),             # 9 other fluid: out
    ])
    rows = con.execute("SELECT source_row, status, analyte, fluid_class FROM stg_lab_rows ORDER BY row_id").fetchall()
    assert rows == [
        (1, "out_of_scope", "ICA", "other"),
        (2, "loaded", "ICA", "whole_blood"),
        (3, "loaded", "ICA", "whole_blood"),
        (4, "loaded", "ICA", "serum_plasma"),
        (5, "out_of_scope", "K", "whole_blood"),
        (6, "loaded", "K", "serum_plasma"),
        (7, "out_of_scope", "K", "whole_blood"),
        (8, "loaded", "K", "serum_plasma"),
        (9, "out_of_scope", "ICA", "other"),
    ]


# --- malformed lines (issue 15 item 2) -----------------------------------------------------------

def test_malformed_lines_are_quarantined_first_and_counted_as_read(tmp_path):
    def malformed(con):
        add_malformed(con, "raw_labs", 4)                                   # every field null
        add_malformed(con, "raw_labs", 5, patient_id="p", collected_at=T,   # fields that would load
                      analyte="MG", value="1.8", unit="mg/dL")
        add_malformed(con, "raw_labs", 6, analyte="GLU")                    # would be out of scope
        add_malformed(con, "raw_medications", 2)

    con = build(tmp_path, [lab("p", T, "MG", "1.8", "mg/dL"), lab("", T, "MG", "1.8", "mg/dL"),
                           lab("p", T, "GLU", "90", "mg/dL")],
                meds=[med("p", "2024-03-01", "KCl")], models=BUILD_ORDER, malformed=malformed)
    assert fates(con) == {1: ("loaded", None), 2: ("quarantined", "missing_patient_id"),
                          3: ("out_of_scope", None), 4: ("quarantined", "malformed_row"),
                          5: ("quarantined", "malformed_row"), 6: ("quarantined", "malformed_row")}
    assert con.execute("SELECT source_row, status, reason FROM stg_medication_rows ORDER BY source_row").fetchall() == [
        (1, "loaded", None), (2, "quarantined", "malformed_row")]
    assert con.execute(
        "SELECT input_table, rows_read, rows_loaded, rows_out_of_scope, rows_quarantined FROM mart_row_accounting "
        "ORDER BY input_table").fetchall() == [("labs", 6, 1, 1, 4), ("medications", 2, 1, 0, 1)]
    assert con.execute(
        "SELECT input_table, source_row, parse_error FROM int_quarantine WHERE reason = 'malformed_row' "
        "ORDER BY input_table, source_row").fetchall() == [
        ("labs", 4, "unterminated quote"), ("labs", 5, "unterminated quote"), ("labs", 6, "unterminated quote"),
        ("medications", 2, "unterminated quote")]


def test_a_ragged_csv_line_is_a_malformed_row_even_without_a_patient(tmp_path):
    # row 2 has a blank patient and one field too many: malformed_row comes before missing_patient_id
    folder = tmp_path / "ragged"
    folder.mkdir()
    (folder / "labs.csv").write_text("patient_id,collected_at,analyte,value,unit\n"
                                     f"p1,{T},MG,1.8,mg/dL\n"
                                     f",{T},MG,1.8,mg/dL,extra\n"
                                     f"p1,{T},K,3.0,mmol/L\n", encoding="utf-8")
    (folder / "medications.csv").write_text("patient_id,start_at,drug\np1,2024-03-01,KCl\n", encoding="utf-8")
    config = Config(validation=Validation(max_malformed_fraction=0.5))
    con = connect(":memory:", config)
    create_parameter_tables(con, config)
    ingest_generic(con, folder, {}, config)
    build_models(con, BUILD_ORDER)
    assert fates(con) == {1: ("loaded", None), 2: ("quarantined", "malformed_row"), 3: ("loaded", None)}
    assert con.execute("SELECT rows_read, rows_loaded, rows_out_of_scope, rows_quarantined FROM mart_row_accounting "
                       "WHERE input_table = 'labs'").fetchall() == [(3, 2, 0, 1)]


# --- out-of-scope share of an incremental load (issue 15 item 2) ---------------------------------

def inbox_db(tmp_path: Path, files: list[tuple[int, int]], config: Config | None = None) -> Path:
    """One incremental run per lab file (in-scope MG rows, out-of-scope GLU rows), as a database file."""
    config = config or Config()
    inbox, path = tmp_path / "inbox", tmp_path / "inbox.duckdb"
    inbox.mkdir()
    con = connect(path, config)
    create_parameter_tables(con, config)
    for n, (in_scope, out_of_scope) in enumerate(files, start=1):
        rows = [lab(f"p{n}_{i}", T, "MG", "2.0", "mg/dL") for i in range(in_scope)]
        rows += [lab(f"p{n}_{i}", T, "GLU", "90", "mg/dL") for i in range(out_of_scope)]
        write_csv(inbox / f"labs_{n}.csv", LAB_COLUMNS, rows)
        ingest_inbox(con, inbox, {}, config)
        build_models(con, NORMALISE_MODELS)
    con.close()
    return path


def jump(db: Path) -> dict | None:
    summaries = run_suites(db, "normalise", Config())
    found = [e for s in summaries for e in s["expectations"] if e["id"] == "labs_out_of_scope_share_jump"]
    assert len(found) == 1 and found[0]["blocking"] is True
    failed = {e["id"] for s in summaries for e in s["expectations"] if not e["success"]}
    assert failed <= {"labs_out_of_scope_share_jump"}
    return None if found[0]["success"] else found[0]


def test_an_out_of_scope_share_jump_blocks(tmp_path):
    # 1/10 out of scope, then 5/10: 50% > 2 x 10% and > 10% + 5 points
    failure = jump(inbox_db(tmp_path, [(9, 1), (5, 5)]))
    assert failure is not None and failure["unexpected_count"] == 1
    assert failure["examples"] == [{"source_file": str(tmp_path / "inbox" / "labs_2.csv"), "rows_read": 10,
                                    "rows_out_of_scope": 5}]


def test_the_ratio_comes_from_the_configuration(tmp_path):
    # the same 10% -> 50% passes when validation.max_out_of_scope_share_ratio is 6 (50% < 60%)
    config = Config(validation=Validation(max_out_of_scope_share_ratio=6.0))
    assert jump(inbox_db(tmp_path, [(9, 1), (5, 5)], config)) is None


@pytest.mark.parametrize("files", [
    [(9, 1), (8, 2)],      # 20% is exactly 2 x 10%: not above the ratio
    [(20, 0), (24, 1)],    # 0% -> 4%: above 2 x 0 but not 5 points above
    [(10, 0)],             # a first load has nothing to compare with
    [(5, 5), (9, 1)],      # a falling share
])
def test_no_jump_passes(tmp_path, files):
    assert jump(inbox_db(tmp_path, files)) is None


def test_the_share_is_compared_with_every_earlier_file_pooled(tmp_path):
    # 2/10 (20%), then 0/30 (a fall), then 4/20 = 20%: against the pooled 2/40 = 5% it is above 2 x 5%
    # and 5 + 5 points, so file 3 blocks (against file 1 alone, or the mean share 10%, it would not)
    failure = jump(inbox_db(tmp_path, [(8, 2), (30, 0), (16, 4)]))
    assert failure is not None
    assert failure["examples"] == [{"source_file": str(tmp_path / "inbox" / "labs_3.csv"), "rows_read": 20,
                                    "rows_out_of_scope": 4}]


# The time grammar (docs/definitions.md section 2): YYYY-MM-DD, a space or T, HH:MM, optional :SS
# with optional fraction; a valid calendar time. The common shape is parsed by a format that must
# give back its own text; every other shape goes to the grammar, so both paths are exercised here.
@pytest.mark.parametrize("text, expected", [
    ("2024-03-01 08:00:00", "2024-03-01 08:00:00"),
    ("2024-03-01T08:00:00", "2024-03-01 08:00:00"),
    ("2024-03-01 08:00", "2024-03-01 08:00:00"),
    ("2024-03-01T08:05", "2024-03-01 08:05:00"),
    ("2024-03-01 08:00:00.250", "2024-03-01 08:00:00.250"),
    ("2024-02-29 23:59:59", "2024-02-29 23:59:59"),
    ("2023-02-29 08:00:00", None),      # no such day
    ("2024-03-01 24:00:00", "2024-03-02 00:00:00"),  # ISO 8601's end of day, as the engine's cast reads it
    ("2024-03-01 25:00:00", None),      # no such hour
    ("2024-3-1 08:00:00", None),        # the format alone would read it; the grammar does not
    ("2024-03-01 8:00:00", None),
    ("2024-03-01T08:00:00Z", None),     # an offset
    ("2024-03-01  08:00:00", None),     # two spaces
    ("2024-03-01T08:00:0T", None),
    ("2024-03-01", None),
])
def test_times_follow_the_grammar_whichever_path_reads_them(tmp_path, text, expected):
    con = build(tmp_path, [lab("p", text, "MG", "1.8", "mg/dL")])
    row = con.execute("SELECT reason, strftime(collected_at, '%Y-%m-%d %H:%M:%S.%g') FROM stg_lab_rows").fetchone()
    if expected is None:
        assert row == ("bad_timestamp", None)
    else:
        assert row[0] is None and row[1].startswith(expected if "." in expected else expected + ".")


@pytest.mark.parametrize("value, censored, number", [
    ("<=0.5", True, 0.5), (">=4", True, 4.0), ("<0.5", True, 0.5), (">4", True, 4.0),
    ("=4", None, None), ("=<4", None, None), ("0.5", False, 0.5),
])
def test_the_censor_sign_is_read_from_the_first_characters(tmp_path, value, censored, number):
    con = build(tmp_path, [lab("p", T, "MG", value, "mg/dL")])
    row = con.execute("SELECT reason, censored, value_num FROM stg_lab_rows").fetchone()
    if number is None:
        assert row[0] == "non_numeric_value" and row[2] is None
    else:
        assert row == (None, censored, number)
