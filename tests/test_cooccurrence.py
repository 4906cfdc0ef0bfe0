"""Co-occurrence (analysis plan sections 3 and 4): strict thresholds in every unit, window edges,
same-draw by specimen and by time, patient-level choice, and the mart's counts. Every expected
number below was worked out by hand from the rows of the test."""
from __future__ import annotations

import pytest

from builder import lab, make_db

T0 = "2024-03-01 08:00"


def at(hours: float = 0, minutes: float = 0) -> str:
    import datetime as dt

    base = dt.datetime(2024, 3, 1, 8, 0)
    return (base + dt.timedelta(hours=hours, minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")


def counts(con, abnormality, direction, window, level="result"):
    return con.execute(
        "SELECT numerator, denominator, index_count FROM mart_cooccurrence "
        "WHERE abnormality = ? AND direction = ? AND window_name = ? AND level = ?",
        [abnormality, direction, window, level],
    ).fetchone()


def flag_of(con, patient, column):
    return con.execute(f"SELECT {column} FROM int_lab_flags WHERE patient_id = ?", [patient]).fetchone()[0]


BOUNDARIES = [
    # (patient, analyte, value, unit, flag column, expected)
    ("mg_1_7_mg_dl", "MG", "1.7", "mg/dL", "is_hypomagnesemia", False),
    ("mg_1_69_mg_dl", "MG", "1.69", "mg/dL", "is_hypomagnesemia", True),
    ("mg_0_70_mmol_l", "MG", "0.70", "mmol/L", "is_hypomagnesemia", False),
    ("mg_0_69938_mmol_l", "MG", "0.69938", "mmol/L", "is_hypomagnesemia", False),
    ("mg_0_6993_mmol_l", "MG", "0.6993", "mmol/L", "is_hypomagnesemia", True),
    ("mg_1_4_meq_l", "MG", "1.4", "mEq/L", "is_hypomagnesemia", False),
    ("mg_1_39_meq_l", "MG", "1.39", "mEq/L", "is_hypomagnesemia", True),
    ("mg_1_7_is_normo", "MG", "1.7", "mg/dL", "is_normomagnesemia", True),
    ("mg_2_6_is_normo", "MG", "2.6", "mg/dL", "is_normomagnesemia", True),
    ("mg_2_61_not_normo", "MG", "2.61", "mg/dL", "is_normomagnesemia", False),
    ("k_3_5_mmol_l", "K", "3.5", "mmol/L", "is_hypokalemia", False),
    ("k_3_49_mmol_l", "K", "3.49", "mmol/L", "is_hypokalemia", True),
    ("k_3_5_meq_l", "K", "3.5", "mEq/L", "is_hypokalemia", False),
    ("k_3_49_meq_l", "K", "3.49", "mEq/L", "is_hypokalemia", True),
    ("na_135", "NA", "135", "mmol/L", "is_hyponatremia", False),
    ("na_134_9", "NA", "134.9", "mEq/L", "is_hyponatremia", True),
    ("phos_2_5_mg_dl", "PHOS", "2.5", "mg/dL", "is_hypophosphatemia", False),
    ("phos_2_49_mg_dl", "PHOS", "2.49", "mg/dL", "is_hypophosphatemia", True),
    ("phos_0_80725_mmol_l", "PHOS", "0.80725", "mmol/L", "is_hypophosphatemia", False),
    ("phos_0_8072_mmol_l", "PHOS", "0.8072", "mmol/L", "is_hypophosphatemia", True),
    ("ca_8_5_mg_dl", "CA", "8.5", "mg/dL", "is_hypocalcemia_total", False),
    ("ca_8_49_mg_dl", "CA", "8.49", "mg/dL", "is_hypocalcemia_total", True),
    ("ca_2_12075_mmol_l", "CA", "2.12075", "mmol/L", "is_hypocalcemia_total", False),
    ("ca_2_12_mmol_l", "CA", "2.12", "mmol/L", "is_hypocalcemia_total", True),
    ("ca_4_2415_meq_l", "CA", "4.2415", "mEq/L", "is_hypocalcemia_total", False),
    ("ca_4_24_meq_l", "CA", "4.24", "mEq/L", "is_hypocalcemia_total", True),
    ("ica_1_15", "ICA", "1.15", "mmol/L", "is_hypocalcemia_ionized", False),
    ("ica_1_149", "ICA", "1.149", "mmol/L", "is_hypocalcemia_ionized", True),
]


def test_thresholds_are_strict_at_each_boundary_in_each_unit(tmp_path):
    con = make_db(tmp_path, labs=[lab(p, T0, a, v, u, fluid="blood" if a == "ICA" else "")
                                  for p, a, v, u, _, _ in BOUNDARIES])
    got = {p: flag_of(con, p, col) for p, _, _, _, col, _ in BOUNDARIES}
    assert got == {p: expected for p, _, _, _, _, expected in BOUNDARIES}


def test_24h_window_is_inclusive_at_24h_and_excludes_one_minute_more(tmp_path):
    con = make_db(tmp_path, labs=[
        lab("k_exactly_24h_after", at(0), "MG", "1.5", "mg/dL"), lab("k_exactly_24h_after", at(24), "K", "3.0", "mmol/L"),
        lab("k_exactly_24h_before", at(0), "MG", "1.5", "mg/dL"), lab("k_exactly_24h_before", at(-24), "K", "3.0", "mmol/L"),
        lab("k_24h_1min_after", at(0), "MG", "1.5", "mg/dL"), lab("k_24h_1min_after", at(24, 1), "K", "3.0", "mmol/L"),
        lab("k_24h_1min_before", at(0), "MG", "1.5", "mg/dL"), lab("k_24h_1min_before", at(-24, -1), "K", "3.0", "mmol/L"),
        lab("k_other_patient", at(0), "MG", "1.5", "mg/dL"), lab("someone_else", at(0), "K", "3.0", "mmol/L"),
    ])
    # 5 hypomagnesemia results; K within +/- 24 h for the first two only; both low.
    assert counts(con, "hypokalemia", "abnormality_given_hypomg", "24h") == (2, 2, 5)
    assert counts(con, "hypokalemia", "abnormality_given_hypomg", "same_draw") == (0, 0, 5)
    # Reverse direction: 5 low K results (index), MG measured and low for the same two.
    assert counts(con, "hypokalemia", "hypomg_given_abnormality", "24h") == (2, 2, 5)


def test_same_draw_by_specimen_or_within_one_hour(tmp_path):
    con = make_db(tmp_path, labs=[
        lab("same_specimen_3h_apart", at(0), "MG", "1.5", "mg/dL", specimen_id="A"),
        lab("same_specimen_3h_apart", at(3), "K", "3.0", "mmol/L", specimen_id="A"),
        lab("no_specimen_60min", at(0), "MG", "1.5", "mg/dL"),
        lab("no_specimen_60min", at(1), "K", "4.0", "mmol/L"),
        lab("no_specimen_61min", at(0), "MG", "1.5", "mg/dL"),
        lab("no_specimen_61min", at(1, 1), "K", "3.0", "mmol/L"),
        lab("other_specimen_30min", at(0), "MG", "1.5", "mg/dL", specimen_id="B1"),
        lab("other_specimen_30min", at(0, -30), "K", "3.0", "mmol/L", specimen_id="B2"),
    ])
    # same_draw: measured for 3h-same-specimen (low), 60 min (normal), 30 min other tube (low): 2/3.
    assert counts(con, "hypokalemia", "abnormality_given_hypomg", "same_draw") == (2, 3, 4)
    assert counts(con, "hypokalemia", "abnormality_given_hypomg", "24h") == (3, 4, 4)


def test_partner_abnormal_if_any_partner_in_window_is_abnormal(tmp_path):
    con = make_db(tmp_path, labs=[
        lab("two_k_one_low", at(0), "MG", "1.5", "mg/dL"),
        lab("two_k_one_low", at(-2), "K", "4.0", "mmol/L"),
        lab("two_k_one_low", at(5), "K", "3.1", "mmol/L"),
        lab("low_k_outside_normal_inside", at(0), "MG", "1.5", "mg/dL"),
        lab("low_k_outside_normal_inside", at(2), "K", "4.0", "mmol/L"),
        lab("low_k_outside_normal_inside", at(30), "K", "3.1", "mmol/L"),
    ])
    assert counts(con, "hypokalemia", "abnormality_given_hypomg", "24h") == (1, 2, 2)


def test_patient_level_counts_the_earliest_index_with_partner_measured(tmp_path):
    con = make_db(tmp_path, labs=[
        # index 1 (t0): no K in any window; index 2 (t48): K normal; index 3 (t49): K low at t50.
        lab("earliest_measured_is_second", at(0), "MG", "1.5", "mg/dL"),
        lab("earliest_measured_is_second", at(48), "MG", "1.5", "mg/dL"),
        lab("earliest_measured_is_second", at(48), "K", "4.0", "mmol/L"),
        lab("earliest_measured_is_second", at(100), "MG", "1.5", "mg/dL"),
        lab("earliest_measured_is_second", at(100, 30), "K", "3.0", "mmol/L"),
    ])
    assert counts(con, "hypokalemia", "abnormality_given_hypomg", "same_draw", "result") == (1, 2, 3)
    assert counts(con, "hypokalemia", "abnormality_given_hypomg", "same_draw", "patient") == (0, 1, 1)


def test_patient_level_tie_break_compares_numeric_result_ids_as_numbers(tmp_path):
    # Two low K at the same time: id 9's specimen has a low Mg drawn 5 h later, id 10's a normal
    # one. Same draw reaches them only by specimen, so id 9 is abnormal and id 10 is not.
    # Numerically 9 < 10 (as text "10" < "9"): the patient counts as abnormal.
    con = make_db(tmp_path, labs=[
        lab("tie_numeric_ids", at(0), "K", "3.0", "mmol/L", result_id="10", specimen_id="s10"),
        lab("tie_numeric_ids", at(0), "K", "3.0", "mmol/L", result_id="9", specimen_id="s9"),
        lab("tie_numeric_ids", at(5), "MG", "1.5", "mg/dL", result_id="11", specimen_id="s9"),
        lab("tie_numeric_ids", at(5), "MG", "2.0", "mg/dL", result_id="12", specimen_id="s10"),
    ])
    assert counts(con, "hypokalemia", "hypomg_given_abnormality", "same_draw", "result") == (1, 2, 2)
    assert counts(con, "hypokalemia", "hypomg_given_abnormality", "same_draw", "patient") == (1, 1, 1)


def test_patient_level_tie_break_uses_text_when_an_id_is_not_numeric(tmp_path):
    con = make_db(tmp_path, labs=[
        lab("tie_text_ids", at(0), "K", "3.0", "mmol/L", result_id="10", specimen_id="s10"),
        lab("tie_text_ids", at(0), "K", "3.0", "mmol/L", result_id="9", specimen_id="s9"),
        lab("tie_text_ids", at(5), "MG", "1.5", "mg/dL", result_id="x11", specimen_id="s9"),
        lab("tie_text_ids", at(5), "MG", "2.0", "mg/dL", result_id="x12", specimen_id="s10"),
    ])
    assert counts(con, "hypokalemia", "hypomg_given_abnormality", "same_draw", "patient") == (0, 1, 1)


def test_every_direction_on_one_hand_made_ward(tmp_path):
    labs = [
        # hypo_with_low_k_na: low Mg with low K, normal NA same specimen.
        lab("hypo_with_low_k", at(0), "MG", "1.4", "mg/dL", specimen_id="a"),
        lab("hypo_with_low_k", at(0), "K", "3.1", "mmol/L", specimen_id="a"),
        lab("hypo_with_low_k", at(0), "NA", "140", "mmol/L", specimen_id="a"),
        # normo_with_low_k: normal Mg with low K in the same draw; a second low K 10 h later.
        lab("normo_with_low_k", at(0), "MG", "2.0", "mg/dL", specimen_id="b"),
        lab("normo_with_low_k", at(0), "K", "3.2", "mmol/L", specimen_id="b"),
        lab("normo_with_low_k", at(10), "K", "3.3", "mmol/L", specimen_id="c"),
        # low_k_never_mg_tested.
        lab("low_k_never_mg_tested", at(0), "K", "3.0", "mmol/L"),
        # normo_with_normal_k.
        lab("normo_with_normal_k", at(0), "MG", "2.2", "mg/dL", specimen_id="d"),
        lab("normo_with_normal_k", at(0), "K", "4.4", "mmol/L", specimen_id="d"),
    ]
    con = make_db(tmp_path, labs=labs)
    assert counts(con, "hypokalemia", "abnormality_given_hypomg", "same_draw") == (1, 1, 1)
    assert counts(con, "hypokalemia", "abnormality_given_normomg", "same_draw") == (1, 2, 2)
    assert counts(con, "hypokalemia", "abnormality_given_normomg", "24h") == (1, 2, 2)
    # Index = 4 low K results; Mg measured same draw for 2 (a, b), in 24 h for 3 (+ c, 10 h after b).
    assert counts(con, "hypokalemia", "hypomg_given_abnormality", "same_draw") == (1, 2, 4)
    assert counts(con, "hypokalemia", "hypomg_given_abnormality", "24h") == (1, 3, 4)
    assert counts(con, "hypokalemia", "hypomg_given_abnormality", "24h", "patient") == (1, 2, 3)
    assert counts(con, "hyponatremia", "abnormality_given_hypomg", "same_draw") == (0, 1, 1)
    assert counts(con, "hyponatremia", "hypomg_given_abnormality", "24h") == (0, 0, 0)
    assert con.execute("SELECT count(*) FROM mart_cooccurrence").fetchone()[0] == 48


def test_hypocalcemia_definitions_total_corrected_ionized(tmp_path):
    labs = [
        # CA 8.0 mg/dL = 1.996 mmol/L (low total); albumin 45 g/L -> corrected 1.896 (low).
        lab("ca_low_alb_high", at(0), "MG", "1.5", "mg/dL", specimen_id="a"),
        lab("ca_low_alb_high", at(0), "CA", "8.0", "mg/dL", specimen_id="a"),
        lab("ca_low_alb_high", at(0), "ALB", "4.5", "g/dL", specimen_id="a"),
        # CA 8.0 mg/dL with albumin 2.0 g/dL (20 g/L): corrected 1.996 + 0.4 = 2.396 (not low).
        lab("ca_low_alb_low", at(0), "MG", "1.5", "mg/dL"),
        lab("ca_low_alb_low", at(0, 30), "CA", "8.0", "mg/dL"),
        lab("ca_low_alb_low", at(0, 40), "ALB", "2.0", "g/dL"),
        lab("ca_low_alb_low", at(0, 50), "ALB", "4.5", "g/dL"),   # farther: not used
        # CA without albumin in the draw: counts for total only.
        lab("ca_without_alb", at(0), "MG", "1.5", "mg/dL"),
        lab("ca_without_alb", at(0), "CA", "8.0", "mg/dL"),
        lab("ca_without_alb", at(2), "ALB", "2.0", "g/dL"),
        # ionized: ICA 1.10 low, 20 min from the Mg.
        lab("ionized_low", at(0), "MG", "1.5", "mg/dL"),
        lab("ionized_low", at(0, 20), "ICA", "1.10", "mmol/L", fluid="whole blood"),
    ]
    con = make_db(tmp_path, labs=labs)
    corrected = con.execute("SELECT patient_id, albumin_g_l, corrected_calcium_mmol_l FROM int_calcium_corrected "
                            "ORDER BY patient_id").fetchall()
    assert [(p, a) for p, a, _ in corrected] == [("ca_low_alb_high", 45.0), ("ca_low_alb_low", 20.0)]
    assert corrected[0][2] == pytest.approx(8.0 * 0.2495 + 0.02 * (40 - 45))
    assert corrected[1][2] == pytest.approx(8.0 * 0.2495 + 0.02 * (40 - 20))
    grid = {(r[0], r[1]): (r[2], r[3]) for r in con.execute(
        "SELECT hypocalcemia_definition, window_name, numerator, denominator FROM mart_sensitivity "
        "WHERE direction = 'abnormality_given_hypomg' AND abnormality = 'hypocalcemia' AND threshold_mg_dl = 1.7").fetchall()}
    assert grid[("total", "same_draw")] == (3, 3)
    assert grid[("corrected", "same_draw")] == (1, 2)
    assert grid[("ionized", "same_draw")] == (1, 1)
    assert counts(con, "hypocalcemia", "abnormality_given_hypomg", "same_draw") == (3, 3, 4)


def test_sensitivity_thresholds_rethreshold_the_index(tmp_path):
    con = make_db(tmp_path, labs=[
        lab("mg_1_45", at(0), "MG", "1.45", "mg/dL", specimen_id="a"), lab("mg_1_45", at(0), "K", "3.0", "mmol/L", specimen_id="a"),
        lab("mg_1_5", at(0), "MG", "1.5", "mg/dL", specimen_id="b"), lab("mg_1_5", at(0), "K", "4.0", "mmol/L", specimen_id="b"),
        lab("mg_1_75", at(0), "MG", "1.75", "mg/dL", specimen_id="c"), lab("mg_1_75", at(0), "K", "3.0", "mmol/L", specimen_id="c"),
        lab("mg_1_8", at(0), "MG", "1.8", "mg/dL", specimen_id="d"), lab("mg_1_8", at(0), "K", "3.0", "mmol/L", specimen_id="d"),
    ])
    grid = {r[0]: (r[1], r[2]) for r in con.execute(
        "SELECT threshold_mg_dl, numerator, denominator FROM mart_sensitivity "
        "WHERE direction = 'abnormality_given_hypomg' AND abnormality = 'hypokalemia' AND window_name = 'same_draw' ORDER BY 1").fetchall()}
    assert grid == {1.5: (1, 1), 1.6: (1, 2), 1.7: (1, 2), 1.8: (2, 3)}
    assert con.execute("SELECT count(*) FROM mart_sensitivity WHERE direction = 'abnormality_given_hypomg'").fetchone()[0] == 6 * 4 * 2
