"""Real sources: the MIMIC-IV adapter on the real MIMIC-IV demo (read in place, ODbL) and the OMOP
CDM adapter on a small hand-built extract."""
from __future__ import annotations

import csv
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from builder import fates
from pipelines.config import Config
from pipelines.db import connect, create_parameter_tables
from pipelines.ingest import ingest
from pipelines.models import BUILD_ORDER, NORMALISE_MODELS, build_models

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIMIC_IV = PROJECT_ROOT.parent / "shared" / "data" / "mimic-iv-demo-2.2"
needs_mimic = pytest.mark.skipif(not (MIMIC_IV / "hosp").is_dir(), reason="../shared/data/mimic-iv-demo-2.2 not present")


def build(source, folder, models=BUILD_ORDER, config=None):
    config = config or Config()
    con = connect(":memory:", config)
    create_parameter_tables(con, config)
    inputs = ingest(con, source, folder, config)
    build_models(con, models)
    return con, inputs


def count_independently(sql: str) -> int:
    with duckdb.connect() as con:
        return con.execute(sql.replace("LABEVENTS", f"read_csv('{MIMIC_IV / 'hosp' / 'labevents.csv.gz'}', "
                                                    "all_varchar = true)")).fetchone()[0]


@pytest.fixture(scope="module")
def mimic_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mimic")
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--source", "mimic-iv", "--input",
                           str(MIMIC_IV), "--out", str(out / "out"), "--db", str(out / "m.duckdb")],
                          capture_output=True, text=True, timeout=900, cwd=out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@needs_mimic
@pytest.mark.slow
def test_mimic_iv_demo_end_to_end_accounting_and_hand_counted_magnesium(mimic_run):
    # the exact per-file accounting is restricted (manifest.json's small counts are suppressed)
    accounting = json.loads((mimic_run / "out" / "restricted" / "accounting.json").read_text())
    results = json.loads((mimic_run / "out" / "results.json").read_text())
    labs = next(i for i in accounting["inputs"] if i["table"] == "labs")
    meds = next(i for i in accounting["inputs"] if i["table"] == "medications")
    for item in (labs, meds):
        assert item["rows_read"] == item["rows_loaded"] + item["rows_out_of_scope"] + item["rows_quarantined"]
    assert labs["rows_read"] == count_independently("SELECT count(*) FROM LABEVENTS") == 107_727
    in_scope = ("'50960','50971','50983','50970','50893','50808','50862'")
    assert labs["rows_read"] - labs["rows_out_of_scope"] == count_independently(
        f"SELECT count(*) FROM LABEVENTS WHERE itemid IN ({in_scope})")
    # Mg: every itemid-50960 row has a number and mg/dL; below 1.7 mg/dL is hypomagnesemia.
    assert results["counts"]["mg_results"] == count_independently(
        "SELECT count(*) FROM LABEVENTS WHERE itemid = '50960' AND valuenum IS NOT NULL") == 2470
    # 182 low results, of which 181 have potassium measured within 24 h: 182 would give away the one
    # without, so complementary suppression withholds it from the shared counts; the database has it
    assert results["counts"]["hypomg_results"] is None
    with duckdb.connect(str(mimic_run / "m.duckdb"), read_only=True) as con:
        hypomg = con.execute("SELECT count(*) FROM int_lab_flags WHERE is_hypomagnesemia").fetchone()[0]
    assert hypomg == count_independently(
        "SELECT count(*) FROM LABEVENTS WHERE itemid = '50960' AND CAST(valuenum AS DOUBLE) < 1.7") == 182
    assert results["counts"]["patients"] == 100
    # The three K rows with neither valuenum nor value are the only quarantined lab rows.
    assert labs["rows_quarantined"] == count_independently(
        f"SELECT count(*) FROM LABEVENTS WHERE itemid IN ({in_scope}) AND valuenum IS NULL AND value IS NULL") == 3
    assert meds["rows_read"] == 18_087
    assert len(results["cooccurrence"]) == 48
    assert results["audit"]["overall"]["episodes"] > 0
    assert any(u["care_unit"] for u in results["audit"]["by_care_unit"])


@needs_mimic
def test_mimic_iv_whole_blood_items_are_out_of_scope_and_plain_csv_reads(tmp_path):
    root = tmp_path / "mimic"
    (root / "hosp").mkdir(parents=True)
    for name in ("d_labitems", "prescriptions", "transfers"):
        shutil.copy(MIMIC_IV / "hosp" / f"{name}.csv.gz", root / "hosp")
    # a plain .csv labevents with one row of each kind
    with gzip.open(MIMIC_IV / "hosp" / "labevents.csv.gz", "rt") as f:
        reader = csv.DictReader(f)
        wanted, rows = {"50960", "50822", "50808", "51221"}, []
        for row in reader:
            if row["itemid"] in wanted:
                rows.append(row)
                wanted.discard(row["itemid"])
            if not wanted:
                break
    with open(root / "hosp" / "labevents.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    con, inputs = build("mimic-iv", root, NORMALISE_MODELS)
    got = {r[0]: (r[1], r[2]) for r in con.execute(
        "SELECT t.analyte_code, s.status, s.fluid_class FROM stg_lab_rows AS s "
        "JOIN stg_lab_fields AS t ON t.row_id = s.row_id").fetchall()}
    assert got["MG"] == ("loaded", "serum_plasma")
    assert got["K"] == ("out_of_scope", "whole_blood")      # 50822, blood-gas potassium
    assert got["ICA"] == ("loaded", "whole_blood")           # 50808, free calcium
    assert got["MIMIC-IV ITEMID 51221"][0] == "out_of_scope"
    assert inputs[0].rows_read == 4


# ---- OMOP ---------------------------------------------------------------------------------------

CONCEPTS = [
    # concept_id, concept_name, vocabulary_id, concept_code
    ("3001420", "Magnesium [Mass/volume] in Serum or Plasma", "LOINC", "19123-9"),
    ("3033836", "Magnesium [Moles/volume] in Serum or Plasma", "LOINC", "2601-3"),
    ("3023103", "Potassium [Moles/volume] in Serum or Plasma", "LOINC", "2823-3"),
    ("3005456", "Potassium [Moles/volume] in Blood", "LOINC", "6298-4"),
    ("3004501", "Glucose [Mass/volume] in Serum or Plasma", "LOINC", "2345-7"),
    ("8840", "milligram per deciliter", "UCUM", "mg/dL"),
    ("8753", "millimole per liter", "UCUM", "mmol/L"),
    ("9557", "milliequivalent per liter", "UCUM", "meq/L"),
    ("4171756", "<", "Meas Value Operator", "<"),
    ("1361711", "magnesium sulfate 500 MG/ML Injectable Solution", "RxNorm", "1361711"),
    ("19019193", "pantoprazole 40 MG Delayed Release Oral Tablet", "RxNorm", "314200"),
    ("21600095", "Proton pump inhibitors", "ATC", "A02BC"),
    ("21600096", "pantoprazole", "ATC", "A02BC02"),
    ("4132161", "Oral", "Route", "26643006"),
]
MEASUREMENTS = [
    # id, person, concept, date, datetime, operator, value_as_number, unit_concept, unit_source, value_source
    ("1", "101", "3001420", "2024-03-01", "2024-03-01 08:00:00", "", "1.5", "8840", "mg/dL", "1.5"),          # mass, low
    ("2", "101", "3033836", "2024-03-01", "2024-03-01 08:00:00", "", "0.70", "8753", "mmol/L", "0.70"),       # molar, not low
    ("3", "102", "3001420", "2024-03-02", "2024-03-02 09:00:00", "", "1.6", "0", "mg/dl", "1.6"),             # unit concept 0
    ("4", "102", "3023103", "2024-03-02", "2024-03-02 09:00:00", "", "3.1", "9557", "mEq/L", "3.1"),          # K meq
    ("5", "103", "3033836", "2024-03-03", "2024-03-03 10:00:00", "4171756", "0.5", "8753", "mmol/L", "<0.5"),  # censored
    ("6", "103", "3005456", "2024-03-03", "2024-03-03 10:00:00", "", "4.0", "8753", "mmol/L", "4.0"),         # whole blood K
    ("7", "104", "3004501", "2024-03-04", "2024-03-04 10:00:00", "", "100", "8840", "mg/dL", "100"),          # glucose
    ("8", "104", "3001420", "2024-03-04", "", "", "1.9", "8840", "mg/dL", "1.9"),                             # date only
    ("9", "104", "3001420", "2024-03-05", "2024-03-05 10:00:00", "", "", "8840", "mg/dL", "HEMOLYZED"),       # text
    ("10", "105", "3001420", "2024-03-06", "2024-03-06 10:00:00", "", "1.8", "", "", ""),                     # no unit at all
]
DRUGS = [
    # id, person, concept, start_date, start_datetime, end_date, end_datetime, route, source value
    ("1", "101", "1361711", "2024-03-01", "2024-03-01 09:00:00", "2024-03-01", "", "", "MAG SULF"),
    ("2", "102", "0", "2024-03-02", "", "2024-03-03", "", "4132161", "Pantoprazole Sodium 40mg"),
    ("3", "103", "19019193", "2024-03-03", "", "", "", "4132161", ""),
]


def write_omop(folder: Path, with_ancestor: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)

    def write(name, header, rows):
        with open(folder / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)

    write("concept", ["concept_id", "concept_name", "vocabulary_id", "concept_code"], CONCEPTS)
    write("measurement", ["measurement_id", "person_id", "measurement_concept_id", "measurement_date",
                          "measurement_datetime", "operator_concept_id", "value_as_number", "unit_concept_id",
                          "unit_source_value", "value_source_value"], MEASUREMENTS)
    write("drug_exposure", ["drug_exposure_id", "person_id", "drug_concept_id", "drug_exposure_start_date",
                            "drug_exposure_start_datetime", "drug_exposure_end_date", "drug_exposure_end_datetime",
                            "route_concept_id", "drug_source_value"], DRUGS)
    if with_ancestor:
        write("concept_ancestor", ["ancestor_concept_id", "descendant_concept_id"],
              [("21600095", "19019193"), ("21600096", "19019193")])
    return folder


def test_omop_measurements_resolve_through_concept(tmp_path):
    con, inputs = build("omop", write_omop(tmp_path / "cdm"), NORMALISE_MODELS)
    assert fates(con) == {
        1: ("loaded", None), 2: ("loaded", None), 3: ("loaded", None), 4: ("loaded", None), 5: ("loaded", None),
        6: ("out_of_scope", None), 7: ("out_of_scope", None), 8: ("quarantined", "bad_timestamp"),
        9: ("quarantined", "non_numeric_value"), 10: ("quarantined", "unknown_unit"),
    }
    rows = con.execute("SELECT r.result_id, r.analyte, r.value_canonical, r.censored, s.unit FROM int_lab_results AS r "
                       "JOIN stg_lab_fields AS s USING (row_id) ORDER BY row_id").fetchall()
    assert rows == [("1", "MG", 1.5 * 0.4114, False, "mg/dL"), ("2", "MG", 0.70, False, "mmol/L"),
                    ("3", "MG", 1.6 * 0.4114, False, "mg/dl"), ("4", "K", 3.1, False, "meq/L"),
                    ("5", "MG", 0.5, True, "mmol/L")]
    assert [i.rows_read for i in inputs] == [10, 3]


def test_omop_drugs_by_concept_name_source_value_and_atc(tmp_path):
    con, _ = build("omop", write_omop(tmp_path / "cdm"))
    meds = con.execute("SELECT drug, route, atc_code, strftime(start_at, '%Y-%m-%d %H:%M'), "
                       "strftime(stop_at, '%Y-%m-%d %H:%M:%S') FROM stg_medication_rows ORDER BY row_id").fetchall()
    assert meds == [
        ("magnesium sulfate 500 MG/ML Injectable Solution", None, None, "2024-03-01 09:00", "2024-03-01 23:59:59"),
        ("Pantoprazole Sodium 40mg", "Oral", None, "2024-03-02 00:00", "2024-03-03 23:59:59"),
        ("pantoprazole 40 MG Delayed Release Oral Tablet", "Oral", "A02BC02", "2024-03-03 00:00", None),
    ]
    classes = con.execute("SELECT row_id, drug_class FROM int_medication_classes ORDER BY row_id").fetchall()
    assert classes == [(1, "mg_supplement"), (2, "ppi"), (3, "ppi")]


def test_omop_without_ancestor_tables_still_loads(tmp_path):
    con, _ = build("omop", write_omop(tmp_path / "cdm", with_ancestor=False), NORMALISE_MODELS)
    assert con.execute("SELECT count(*) FROM stg_medication_rows WHERE atc_code IS NOT NULL").fetchone()[0] == 0


def test_omop_missing_table_is_a_clear_error(tmp_path):
    from pipelines.errors import InputError

    folder = write_omop(tmp_path / "cdm")
    (folder / "concept.csv").unlink()
    with pytest.raises(InputError, match="OMOP table concept not found"):
        build("omop", folder, NORMALISE_MODELS)


def test_omop_a_repeated_concept_id_is_refused_before_any_row_is_read_twice(tmp_path):
    from pipelines.errors import InputError

    folder = write_omop(tmp_path / "cdm")
    with open(folder / "concept.csv", "a", newline="") as f:
        csv.writer(f).writerow(CONCEPTS[2])  # potassium's concept again, as data row len(CONCEPTS) + 1
    with pytest.raises(InputError, match=rf"column 'concept_id': concept_id {CONCEPTS[2][0]} repeats "
                                         rf"\(rows 3 and {len(CONCEPTS) + 1}\)"):
        build("omop", folder, NORMALISE_MODELS)


@needs_mimic
def test_mimic_iv_demo_converted_to_the_generic_layout_gives_the_same_results(tmp_path):
    """The same demo through the generic adapter (converted by this test) and through the MIMIC-IV
    adapter: the co-occurrence counts must agree exactly."""
    from pipelines.analyse import build_results

    hosp = MIMIC_IV / "hosp"
    generic = tmp_path / "generic"
    generic.mkdir()
    with duckdb.connect() as con:
        con.execute(f"""
            COPY (
                SELECT l.subject_id AS patient_id, l.charttime AS collected_at,
                       coalesce(i.analyte, 'ITEM' || l.itemid) AS analyte,
                       coalesce(l.valuenum, l.value) AS value,
                       coalesce(l.valueuom, i.default_unit) AS unit,
                       l.labevent_id AS result_id, l.specimen_id, l.hadm_id AS encounter_id, i.fluid
                FROM read_csv('{hosp / 'labevents.csv.gz'}', all_varchar = true) AS l
                LEFT JOIN read_csv('{PROJECT_ROOT / 'sql' / 'seeds' / 'mimic_iv_items.csv'}', all_varchar = true) AS i
                    ON i.itemid = l.itemid
            ) TO '{generic / 'labs.csv'}' (HEADER)""")
        con.execute(f"""
            COPY (SELECT subject_id AS patient_id, starttime AS start_at, stoptime AS stop_at, drug, route,
                         hadm_id AS encounter_id
                  FROM read_csv('{hosp / 'prescriptions.csv.gz'}', all_varchar = true)) TO '{generic / 'medications.csv'}' (HEADER)""")
    cfg = Config()
    via_generic, _ = build("generic", generic)
    via_mimic, _ = build("mimic-iv", MIMIC_IV)
    a, b = build_results(via_generic, cfg), build_results(via_mimic, cfg)
    assert a["counts"] == b["counts"]
    assert a["cooccurrence"] == b["cooccurrence"]
    assert a["sensitivity"] == b["sensitivity"]
    assert a["counts"]["lab_rows_read"] == 107_727
