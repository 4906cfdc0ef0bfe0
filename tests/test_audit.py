"""Magnesium-check audit in hypokalemia and medication exposures (analysis plan sections 5 and 6).
Patients are named after the boundary they probe; expected values worked out by hand."""
from __future__ import annotations

import datetime as dt

import pytest

from builder import lab, make_db, med
from pipelines.analyse import build_results
from pipelines.config import Config, Privacy

BASE = dt.datetime(2024, 3, 10, 8, 0)


def at(hours: float = 0, minutes: float = 0) -> str:
    return (BASE + dt.timedelta(hours=hours, minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")


def low_k(p, hours=0, minutes=0, value="3.0"):
    return lab(p, at(hours, minutes), "K", value, "mmol/L")


def mg(p, hours=0, minutes=0, value="2.0"):
    return lab(p, at(hours, minutes), "MG", value, "mg/dL")


def episodes(con):
    rows = con.execute("SELECT * FROM int_hypokalemia_episodes ORDER BY patient_id, episode_number")
    names = [d[0] for d in rows.description]
    return [dict(zip(names, r)) for r in rows.fetchall()]


def by_patient(con):
    out = {}
    for e in episodes(con):
        out.setdefault(e["patient_id"], []).append(e)
    return out


def test_episode_gap_72h_joins_and_one_minute_more_splits(tmp_path):
    con = make_db(tmp_path, labs=[
        low_k("gap_71h"), low_k("gap_71h", 71),
        low_k("gap_exactly_72h"), low_k("gap_exactly_72h", 72),
        low_k("gap_72h_1min"), low_k("gap_72h_1min", 72, 1),
        low_k("normal_k_between_still_joins"), lab("normal_k_between_still_joins", at(10), "K", "4.0", "mmol/L"),
        low_k("normal_k_between_still_joins", 20),
    ])
    counts = {p: len(e) for p, e in by_patient(con).items()}
    assert counts == {"gap_71h": 1, "gap_exactly_72h": 1, "gap_72h_1min": 2, "normal_k_between_still_joins": 1}
    joined = by_patient(con)["gap_exactly_72h"][0]
    assert (joined["start_at"], joined["end_at"], joined["low_k_results"]) == (BASE, BASE + dt.timedelta(hours=72), 2)


def test_severity_by_lowest_k(tmp_path):
    con = make_db(tmp_path, labs=[
        low_k("k_2_49_severe", value="2.49"), low_k("k_2_5_moderate", value="2.5"),
        low_k("k_2_99_moderate", value="2.99"), low_k("k_3_0_mild", value="3.0"),
        low_k("lowest_decides", value="3.2"), low_k("lowest_decides", 5, value="2.4"),
    ])
    assert {p: e[0]["severity"] for p, e in by_patient(con).items()} == {
        "k_2_49_severe": "severe", "k_2_5_moderate": "moderate", "k_2_99_moderate": "moderate",
        "k_3_0_mild": "mild", "lowest_decides": "severe"}


def test_mg_checked_window_is_start_plus_minus_24h_inclusive(tmp_path):
    con = make_db(tmp_path, labs=[
        low_k("mg_at_start_minus_24h"), mg("mg_at_start_minus_24h", -24),
        low_k("mg_one_minute_before_window"), mg("mg_one_minute_before_window", -24, -1),
        low_k("mg_at_start_plus_24h"), mg("mg_at_start_plus_24h", 24),
        low_k("mg_one_minute_after_window"), mg("mg_one_minute_after_window", 24, 1),
        # checked is anchored on the start, not the end: Mg 30 h after a start, within a long episode
        low_k("mg_late_in_long_episode"), low_k("mg_late_in_long_episode", 48), mg("mg_late_in_long_episode", 30),
        low_k("mg_quarantined_does_not_count"), lab("mg_quarantined_does_not_count", at(1), "MG", "HEMOLYZED", "mg/dL"),
    ])
    checked = {p: e[0]["mg_checked"] for p, e in by_patient(con).items()}
    assert checked == {"mg_at_start_minus_24h": True, "mg_one_minute_before_window": False,
                       "mg_at_start_plus_24h": True, "mg_one_minute_after_window": False,
                       "mg_late_in_long_episode": False, "mg_quarantined_does_not_count": False}
    assert by_patient(con)["mg_at_start_minus_24h"][0]["mg_checked_at"] == BASE - dt.timedelta(hours=24)


def test_low_mg_and_repletion_windows_run_to_end_plus_24h(tmp_path):
    con = make_db(tmp_path, labs=[
        low_k("low_mg_repleted_at_end_plus_24h"), low_k("low_mg_repleted_at_end_plus_24h", 10),
        mg("low_mg_repleted_at_end_plus_24h", 30, value="1.5"),
        low_k("repletion_one_minute_late"), mg("repletion_one_minute_late", 2, value="1.5"),
        low_k("repletion_before_window"), mg("repletion_before_window", 0, value="1.5"),
        low_k("normal_mg_repleted_anyway"), mg("normal_mg_repleted_anyway", 1),
    ], meds=[
        med("low_mg_repleted_at_end_plus_24h", at(34), "Magnesium Sulfate"),
        med("repletion_one_minute_late", at(24, 1), "Magnesium Oxide 400 mg"),
        med("repletion_before_window", at(-24, -1), "Magnesium Sulfate"),
        med("normal_mg_repleted_anyway", at(3), "Magnesium Sulfate"),
    ])
    got = {p: (e[0]["low_mg"], e[0]["mg_repleted"]) for p, e in by_patient(con).items()}
    assert got == {"low_mg_repleted_at_end_plus_24h": (True, True), "repletion_one_minute_late": (True, False),
                   "repletion_before_window": (True, False), "normal_mg_repleted_anyway": (False, True)}
    overall = con.execute("SELECT episodes, low_mg_episodes, mg_repleted FROM mart_audit WHERE grouping = 'overall'").fetchone()
    assert overall == (4, 3, 1)  # repletion counted among low-Mg episodes only


def test_refractory_needs_k_supplement_in_episode_and_low_k_24h_after_it(tmp_path):
    con = make_db(tmp_path, labs=[
        low_k("refractory"), low_k("refractory", 25),
        low_k("low_k_only_23h_after_kcl"), low_k("low_k_only_23h_after_kcl", 24),
        low_k("kcl_before_episode"), low_k("kcl_before_episode", 30),
        low_k("no_k_supplement"), low_k("no_k_supplement", 30),
    ], meds=[
        med("refractory", at(1), "Potassium Chloride Replacement (Critical Care and Oncology)"),
        med("low_k_only_23h_after_kcl", at(1), "Potassium Chloride"),
        med("kcl_before_episode", at(-1), "KCl"),
    ])
    got = {p: e[0]["refractory"] for p, e in by_patient(con).items()}
    assert got == {"refractory": True, "low_k_only_23h_after_kcl": False, "kcl_before_episode": False,
                   "no_k_supplement": False}
    assert by_patient(con)["refractory"][0]["first_k_supplement_at"] == BASE + dt.timedelta(hours=1)


@pytest.mark.parametrize("drug,atc,expected", [
    ("Magnesium Sulfate", "", {"mg_supplement"}),
    ("Magnesium Sulfate Replacement (Critical Care and Oncology)", "", {"mg_supplement"}),
    ("Magnesium Oxide 400 mg", "", {"mg_supplement"}),
    ("MAGNESIUM CHLORIDE", "", {"mg_supplement"}),
    ("Magnesium Citrate", "", set()),
    ("Magnesium citrate", "A12CC04", set()),
    ("Magnesium Sulfate (OB-GYN)", "", set()),
    ("Potassium Chloride", "", {"k_supplement"}),
    ("Potassium Chl 20 mEq / 1000 mL D5 1/2 NS", "", {"k_supplement"}),
    ("Potassium Phosphate", "", {"k_supplement"}),
    ("Losartan Potassium", "", set()),
    ("Pantoprazole Sodium", "", {"ppi"}),
    ("Esomeprazole sodium", "", {"ppi"}),
    ("Brand X", "A02BC01", {"ppi"}),
    ("Furosemide-Heart Failure", "", {"loop_diuretic"}),
    ("Chlorothiazide Sodium", "", {"thiazide"}),
    ("CARBOplatin", "", {"platinum"}),
    ("Gentamicin 0.3% Ophth. Soln", "", set()),
    ("Tacrolimus Suspension", "", {"calcineurin_inhibitor"}),
    ("Amphotericin B Liposomal", "", {"amphotericin_b"}),
    ("Acetaminophen", "", set()),
])
def test_drug_names_as_written_map_to_classes(tmp_path, drug, atc, expected):
    con = make_db(tmp_path, meds=[med("p", at(0), drug, atc_code=atc)], labs=[mg("p")])
    got = {r[0] for r in con.execute("SELECT drug_class FROM int_medication_classes").fetchall()}
    assert got == expected


def test_exposure_window_start_to_stop_or_24h(tmp_path):
    con = make_db(tmp_path, labs=[
        mg("ppi_mg_at_start", 0, value="1.5"), mg("ppi_mg_at_stop", 10), mg("ppi_mg_after_stop", 10, 1),
        mg("ppi_no_stop_at_24h", 24, value="1.5"), mg("ppi_no_stop_after_24h", 24, 1), mg("ppi_mg_before_start", -1),
        mg("never_exposed"),
    ], meds=[
        med("ppi_mg_at_start", at(0), "Omeprazole", stop=at(10)),
        med("ppi_mg_at_stop", at(0), "Omeprazole", stop=at(10)),
        med("ppi_mg_after_stop", at(0), "Omeprazole", stop=at(10)),
        med("ppi_no_stop_at_24h", at(0), "Pantoprazole"),
        med("ppi_no_stop_after_24h", at(0), "Pantoprazole"),
        med("ppi_mg_before_start", at(0), "Pantoprazole"),
    ])
    exposed = {r[0]: r[1] for r in con.execute(
        "SELECT patient_id, is_exposed FROM int_mg_exposures WHERE drug_class = 'ppi'").fetchall()}
    assert exposed == {"ppi_mg_at_start": True, "ppi_mg_at_stop": True, "ppi_mg_after_stop": False,
                       "ppi_no_stop_at_24h": True, "ppi_no_stop_after_24h": False, "ppi_mg_before_start": False,
                       "never_exposed": False}
    row = con.execute("SELECT * FROM mart_exposures WHERE drug_class = 'ppi'").fetchone()
    assert row == ("ppi", 3, 2, 4, 0)
    assert con.execute("SELECT count(*) FROM mart_exposures").fetchone()[0] == 9


def test_audit_measures_in_results_by_month_severity_and_care_unit(tmp_path):
    labs = []
    for i in range(12):  # 12 March episodes, 8 checked; ICU for the first 6
        p = f"march_{i}"
        labs.append(lab(p, at(0), "K", "2.8" if i < 4 else "3.2", "mmol/L", care_unit="ICU" if i < 6 else "Ward"))
        if i < 8:
            labs.append(mg(p, 1))
    labs += [low_k("april_unchecked", 24 * 30)]
    cfg = Config(privacy=Privacy(min_cell_size=0))
    results = build_results(make_db(tmp_path, labs=labs, config=cfg), cfg)
    overall = results["audit"]["overall"]
    assert (overall["episodes"], overall["mg_checked"]) == (13, 8)
    assert overall["rate"] == pytest.approx(8 / 13)
    assert overall["ci_low"] < 8 / 13 < overall["ci_high"]
    assert [(m["month"], m["episodes"], m["mg_checked"]) for m in results["audit"]["by_month"]] == [
        ("2024-03", 12, 8), ("2024-04", 1, 0)]
    assert [(s["severity"], s["episodes"], s["mg_checked"]) for s in results["audit"]["by_severity"]] == [
        ("mild", 9, 4), ("moderate", 4, 4)]
    assert [(c["care_unit"], c["episodes"], c["mg_checked"]) for c in results["audit"]["by_care_unit"]] == [
        ("ICU", 6, 6), ("Ward", 6, 2)]
    default = build_results(make_db(tmp_path / "default", labs=labs), Config())
    assert default["audit"]["overall"]["suppressed"] is True and default["audit"]["overall"]["episodes"] is None
