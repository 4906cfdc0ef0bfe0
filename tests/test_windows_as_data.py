"""Co-occurrence windows and abnormality definitions are seed rows (sql/seeds/cooccurrence_windows.csv,
abnormality_definitions.csv): a third window gets its own counts in the marts, and a row the models
cannot serve stops the run at start-up with a ConfigError naming it. Every expected number below was
worked out by hand from the rows of the test."""
from __future__ import annotations

import shutil

import pytest

import pipelines.seeds as seeds
from builder import lab, make_db
from pipelines.analyse import build_results
from pipelines.config import Config
from pipelines.errors import ConfigError

WINDOWS_HEADER = "window_name,width_setting,width_hours,uses_specimen,description\n"
SAME_DRAW = "same_draw,windows.same_draw_hours,,true,same specimen or within same_draw_hours\n"
SIX_HOURS = "6h,,6,false,within 6 hours\n"
DAY = "24h,windows.cooccurrence_hours,,false,within cooccurrence_hours\n"
DEFINITIONS_HEADER = "abnormality,hypocalcemia_definition,partner_analyte,value_source,threshold\n"


@pytest.fixture
def seed_dir(tmp_path, monkeypatch):
    """A copy of the seeds that a test may rewrite; the pipeline reads it instead of sql/seeds/."""
    folder = tmp_path / "seeds"
    shutil.copytree(seeds.SEEDS_DIR, folder)
    monkeypatch.setattr(seeds, "SEEDS_DIR", folder)
    seeds.read_seed.cache_clear()
    yield folder
    seeds.read_seed.cache_clear()


def at(hours: float = 0, minutes: float = 0) -> str:
    return f"2024-03-01 {8 + int(hours):02d}:{int(minutes):02d}:00"


# Hypomagnesemia (1.5 mg/dL) or normomagnesemia (2.0 mg/dL) at 08:00, potassium later, other tubes.
LABS = [
    lab("k_low_at_5h", at(0), "MG", "1.5", "mg/dL"), lab("k_low_at_5h", at(5), "K", "3.0", "mmol/L"),
    lab("k_low_at_7h", at(0), "MG", "1.5", "mg/dL"), lab("k_low_at_7h", at(7), "K", "3.0", "mmol/L"),
    lab("k_normal_at_30min", at(0), "MG", "1.5", "mg/dL"), lab("k_normal_at_30min", at(0, 30), "K", "4.0", "mmol/L"),
    lab("normomg_k_normal_at_5h", at(0), "MG", "2.0", "mg/dL"),
    lab("normomg_k_normal_at_5h", at(5), "K", "4.0", "mmol/L"),
]


def cooccurrence(con, direction: str, abnormality: str = "hypokalemia") -> dict:
    """(numerator, denominator, index_count) per (window, level) of one direction."""
    return {(w, level): (n, d, i) for w, level, n, d, i in con.execute(
        "SELECT window_name, level, numerator, denominator, index_count FROM mart_cooccurrence "
        "WHERE abnormality = ? AND direction = ?", [abnormality, direction]).fetchall()}


def three_windows(expected: dict) -> dict:
    """The same counts at result and patient level (one index result per patient here)."""
    return {(w, level): counts for w, counts in expected.items() for level in ("result", "patient")}


def test_a_third_window_gets_its_own_counts(tmp_path, seed_dir):
    (seed_dir / "cooccurrence_windows.csv").write_text(WINDOWS_HEADER + SAME_DRAW + SIX_HOURS + DAY)
    con = make_db(tmp_path, labs=LABS)
    assert con.execute("SELECT window_name, window_seconds, uses_specimen FROM param_windows "
                       "ORDER BY window_id").fetchall() == [
        ("same_draw", 3600.0, True), ("6h", 6 * 3600.0, False), ("24h", 24 * 3600.0, False)]
    # three hypomagnesemia results: K at 30 min (normal) is in every window, K at 5 h (low) in 6h and
    # 24h, K at 7 h (low) in 24h only
    assert cooccurrence(con, "abnormality_given_hypomg") == three_windows(
        {"same_draw": (0, 1, 3), "6h": (1, 2, 3), "24h": (2, 3, 3)})
    # one normomagnesemia result, its normal K at 5 h
    assert cooccurrence(con, "abnormality_given_normomg") == three_windows(
        {"same_draw": (0, 0, 1), "6h": (0, 1, 1), "24h": (0, 1, 1)})
    # two low K results, each looking back to a hypomagnesemia at 5 h and at 7 h
    assert cooccurrence(con, "hypomg_given_abnormality") == three_windows(
        {"same_draw": (0, 0, 2), "6h": (1, 1, 2), "24h": (2, 2, 2)})
    # no sodium: the hyponatremia rows are there, with nothing measured
    assert cooccurrence(con, "abnormality_given_hypomg", "hyponatremia") == three_windows(
        {"same_draw": (0, 0, 3), "6h": (0, 0, 3), "24h": (0, 0, 3)})
    assert con.execute("SELECT count(*) FROM mart_cooccurrence").fetchone()[0] == 4 * 3 * 3 * 2


def test_a_third_window_in_the_sensitivity_grid(tmp_path, seed_dir):
    (seed_dir / "cooccurrence_windows.csv").write_text(WINDOWS_HEADER + SAME_DRAW + SIX_HOURS + DAY)
    con = make_db(tmp_path, labs=LABS)
    grid = {(t, w): (n, d) for t, w, n, d in con.execute(
        "SELECT threshold_mg_dl, window_name, numerator, denominator FROM mart_sensitivity "
        "WHERE direction = 'abnormality_given_hypomg' AND abnormality = 'hypokalemia'").fetchall()}
    # Mg 1.5 mg/dL is below 1.6, 1.7 and 1.8 (strict), not below 1.5; Mg 2.0 is below none
    for threshold in (1.6, 1.7, 1.8):
        assert [grid[(threshold, w)] for w in ("same_draw", "6h", "24h")] == [(0, 1), (1, 2), (2, 3)]
    assert [grid[(1.5, w)] for w in ("same_draw", "6h", "24h")] == [(0, 0), (0, 0), (0, 0)]
    assert con.execute("SELECT count(*) FROM mart_sensitivity WHERE direction = 'abnormality_given_hypomg'").fetchone()[0] == 6 * 4 * 3


def test_results_list_the_windows_in_seed_order(tmp_path, seed_dir):
    (seed_dir / "cooccurrence_windows.csv").write_text(WINDOWS_HEADER + SAME_DRAW + SIX_HOURS + DAY)
    con = make_db(tmp_path, labs=LABS)
    doc = build_results(con, Config())
    first = [(r["window"], r["level"]) for r in doc["cooccurrence"][:6]]
    assert first == [(w, level) for w in ("same_draw", "6h", "24h") for level in ("result", "patient")]
    assert [r["window"] for r in doc["sensitivity"][:3]] == ["same_draw", "6h", "24h"]
    assert len(doc["prevalence_ratios"]) == 4 * 3 * 2


@pytest.mark.parametrize("rows, message", [
    (SAME_DRAW + SAME_DRAW + DAY,
     "row 2 (window 'same_draw'): window_name 'same_draw' is listed twice"),
    (SAME_DRAW + "6h,,,false,no width\n" + DAY,
     "row 2 (window '6h'): give exactly one of width_setting and width_hours"),
    (SAME_DRAW + "6h,windows.cooccurrence_hours,6,false,both\n" + DAY,
     "row 2 (window '6h'): give exactly one of width_setting and width_hours"),
    (SAME_DRAW + "6h,,six,false,\n" + DAY, "row 2 (window '6h'): width_hours 'six' is not a number"),
    (SAME_DRAW + "6h,windows.six_hours,,false,\n" + DAY, "row 2 (window '6h'): width_setting 'windows.six_hours'"),
    (SAME_DRAW + "6h,,6,maybe,\n" + DAY, "row 2 (window '6h'): uses_specimen must be true or false"),
    (SAME_DRAW + DAY + SIX_HOURS, "row 3 (window '6h'): narrower than the window before it ('24h')"),
    (SAME_DRAW + DAY + "48h,,48,false,\n", "the last window must be the co-occurrence window"),
    ("", "the last window must be the co-occurrence window"),
])
def test_a_window_row_the_models_cannot_serve_stops_the_run(tmp_path, seed_dir, rows, message):
    (seed_dir / "cooccurrence_windows.csv").write_text(WINDOWS_HEADER + rows)
    with pytest.raises(ConfigError, match="seed cooccurrence_windows.csv") as error:
        make_db(tmp_path, labs=LABS)
    assert message in str(error.value)
    assert error.value.exit_code == 2


GOOD_DEFINITIONS = ("hypokalemia,,K,result,hypokalemia_mmol_l\n"
                    "hypocalcemia,total,CA,result,hypocalcemia_mmol_l\n")


@pytest.mark.parametrize("rows, message", [
    (GOOD_DEFINITIONS + "hypokalemia,,K,result,hypokalemia_mmol_l\n",
     "row 3 ('hypokalemia', ''): this abnormality and definition are listed twice"),
    (GOOD_DEFINITIONS + "hypochloremia,,CL,result,hypokalemia_mmol_l\n",
     "row 3 ('hypochloremia', ''): partner_analyte 'CL' is not one of"),
    (GOOD_DEFINITIONS + "hypermagnesemia,,MG,result,hypomagnesemia_mmol_l\n",
     "row 3 ('hypermagnesemia', ''): partner_analyte 'MG' is not one of"),
    (GOOD_DEFINITIONS + "hyponatremia,,NA,corrected_sodium,hyponatremia_mmol_l\n",
     "row 3 ('hyponatremia', ''): value_source 'corrected_sodium' is not one of result, corrected_calcium"),
    (GOOD_DEFINITIONS + "hypocalcemia,corrected,ICA,corrected_calcium,hypocalcemia_mmol_l\n",
     "row 3 ('hypocalcemia', 'corrected'): value_source 'corrected_calcium' needs partner_analyte 'CA'"),
    (GOOD_DEFINITIONS + "hyponatremia,,NA,result,hyponatremia_mg_dl\n",
     "row 3 ('hyponatremia', ''): threshold 'hyponatremia_mg_dl' is not one of"),
    (GOOD_DEFINITIONS + "hypokalemia,severe,K,result,severe_hypokalemia_mmol_l\n",
     "('hypokalemia'): an abnormality with several definitions must name each one"),
    ("hypocalcemia,ionized,ICA,result,ionized_hypocalcemia_mmol_l\n",
     "('hypocalcemia'): no definition 'total' (analysis.hypocalcemia_definition)"),
])
def test_a_definition_row_the_models_cannot_serve_stops_the_run(tmp_path, seed_dir, rows, message):
    (seed_dir / "abnormality_definitions.csv").write_text(DEFINITIONS_HEADER + rows)
    with pytest.raises(ConfigError, match="seed abnormality_definitions.csv") as error:
        make_db(tmp_path, labs=LABS)
    assert message in str(error.value)


def test_each_definition_reads_its_analyte_and_threshold_from_the_seed(tmp_path, seed_dir):
    # a definition added as a row: low potassium below the severe cut-off (2.5 mmol/L), under its own
    # abnormality name; the K of 3.0 at 5 h is not below it, a K of 2.4 at 6 h is
    (seed_dir / "abnormality_definitions.csv").write_text(
        DEFINITIONS_HEADER + GOOD_DEFINITIONS + "severe_hypokalemia,,K,result,severe_hypokalemia_mmol_l\n")
    con = make_db(tmp_path, labs=[*LABS, lab("k_low_at_5h", at(6), "K", "2.4", "mmol/L")])
    flags = con.execute("SELECT f.patient_id, f.collected_at, (r.bits & d.abnormal_bit) <> 0 FROM int_result_bits AS r "
                        "JOIN int_lab_flags AS f ON f.row_id = r.row_id "
                        "JOIN param_abnormality_definitions AS d ON (r.bits & d.measured_bit) <> 0 "
                        "WHERE d.abnormality = 'severe_hypokalemia' ORDER BY ALL").fetchall()
    assert [(p, str(t)[11:16], a) for p, t, a in flags] == [
        ("k_low_at_5h", "13:00", False), ("k_low_at_5h", "14:00", True), ("k_low_at_7h", "15:00", False),
        ("k_normal_at_30min", "08:30", False), ("normomg_k_normal_at_5h", "13:00", False)]
    # three hypomagnesemia results; severe low K within 24 h for k_low_at_5h only
    assert cooccurrence(con, "abnormality_given_hypomg", "severe_hypokalemia")[("24h", "result")] == (1, 3, 3)
    listed = dict.fromkeys(r["abnormality"] for r in build_results(con, Config())["cooccurrence"])
    assert list(listed) == ["hypokalemia", "hypocalcemia", "severe_hypokalemia"]  # seed order
