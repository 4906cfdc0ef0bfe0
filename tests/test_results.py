"""results.json (contract.md schema_version 1): every key, reference sets by direction,
mg_tested_fraction and suppression, on hand-made data."""
from __future__ import annotations

import pytest

from builder import lab, make_db
from pipelines.analyse import build_results
from pipelines.config import Config, Privacy
from pipelines.stats import binomial_p_value, wilson_interval

# contract v1's keys, with the additions window_hours and mg_tested_suppressed
CONTRACT_COOC_KEYS = ["abnormality", "direction", "window", "window_hours", "level", "numerator", "denominator",
                      "prevalence", "ci_low", "ci_high", "mg_tested_fraction", "mg_tested_suppressed", "references",
                      "suppressed"]


def ward(n_low_k_with_mg: int, n_low_k_low_mg: int, n_low_k_untested: int) -> list[dict]:
    rows = []
    for i in range(n_low_k_with_mg):
        p = f"low_k_mg_{'low' if i < n_low_k_low_mg else 'normal'}_{i}"
        rows += [lab(p, "2024-03-01 08:00", "K", "3.0", "mmol/L", specimen_id=f"s{i}"),
                 lab(p, "2024-03-01 08:00", "MG", "1.5" if i < n_low_k_low_mg else "2.0", "mg/dL", specimen_id=f"s{i}")]
    for i in range(n_low_k_untested):
        rows.append(lab(f"low_k_untested_{i}", "2024-03-01 08:00", "K", "3.0", "mmol/L"))
    return rows


def test_results_have_every_contract_key_and_row(tmp_path):
    cfg = Config()
    results = build_results(make_db(tmp_path, labs=ward(30, 12, 5), config=cfg), cfg)
    assert list(results)[:8] == ["schema_version", "parameters", "counts", "cooccurrence", "prevalence_ratios",
                                 "sensitivity", "audit", "exposures"]
    # additions (the contract may only grow): the report's other charts' data
    assert list(results)[8:] == ["testing_rate_references", "data_window", "attrition", "quarantine_reasons",
                                 "mg_distribution", "statistics", "clustered", "strata", "table_one",
                                 "demographics", "adjusted_ratios", "sweep"]
    assert list(results["audit"]) == ["overall", "by_month", "by_severity", "by_care_unit",  # v1, then additions
                                      "period", "spc", "funnel", "time_to_check", "reflex_simulation", "worklist"]
    assert {"episodes", "mg_checked", "rate", "ci_low", "ci_high", "low_mg_episodes", "mg_repleted",
            "refractory_episodes", "refractory_mg_checked"} <= set(results["audit"]["overall"])
    assert [e["class"] for e in results["exposures"]] == sorted(
        ["loop_diuretic", "thiazide", "ppi", "aminoglycoside", "amphotericin_b", "platinum", "calcineurin_inhibitor",
         "mg_supplement", "k_supplement"])
    assert results["schema_version"] == 1
    assert set(results["counts"]) == {"lab_rows_read", "lab_rows_loaded", "lab_rows_out_of_scope",
                                      "lab_rows_quarantined", "lab_rows_superseded", "med_rows_read", "med_rows_loaded",
                                      "med_rows_quarantined", "patients", "mg_results", "hypomg_results"}
    assert results["counts"]["lab_rows_read"] == 65 and results["counts"]["patients"] == 35
    assert results["counts"]["mg_results"] == 30 and results["counts"]["hypomg_results"] == 12
    assert len(results["cooccurrence"]) == 4 * 3 * 2 * 2
    assert all(list(r) == CONTRACT_COOC_KEYS for r in results["cooccurrence"])
    assert len(results["prevalence_ratios"]) == 4 * 2 * 2
    # both directions: 6 definitions x 4 thresholds x 2 windows each
    assert len(results["sensitivity"]) == 2 * 6 * 4 * 2
    assert [r["direction"] for r in results["sensitivity"]] == (
        ["abnormality_given_hypomg"] * 48 + ["hypomg_given_abnormality"] * 48)
    assert {(r["window"], r["window_hours"]) for r in results["sensitivity"]} == {("same_draw", 1.0), ("24h", 24.0)}
    assert results["parameters"]["canonical_thresholds"]["hypomagnesemia_mmol_l"] == 1.7 * 0.4114


def test_hypomg_given_hypokalemia_with_references_and_testing_rate(tmp_path):
    cfg = Config()
    results = build_results(make_db(tmp_path, labs=ward(30, 12, 5), config=cfg), cfg)
    row = next(r for r in results["cooccurrence"] if r["abnormality"] == "hypokalemia"
               and r["direction"] == "hypomg_given_abnormality" and r["window"] == "same_draw" and r["level"] == "result")
    # 35 low K (index); Mg measured for 30; low for 12. 30/35 tested (remainder 5 < 11: suppressed).
    low, high = wilson_interval(12, 30)
    assert (row["numerator"], row["denominator"], row["prevalence"]) == (12, 30, 0.4)
    assert (row["ci_low"], row["ci_high"]) == (low, high)
    assert [r["set"] for r in row["references"]] == ["article", "whang_1984"]
    assert row["references"][0]["value"] == 0.42
    assert row["references"][0]["p_value"] == binomial_p_value(12, 30, 0.42)
    assert row["mg_tested_fraction"] is None  # 35 - 30 = 5 untested: a small cell
    assert row["mg_tested_suppressed"] is True


def test_mg_tested_fraction_when_cells_are_large(tmp_path):
    cfg = Config()
    results = build_results(make_db(tmp_path, labs=ward(30, 12, 15), config=cfg), cfg)
    row = next(r for r in results["cooccurrence"] if r["abnormality"] == "hypokalemia"
               and r["direction"] == "hypomg_given_abnormality" and r["window"] == "24h" and r["level"] == "patient")
    assert row["mg_tested_fraction"] == 30 / 45
    assert row["mg_tested_suppressed"] is False
    others = [r for r in results["cooccurrence"] if r["direction"] != "hypomg_given_abnormality"]
    # not applicable: null, and nothing withheld
    assert all(r["mg_tested_fraction"] is None and r["mg_tested_suppressed"] is False for r in others)


def test_liamis_reference_on_abnormality_given_hypomg_and_none_for_normomg(tmp_path):
    cfg = Config(privacy=Privacy(min_cell_size=0))
    results = build_results(make_db(tmp_path, labs=ward(3, 2, 0), config=cfg), cfg)
    given = next(r for r in results["cooccurrence"] if r["direction"] == "abnormality_given_hypomg"
                 and r["abnormality"] == "hyponatremia")
    normo = next(r for r in results["cooccurrence"] if r["direction"] == "abnormality_given_normomg")
    assert [r["set"] for r in given["references"]] == ["liamis"]
    assert given["references"][0]["value"] == 0.215
    assert normo["references"] == []


def test_small_cells_suppressed_by_default_and_shown_with_min_cell_size_zero(tmp_path):
    labs = ward(3, 2, 0)
    default = build_results(make_db(tmp_path / "a", labs=labs), Config())
    off_cfg = Config(privacy=Privacy(min_cell_size=0))
    off = build_results(make_db(tmp_path / "b", labs=labs, config=off_cfg), off_cfg)

    def pick(results):
        return next(r for r in results["cooccurrence"] if r["abnormality"] == "hypokalemia"
                    and r["direction"] == "abnormality_given_hypomg" and r["window"] == "24h" and r["level"] == "result")

    assert pick(default)["suppressed"] is True and pick(default)["numerator"] is None
    assert pick(default)["references"][0]["p_value"] is None
    assert (pick(off)["numerator"], pick(off)["denominator"], pick(off)["suppressed"]) == (2, 2, False)
    # hyponatremia was never measured: 0/0 stays zero and is not suppressed.
    zero = next(r for r in default["cooccurrence"] if r["abnormality"] == "hyponatremia")
    assert (zero["numerator"], zero["denominator"], zero["suppressed"], zero["prevalence"]) == (0, 0, False, None)


def test_prevalence_ratio_hypo_vs_normo(tmp_path):
    # 20 hypo Mg, 15 with low K; 40 normo Mg, 10 with low K; every Mg with K in the same draw.
    labs = []
    for i in range(20):
        labs += [lab(f"hypo_{i}", "2024-03-01 08:00", "MG", "1.5", "mg/dL", specimen_id=f"h{i}"),
                 lab(f"hypo_{i}", "2024-03-01 08:00", "K", "3.0" if i < 15 else "4.0", "mmol/L", specimen_id=f"h{i}")]
    for i in range(40):
        labs += [lab(f"normo_{i}", "2024-03-01 08:00", "MG", "2.0", "mg/dL", specimen_id=f"n{i}"),
                 lab(f"normo_{i}", "2024-03-01 08:00", "K", "3.0" if i < 10 else "4.0", "mmol/L", specimen_id=f"n{i}")]
    cfg = Config(privacy=Privacy(min_cell_size=0))
    results = build_results(make_db(tmp_path, labs=labs, config=cfg), cfg)
    pr = next(r for r in results["prevalence_ratios"] if r["abnormality"] == "hypokalemia"
              and r["window"] == "same_draw" and r["level"] == "result")
    assert pr["ratio"] == pytest.approx((15 / 20) / (10 / 40))
    assert pr["ci_low"] < pr["ratio"] < pr["ci_high"]
