"""Demographics (docs/definitions.md section 1, Demographics; section 4, Strata): the optional patients
table of each source, its row accounting and identifier guard, age band and sex strata that sum to every
row, and the age-sex standardised prevalence, on hand-made rows whose answers were worked out by hand."""
from __future__ import annotations

import pytest

from builder import make_db, write_csv
from pipelines.analyse import build_results
from pipelines.config import Config, Privacy, Strata
from pipelines.epi import age_band, band_label
from pipelines.errors import InputError
from pipelines.ingest.patients import load_patients
from pipelines.models import MART_MODELS, build_models
from pipelines.stats import Z_95
from test_epi_strata import stratified_labs, strata_of

PATIENTS = [
    # a0, a1: female, born 1950 (73 in 2023: 65-79); a2, a3: male, born 1990 (33: 18-44)
    {"patient_id": "a0", "sex": "F", "birth_year": "1950"}, {"patient_id": "a1", "sex": "female", "birth_year": "1950"},
    {"patient_id": "a2", "sex": "M", "birth_year": "1990"}, {"patient_id": "a3", "sex": "male", "birth_year": "1990"},
    # b0-b2: female, 50 at their first result (2024): 45-64; b3, b4: male, born 1940 (84: 80+)
    *({"patient_id": f"b{i}", "sex": "F", "age_at_first_result": "50"} for i in range(3)),
    {"patient_id": "b3", "sex": "M", "birth_year": "1940"}, {"patient_id": "b4", "sex": "M", "birth_year": "1940"},
    # quarantined: b5's birth year is not a number, a0 twice (the later row), a row without patient
    {"patient_id": "b5", "sex": "M", "birth_year": "abc"},
    {"patient_id": "a0", "sex": "M", "birth_year": "1900"},
    {"patient_id": "", "sex": "F", "birth_year": "1960"},
]
COLUMNS = ("patient_id", "sex", "birth_year", "age_at_first_result")


def with_patients(tmp_path, config, patients=PATIENTS, columns=COLUMNS, source="generic", where=None):
    con = make_db(tmp_path, labs=stratified_labs(), config=config)
    folder = where or tmp_path / "input"
    write_csv(folder / ("patients.csv" if source == "generic" else "hosp/patients.csv"), columns, patients)
    load_patients(con, source, folder, config)
    build_models(con, MART_MODELS)
    return con


def test_age_bands_of_the_issue():
    bands = (18.0, 45.0, 65.0, 80.0)
    assert [band_label(i, bands) for i in range(5)] == ["<18", "18-44", "45-64", "65-79", "80+"]
    assert [age_band(a, bands) for a in (17, 18, 44, 45, 79, 80, 104, None, -1, 131)] == [
        "<18", "18-44", "18-44", "45-64", "65-79", "80+", "80+", "unknown", "unknown", "unknown"]


def test_age_and_sex_strata_accounting_and_standardisation(tmp_path):
    config = Config(privacy=Privacy(min_cell_size=0))
    con = with_patients(tmp_path, config)
    results = build_results(con, config)
    sexes = {k: (v["numerator"], v["denominator"]) for k, v in strata_of(results, "sex").items()}
    assert sexes == {"female": (4, 8), "male": (0, 6), "unknown": (1, 3)}
    ages = {k: (v["numerator"], v["denominator"]) for k, v in strata_of(results, "age_band").items()}
    assert ages == {"18-44": (0, 2), "45-64": (2, 6), "65-79": (2, 2), "80+": (0, 4), "unknown": (1, 3)}
    assert list(ages) == ["18-44", "45-64", "65-79", "80+", "unknown"]
    for row in results["cooccurrence"]:  # every kind of stratum adds up to every row
        for stratum in ("year", "care_unit", "age_band", "sex"):
            parts = [r for r in results["strata"]["cooccurrence"] if r["stratum"] == stratum and
                     (r["abnormality"], r["direction"], r["window"], r["level"])
                     == (row["abnormality"], row["direction"], row["window"], row["level"])]
            assert sum(p["denominator"] for p in parts) == row["denominator"]
            assert sum(p["numerator"] for p in parts) == row["numerator"]
    d = results["demographics"]
    assert (d["rows_read"], d["rows_loaded"], d["rows_quarantined"]) == (12, 9, 3)
    assert {r["reason"]: r["rows"] for r in d["quarantine_reasons"]} == {
        "duplicate": 1, "missing_patient_id": 1, "non_numeric_value": 1}
    assert (d["lab_patients_with_demographics"], d["lab_patients_without_demographics"]) == (9, 2)
    # pooled standard: 9 patients, 65-79|female 2, 18-44|male 2, 45-64|female 3, 80+|male 2;
    # strata 2/2, 0/2, 2/6, 0/4: (2/9) 1 + (3/9) (1/3) = 1/3; variance (3/9)^2 (1/3)(2/3)/6
    s = next(r for r in results["strata"]["standardised"] if (r["abnormality"], r["direction"], r["window"],
             r["level"]) == ("hypokalemia", "abnormality_given_hypomg", "24h", "result"))
    assert s["crude"] == pytest.approx(5 / 17)
    assert s["standardised"] == pytest.approx(1 / 3)
    assert s["weight_covered"] == pytest.approx(1.0)
    half = Z_95 * ((3 / 9) ** 2 * (1 / 3) * (2 / 3) / 6) ** 0.5
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((1 / 3 - half, 1 / 3 + half))
    rows = {(r["characteristic"], r["category"]): r for r in results["table_one"]["rows"]}
    assert rows[("sex", "female")]["hypomagnesemia"] == 8
    assert rows[("age band at the result", "80+")]["hypomagnesemia"] == 4
    # mean age over the 14 results of known age: a0,a1 73; a2,a3 33; b0-b2 50 x 2 each; b3,b4 84 x 2 each
    assert rows[("age at the result, years", None)]["hypomagnesemia"] == pytest.approx(
        (2 * 73 + 2 * 33 + 6 * 50 + 4 * 84) / 14)


def test_without_a_patients_table_the_figures_stay_and_strata_are_unknown(tmp_path):
    config = Config(privacy=Privacy(min_cell_size=0))
    results = build_results(make_db(tmp_path, labs=stratified_labs(), config=config), config)
    assert {k: v["denominator"] for k, v in strata_of(results, "sex").items()} == {"unknown": 17}
    assert {k: v["denominator"] for k, v in strata_of(results, "age_band").items()} == {"unknown": 17}
    assert results["demographics"]["patients_table"] is False
    assert all(r["standardised"] is None for r in results["strata"]["standardised"])


def test_mimic_iv_patients_give_birth_year_from_the_anchor(tmp_path):
    config = Config(privacy=Privacy(min_cell_size=0))
    root = tmp_path / "mimic"
    (root / "hosp").mkdir(parents=True)
    patients = [{"subject_id": "a0", "gender": "F", "anchor_age": "70", "anchor_year": "2020",
                 "anchor_year_group": "2017 - 2019", "dod": ""}]
    con = with_patients(tmp_path, config, patients, ("subject_id", "gender", "anchor_age", "anchor_year",
                                                     "anchor_year_group", "dod"), "mimic-iv", root)
    assert con.execute("SELECT sex, birth_year FROM mart_patient_demographics").fetchall() == [("female", 1950.0)]


def test_omop_person_maps_gender_concepts(tmp_path):
    config = Config(privacy=Privacy(min_cell_size=0))
    con = make_db(tmp_path, labs=stratified_labs(), config=config)
    root = tmp_path / "omop"
    root.mkdir()
    write_csv(root / "person.csv", ("person_id", "gender_concept_id", "year_of_birth"),
              [{"person_id": "a0", "gender_concept_id": "8532", "year_of_birth": "1950"},
               {"person_id": "a1", "gender_concept_id": "8507", "year_of_birth": "1951"}])
    load_patients(con, "omop", root, config)
    build_models(con, MART_MODELS)
    assert con.execute("SELECT patient_id, sex, birth_year FROM mart_patient_demographics ORDER BY 1").fetchall() == [
        ("a0", "female", 1950.0), ("a1", "male", 1951.0)]


def test_the_identifier_guard_refuses_a_patients_table_with_names(tmp_path):
    config = Config(privacy=Privacy(min_cell_size=0))
    with pytest.raises(InputError, match="patient_name"):
        with_patients(tmp_path, config, [{"patient_id": "a0", "patient_name": "x"}], ("patient_id", "patient_name"))


def test_small_age_strata_are_withheld(tmp_path):
    config = Config(privacy=Privacy(min_cell_size=3), strata=Strata())
    results = build_results(with_patients(tmp_path, config), config)
    for r in results["strata"]["cooccurrence"]:
        if not r["suppressed"]:
            n, d = r["numerator"], r["denominator"]
            assert not any(1 <= v < 3 for v in (n, d, d - n))
    ages = strata_of(results, "age_band")
    assert ages["65-79"]["suppressed"]  # 2 of 2
