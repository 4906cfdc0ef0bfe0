"""The identifier guard (analysis plan section 7): column names and values that look like direct
identifiers are refused before anything is loaded, verified columns can be exempted, the real
MIMIC-IV demo passes, and rare care units reach shared outputs only grouped as "other"."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from builder import lab, make_db, med, write_generic
from pipelines.analyse import build_results
from pipelines.config import Config, Privacy
from pipelines.db import connect, create_parameter_tables
from pipelines.errors import InputError
from pipelines.ingest import ingest_generic
from pipelines.ingest.identifiers import check_values, identifier_term

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIMIC_IV_HOSP = PROJECT_ROOT.parent / "shared" / "data" / "mimic-iv-demo-2.2" / "hosp"
T = "2024-03-01 08:00:00"


def ingest(folder: Path, config: Config | None = None) -> duckdb.DuckDBPyConnection:
    """The real generic ingest on a fresh in-memory database with the run's parameter tables."""
    config = config or Config()
    con = connect(":memory:", config)
    create_parameter_tables(con, config)
    ingest_generic(con, folder, config.columns)
    return con


def labs_with_extra_column(tmp_path: Path, column: str, value: str = "x") -> Path:
    folder = tmp_path / "in"
    folder.mkdir(parents=True)
    header = ["patient_id", "collected_at", "analyte", "value", "unit", column]
    with open(folder / "labs.csv", "w", encoding="utf-8", newline="") as f:
        f.write(",".join(f'"{h}"' for h in header) + "\n")
        f.write(f"p1,{T},MG,1.8,mg/dL,{value}\n")
    (folder / "medications.csv").write_text("patient_id,start_at,drug\n")
    return folder


# --- column names ---------------------------------------------------------------------------------

REFUSED_COLUMNS = {
    "mrn": "mrn", "dob": "dob", "date_of_birth": "date of birth", "e-mail": "e mail", "full name": "full name",
    "zip": "zip", "tel": "tel", "fax": "fax", "nhs_number": "nhs number", "birthdate": "birthdate",
    "Patient Name": "patient name", "PhoneNumber": "phone", "name": "name", "DateOfBirth": "date of birth",
    "dateofbirth": "date of birth", "EMail": "e mail", "patientname": "patient name", "Address1": "address",
    "tel_no": "tel", "ZipCode": "zip", "zipcode": "zipcode", "Postal.Code": "postal code",
    "medical_record_number": "medical record",
    "SSN": "ssn", "last_name": "last name", "Surname": "surname", "cell": "cell", "mobile": "mobile",
    "street": "street", "telephone": "telephone", "email": "email",
}
ACCEPTED_COLUMNS = ("patient_id", "encounter_id", "specimen_id", "care_unit", "unit", "drug", "route", "analyte",
                    "result_id", "fluid", "dose_unit", "drug_name", "hotel", "unit_name", "red_cell_count",
                    "telemetry_bed", "atc_code")


@pytest.mark.parametrize("column, term", REFUSED_COLUMNS.items())
def test_identifier_column_names_are_refused_naming_file_column_and_term(tmp_path, column, term):
    folder = labs_with_extra_column(tmp_path, column)
    with pytest.raises(InputError) as err:
        ingest(folder)
    assert str(err.value) == (f"{folder / 'labs.csv'}: column {column!r} looks like a direct identifier "
                              f"(matches {term!r}); inputs must be de-identified (nothing was loaded)")


@pytest.mark.parametrize("column", ACCEPTED_COLUMNS)
def test_the_projects_own_and_lookalike_column_names_are_accepted(column):
    assert identifier_term(column) is None


def test_a_file_with_every_accepted_column_loads(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    extra = [c for c in ACCEPTED_COLUMNS if c not in ("patient_id", "analyte", "unit")]
    (folder / "labs.csv").write_text("patient_id,collected_at,analyte,value,unit," + ",".join(extra) + "\n"
                                     + f"p1,{T},MG,1.8,mg/dL," + ",".join("7" for _ in extra) + "\n")
    (folder / "medications.csv").write_text("patient_id,start_at,drug,route,dose_unit\np1,2024-03-01,KCl,PO,mEq\n")
    con = ingest(folder)
    assert con.execute("SELECT count(*) FROM raw_labs").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM raw_medications").fetchone()[0] == 1


# --- values ---------------------------------------------------------------------------------------

PLANTED = [
    ("John Smith", "a personal name"),
    ("Mrs Roe", "a personal name"),
    ("Smith, Mary", "a personal name"),
    ("12 Main Street", "a street address"),
    ("ICU at 12 Main St", "a street address"),
    ("ICU 555-123-4567", "a phone number"),
    ("555 123 4567", "a phone number"),
    ("(555) 123-4567", "a phone number"),
    ("SSN 123-45-6789", "a social security number"),
    ("bed jane.roe@example.org", "an e-mail address"),
    ("123456789", "a long bare number"),
    ("ICU 5551234567", "a long bare number"),
    # the first pattern in the guard's order is named: phone comes before the name
    ("Furosemide for Jane Roe 555 123 4567", "a phone number"),
    ("Furosemide for Jane Roe", "a personal name"),
]
# column -> (file, the row builder taking the column's value)
FREE_TEXT = {
    "care_unit": ("labs.csv", lambda v: lab("p", T, "MG", "1.8", "mg/dL", care_unit=v)),
    "fluid": ("labs.csv", lambda v: lab("p", T, "MG", "1.8", "mg/dL", fluid=v)),
    "encounter_id": ("labs.csv", lambda v: lab("p", T, "MG", "1.8", "mg/dL", encounter_id=v)),
    "drug": ("medications.csv", lambda v: med("p", T, v)),
    "route": ("medications.csv", lambda v: med("p", T, "KCl", route=v)),
}
CLEAN = {"care_unit": "ICU", "fluid": "serum", "encounter_id": "E1", "drug": "Furosemide", "route": "PO"}


def planted_input(tmp_path: Path, column: str, value: str) -> tuple[Path, str]:
    """Rows 1-2 clean, row 3 (and 4) planted in `column`; the other file clean."""
    file, row = FREE_TEXT[column]
    rows = [row(CLEAN[column]), row(CLEAN[column]), row(value), row(value)]
    labs = rows if file == "labs.csv" else [lab("p", T, "MG", "1.8", "mg/dL")]
    meds = rows if file == "medications.csv" else [med("p", T, "KCl")]
    return write_generic(tmp_path / "in", labs=labs, meds=meds), file


# keys are long numbers by nature: a long bare number in encounter_id is accepted (tested below)
@pytest.mark.parametrize("column, value, pattern", [
    (column, value, pattern) for column in FREE_TEXT for value, pattern in PLANTED
    if not (column == "encounter_id" and pattern == "a long bare number")
])
def test_planted_identifiers_anywhere_in_free_text_are_refused_with_file_column_row(tmp_path, column, value, pattern):
    folder, file = planted_input(tmp_path, column, value)
    with pytest.raises(InputError) as err:
        ingest(folder)
    assert str(err.value) == (f"{folder / file}: row 3, column {column!r} holds what looks like {pattern}; "
                              "inputs must be de-identified (nothing was loaded)")


def test_a_refused_labs_file_loads_nothing(tmp_path):
    folder, _ = planted_input(tmp_path, "care_unit", "John Smith")
    config = Config()
    con = connect(":memory:", config)
    create_parameter_tables(con, config)
    with pytest.raises(InputError):
        ingest_generic(con, folder, config.columns)
    assert con.execute("SELECT count(*) FROM raw_labs").fetchone()[0] == 0


@pytest.mark.parametrize("value", ["123456789", "1234567890", "20000001"])
def test_long_numbers_are_accepted_as_encounter_ids_but_not_as_care_units(tmp_path, value):
    folder, _ = planted_input(tmp_path / "id", "encounter_id", value)
    assert ingest(folder).execute("SELECT count(*) FROM raw_labs WHERE encounter_id = ?", [value]).fetchone()[0] == 2
    folder, _ = planted_input(tmp_path / "unit", "care_unit", value)
    if len(value) < 9:
        assert ingest(folder).execute("SELECT count(*) FROM raw_labs WHERE care_unit = ?", [value]).fetchone()[0] == 2
        return
    with pytest.raises(InputError, match="row 3, column 'care_unit' holds what looks like a long bare number"):
        ingest(folder)


@pytest.mark.parametrize("value", [
    "Medical Intensive Care Unit (MICU)", "Med/Surg/GYN", "Furosemide 40 mg", "MS Contin", "Omeprazole DR",
    "Potassium Chloride 20 mEq", "St. John's Wort", "Magnesium Sulfate 2 gm / 50 mL", "Sodium Chloride 0.9%  Flush",
    "Ward 12-3456", "1.234567890", "Hotel ward",
])
def test_lookalike_free_text_is_accepted(tmp_path, value):
    folder, _ = planted_input(tmp_path, "care_unit", value)
    assert ingest(folder).execute("SELECT count(*) FROM raw_labs WHERE care_unit = ?", [value]).fetchone()[0] == 2


def test_allow_columns_exempts_names_and_values(tmp_path):
    folder, _ = planted_input(tmp_path / "v", "care_unit", "John Smith")
    config = Config(privacy=Privacy(allow_columns=("Care_Unit",)))
    assert ingest(folder, config).execute("SELECT count(*) FROM raw_labs WHERE care_unit = 'John Smith'"
                                          ).fetchone()[0] == 2
    with pytest.raises(InputError, match="column 'care_unit' holds what looks like a personal name"):
        ingest(folder, Config(privacy=Privacy(allow_columns=("drug",))))
    folder = labs_with_extra_column(tmp_path / "n", "tel_code", "A1")
    assert ingest(folder, Config(privacy=Privacy(allow_columns=("tel_code",)))).execute(
        "SELECT count(*) FROM raw_labs").fetchone()[0] == 1


@pytest.mark.slow
def test_cli_refuses_a_planted_drug_with_exit_2_one_line_and_writes_nothing(tmp_path):
    folder, _ = planted_input(tmp_path, "drug", "Furosemide for Jane Roe 555 123 4567")
    out, db = tmp_path / "out", tmp_path / "out.duckdb"
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--source", "generic", "--input",
                           str(folder), "--out", str(out), "--db", str(db)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert (f"{folder / 'medications.csv'}: row 3, column 'drug' holds what looks like a phone number"
            in " ".join(proc.stderr.split()))
    assert not list(tmp_path.rglob("results.json")) and not list(tmp_path.rglob("report.html"))
    assert not db.exists()


# --- real data must pass --------------------------------------------------------------------------

@pytest.mark.skipif(not MIMIC_IV_HOSP.is_dir(), reason="../shared/data/mimic-iv-demo-2.2 not present")
@pytest.mark.parametrize("file, columns", [
    ("transfers.csv.gz", ["subject_id", "hadm_id", "careunit"]),
    ("prescriptions.csv.gz", ["subject_id", "hadm_id", "drug", "route"]),
])
def test_mimic_iv_demo_free_text_passes_the_guard(file, columns):
    path = MIMIC_IV_HOSP / file
    with duckdb.connect() as con:
        con.execute("CREATE TABLE t AS SELECT *, row_number() OVER () AS source_row "
                    "FROM read_csv(?, all_varchar = true)", [str(path)])
        assert con.execute("SELECT count(DISTINCT " + columns[-1] + ") FROM t").fetchone()[0] > 20
        check_values(con, path, "t", columns)  # raises InputError on any match


@pytest.mark.parametrize("file", ["labs.csv", "medications.csv"])
def test_data_samples_pass_the_guard(file):
    path = PROJECT_ROOT / "data_samples" / file
    with duckdb.connect() as con:
        con.execute("CREATE TABLE t AS SELECT *, row_number() OVER () AS source_row "
                    "FROM read_csv(?, all_varchar = true)", [str(path)])
        columns = [r[0] for r in con.execute("DESCRIBE t").fetchall() if r[0] != "source_row"]
        check_values(con, path, "t", [c for c in columns if c not in ("collected_at", "value", "start_at",
                                                                      "stop_at")])


# --- rare care units are grouped as "other" -------------------------------------------------------

def k_episode(patient: str, unit: str, day: int) -> dict:
    """One hypokalemia episode (a low K) in `unit`; days apart are separate episodes (gap > 72 h)."""
    return lab(patient, f"2024-03-{day:02d} 08:00:00", "K", "3.0", "mmol/L", care_unit=unit)


# ICU: 3 patients (3 episodes); Ward: 1 patient with 2 episodes; Rare: 1 patient (1 episode);
# a patient with no unit is in the overall row only.
UNIT_EPISODES = [k_episode("icu_1", "ICU", 1), k_episode("icu_2", "ICU", 1), k_episode("icu_3", "ICU", 1),
                 k_episode("ward_1", "Ward", 1), k_episode("ward_1", "Ward", 10),
                 k_episode("rare_1", "John's Room", 1), lab("nounit", "2024-03-01 08:00:00", "K", "3.0", "mmol/L")]


def care_units(con) -> dict[str, int]:
    return dict(con.execute("SELECT group_value, episodes FROM mart_audit WHERE grouping = 'care_unit'").fetchall())


@pytest.mark.parametrize("min_cell_size, expected", [
    (0, {"ICU": 3, "Ward": 2, "John's Room": 1}),
    (1, {"ICU": 3, "Ward": 2, "John's Room": 1}),
    (2, {"ICU": 3, "other": 3}),  # Ward has 2 episodes but 1 patient
    (3, {"ICU": 3, "other": 3}),
    (4, {"other": 6}),
])
def test_care_units_with_fewer_than_min_cell_size_patients_become_other(tmp_path, min_cell_size, expected):
    con = make_db(tmp_path, labs=UNIT_EPISODES, config=Config(privacy=Privacy(min_cell_size=min_cell_size)))
    assert con.execute("SELECT episodes FROM mart_audit WHERE grouping = 'overall'").fetchone()[0] == 7
    assert care_units(con) == expected


def test_rare_care_unit_names_never_reach_results(tmp_path):
    config = Config(privacy=Privacy(min_cell_size=2))
    results = build_results(make_db(tmp_path, labs=UNIT_EPISODES, config=config), config)
    assert sorted(u["care_unit"] for u in results["audit"]["by_care_unit"]) == ["ICU", "other"]
    assert "John's Room" not in json.dumps(results)
