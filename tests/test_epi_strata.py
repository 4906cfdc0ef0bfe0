"""Strata by calendar year and care unit (docs/definitions.md section 4, Strata), their suppression, and
table 1 (section 8), on hand-made results whose counts were worked out by hand."""
from __future__ import annotations

import csv
import datetime as dt

from builder import lab, make_db
from pipelines.analyse import build_results
from pipelines.config import Config, Privacy
from pipelines.exports import write_exports


def at(year: int, day: int) -> str:
    return (dt.datetime(year, 3, 1, 8, 0) + dt.timedelta(days=day)).strftime("%Y-%m-%d %H:%M:%S")


def stratified_labs() -> list[dict]:
    """Hypomagnesemia results with a potassium of the same time, per patient:
    2023, unit ICU: patients a0..a3, one result each, K low for a0, a1 (2 of 4);
    2024, unit WARD: patients b0..b5, two results each (days 0 and 5), K low for b0 only (2 of 12);
    2024, no unit: patient c0, one result, K low (1 of 1)."""
    out = []
    for i in range(4):
        out += [lab(f"a{i}", at(2023, 0), "MG", "1.5", "mg/dL", care_unit="ICU"),
                lab(f"a{i}", at(2023, 0), "K", "3.0" if i < 2 else "4.0", "mmol/L", care_unit="ICU")]
    for i in range(6):
        for day in (0, 5):
            out += [lab(f"b{i}", at(2024, day), "MG", "1.5", "mg/dL", care_unit="WARD"),
                    lab(f"b{i}", at(2024, day), "K", "3.0" if i == 0 else "4.0", "mmol/L", care_unit="WARD")]
    out += [lab("c0", at(2024, 0), "MG", "1.5", "mg/dL"), lab("c0", at(2024, 0), "K", "3.0", "mmol/L")]
    return out


def strata_of(results, stratum, level="result", window="24h"):
    return {r["value"]: r for r in results["strata"]["cooccurrence"]
            if (r["abnormality"], r["direction"], r["window"], r["level"], r["stratum"])
            == ("hypokalemia", "abnormality_given_hypomg", window, level, stratum)}


def test_strata_are_the_hand_counts_and_sum_to_every_row(tmp_path):
    config = Config(privacy=Privacy(min_cell_size=0))
    con = make_db(tmp_path, labs=stratified_labs(), config=config)
    results = build_results(con, config)
    years = strata_of(results, "year")
    assert {k: (v["numerator"], v["denominator"]) for k, v in years.items()} == {"2023": (2, 4), "2024": (3, 13)}
    units = strata_of(results, "care_unit")
    # min_cell_size 0: every unit is named; a result without a unit is `unknown`
    assert {k: (v["numerator"], v["denominator"]) for k, v in units.items()} == {
        "ICU": (2, 4), "WARD": (2, 12), "unknown": (1, 1)}
    patients = strata_of(results, "year", level="patient")
    assert {k: (v["numerator"], v["denominator"]) for k, v in patients.items()} == {"2023": (2, 4), "2024": (2, 7)}
    # every row of every window and level: its strata of each kind add up to it
    for row in results["cooccurrence"]:
        for stratum in ("year", "care_unit"):
            parts = [r for r in results["strata"]["cooccurrence"] if r["stratum"] == stratum and
                     (r["abnormality"], r["direction"], r["window"], r["level"])
                     == (row["abnormality"], row["direction"], row["window"], row["level"])]
            assert sum(p["numerator"] for p in parts) == row["numerator"]
            assert sum(p["denominator"] for p in parts) == row["denominator"]


def test_small_strata_are_withheld_and_not_derivable(tmp_path):
    config = Config(privacy=Privacy(min_cell_size=3))
    con = make_db(tmp_path, labs=stratified_labs(), config=config)
    results = build_results(con, config)
    row = next(r for r in results["cooccurrence"] if (r["abnormality"], r["direction"], r["window"], r["level"])
               == ("hypokalemia", "abnormality_given_hypomg", "24h", "result"))
    assert (row["numerator"], row["denominator"], row["suppressed"]) == (5, 17, False)
    years = strata_of(results, "year")
    # 2023 has 2 of 4 (n = 2 < 3): withheld; alone it would be 5/17 minus 2024's 3/13, so 2024 goes too
    assert years["2023"]["suppressed"] and years["2023"]["numerator"] is None
    assert years["2024"]["suppressed"] and years["2024"]["prevalence"] is None
    units = strata_of(results, "care_unit")
    # ICU 2/4 and unknown 1/1 are small; together 3/5 (d-n = 2 is small), so WARD 2/12 is withheld too
    assert all(u["suppressed"] for u in units.values())
    for r in results["strata"]["cooccurrence"]:
        if not r["suppressed"]:
            n, d = r["numerator"], r["denominator"]
            assert not any(1 <= v < 3 for v in (n, d, d - n))


def test_table_one_counts_and_csv(tmp_path):
    config = Config(privacy=Privacy(min_cell_size=0))
    con = make_db(tmp_path, labs=stratified_labs(), config=config)
    results = build_results(con, config)
    rows = {(r["characteristic"], r["category"]): r for r in results["table_one"]["rows"]}
    # 4 + 12 + 1 = 17 hypomagnesemia results of 11 patients; no normomagnesemia result
    assert rows[("magnesium results", None)]["hypomagnesemia"] == 17
    assert rows[("patients", None)]["hypomagnesemia"] == 11
    assert rows[("magnesium results per patient", None)]["hypomagnesemia"] == 17 / 11
    assert rows[("care unit", "WARD")]["hypomagnesemia"] == 12
    assert rows[("care unit", "WARD")]["hypomagnesemia_percent"] == 100 * 12 / 17
    assert rows[("magnesium results", None)]["normomagnesemia"] == 0
    prevalence = rows[("hypokalemia (24h window, result level)", None)]
    assert (prevalence["hypomagnesemia"], prevalence["hypomagnesemia_denominator"]) == (5, 17)
    write_exports(results, tmp_path)
    with open(tmp_path / "table_one.csv", encoding="utf-8") as f:
        lines = list(csv.DictReader(f))
    assert {"characteristic": "patients", "group": "hypomagnesemia", "value": "11"}.items() <= next(
        r for r in lines if r["characteristic"] == "patients" and r["group"] == "hypomagnesemia").items()
    with open(tmp_path / "results.csv", encoding="utf-8") as f:
        sections = {r["section"] for r in csv.DictReader(f)}
    assert {"clustered", "design_effect", "strata"} <= sections


def test_audit_rate_by_year_adds_up_to_the_overall(tmp_path):
    # two hypokalemia episodes in 2023 (one with Mg checked) and one in 2024 (checked)
    labs = [lab("k1", at(2023, 0), "K", "3.0", "mmol/L"), lab("k1", at(2023, 0), "MG", "2.0", "mg/dL"),
            lab("k2", at(2023, 1), "K", "3.0", "mmol/L"),
            lab("k3", at(2024, 0), "K", "3.0", "mmol/L"), lab("k3", at(2024, 0), "MG", "2.0", "mg/dL")]
    config = Config(privacy=Privacy(min_cell_size=0))
    results = build_results(make_db(tmp_path, labs=labs, config=config), config)
    years = {r["year"]: (r["mg_checked"], r["episodes"]) for r in results["strata"]["audit_by_year"]}
    assert years == {"2023": (1, 2), "2024": (1, 1)}
