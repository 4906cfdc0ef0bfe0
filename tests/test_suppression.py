"""Complementary suppression (analysis plan section 7, issue 15): on hand-made results documents,
no suppressed value can be recovered by subtracting shown values."""
from __future__ import annotations

import copy
import random

import pytest

from pipelines.suppression import leaks, suppress

MIN = 11
PARAMETERS = {"thresholds": {"hypomagnesemia_mg_dl": 1.7}, "analysis": {"hypocalcemia_definition": "total"}}


# ---- hand-made documents ------------------------------------------------------------------------

def proportion(n: int, d: int, **labels) -> dict:
    return {**labels, "numerator": n, "denominator": d, "prevalence": n / d if d else None, "ci_low": 0.1,
            "ci_high": 0.9, "suppressed": False}


def audit_row(episodes: int, checked: int, **labels) -> dict:
    return {**labels, "episodes": episodes, "mg_checked": checked, "rate": checked / episodes if episodes else None,
            "ci_low": 0.1, "ci_high": 0.9, "suppressed": False}


def overall(episodes: int, checked: int) -> dict:
    return {**audit_row(episodes, checked), "low_mg_episodes": 0, "mg_repleted": 0, "refractory_episodes": 0,
            "refractory_mg_checked": 0, "repleted_rate": None, "repleted_ci_low": None, "repleted_ci_high": None,
            "repleted_suppressed": False, "refractory_checked_rate": None, "refractory_checked_ci_low": None,
            "refractory_checked_ci_high": None, "refractory_suppressed": False}


def audit_doc(total: tuple[int, int], section: str = "by_month", name: str = "month", **parts) -> dict:
    by = {"by_month": [], "by_severity": [], "by_care_unit": []}
    by[section] = [audit_row(e, c, **{name: key}) for key, (e, c) in parts.items()]
    return {"audit": {"overall": overall(*total), **by}}


def sens(threshold: float, n: int, d: int, window: str = "24h", abnormality: str = "hypokalemia") -> dict:
    return proportion(n, d, abnormality=abnormality, mg_threshold_mg_dl=threshold, window=window,
                      hypocalcemia_definition=None)


def cooc(abnormality: str, direction: str, window: str, level: str, n: int, d: int) -> dict:
    return {**proportion(n, d, abnormality=abnormality, direction=direction, window=window, level=level),
            "mg_tested_fraction": None, "references": [{"set": "liamis", "value": 0.26, "p_value": 0.01}]}


def counts(**values) -> dict:
    return {"counts": values}


def shown(row: dict, *keys: str) -> tuple:
    return tuple(row[k] for k in keys)


def is_hidden(row: dict, *keys: str) -> bool:
    return row["suppressed"] is True and all(row[k] is None for k in keys)


# ---- each derivation of the issue ---------------------------------------------------------------

def test_a_small_month_is_suppressed_with_the_next_smallest_month():
    # March 5/5 is small; overall minus January and February would give it back: February (the
    # next-smallest) goes too, and March + February = 50/30 (20 unchecked) is not small.
    doc = audit_doc((100, 60), jan=(50, 30), feb=(45, 25), mar=(5, 5))
    out = suppress(doc, MIN)
    jan, feb, mar = out["audit"]["by_month"]
    assert is_hidden(mar, "episodes", "mg_checked", "rate") and is_hidden(feb, "episodes", "mg_checked", "rate")
    assert shown(jan, "episodes", "mg_checked", "suppressed") == (50, 30, False)
    assert shown(out["audit"]["overall"], "episodes", "mg_checked", "suppressed") == (100, 60, False)
    assert doc["audit"]["by_month"][2]["episodes"] == 5  # the input document is not changed


def test_the_issues_severity_example_ends_with_mild_and_moderate_suppressed():
    # overall 75/50, mild 62/39: moderate 13/11 has 2 unchecked (small) and would be 75-62 / 50-39
    doc = audit_doc((75, 50), "by_severity", "severity", mild=(62, 39), moderate=(13, 11))
    out = suppress(doc, MIN)
    mild, moderate = out["audit"]["by_severity"]
    assert is_hidden(moderate, "episodes", "mg_checked") and is_hidden(mild, "episodes", "mg_checked")
    assert leaks(out, doc, MIN) == []


def test_three_severities_where_the_hidden_pair_sums_to_a_small_unchecked_count():
    # moderate 26/20 (6 unchecked) and severe 6/4 are small; together 32/24, 8 unchecked: still small,
    # so mild goes too (this is the demo data's case)
    doc = audit_doc((133, 94), "by_severity", "severity", mild=(101, 70), moderate=(26, 20), severe=(6, 4))
    out = suppress(doc, MIN)
    assert all(r["suppressed"] for r in out["audit"]["by_severity"])
    assert shown(out["audit"]["overall"], "episodes", "mg_checked") == (133, 94)


def test_a_care_unit_and_the_episodes_without_one():
    # units A 50/30 and B 47/27 both large, but 3 episodes have no care unit: overall minus the units
    # would publish that 3, so B (the smaller unit) is suppressed; A + the rest = 53/33 is not small
    doc = audit_doc((100, 60), "by_care_unit", "care_unit", A=(50, 30), B=(47, 27))
    out = suppress(doc, MIN)
    a, b = out["audit"]["by_care_unit"]
    assert not a["suppressed"] and is_hidden(b, "episodes", "mg_checked")


def test_a_histogram_bin_is_suppressed_with_the_next_smallest_bin():
    bins = [{"from_mmol_l": 0.05 * i, "to_mmol_l": 0.05 * (i + 1), "results": n, "suppressed": False}
            for i, n in enumerate((40, 35, 20, 5))]
    doc = {**counts(mg_results=100), "mg_distribution": {"bin_width_mmol_l": 0.05, "bins": bins}}
    out = suppress(doc, MIN)
    assert [b["results"] for b in out["mg_distribution"]["bins"]] == [40, 35, None, None]
    assert [b["suppressed"] for b in out["mg_distribution"]["bins"]] == [False, False, True, True]
    assert out["counts"]["mg_results"] == 100


def test_neighbouring_sensitivity_thresholds_do_not_reveal_the_cell_between_them():
    # 1.7 and 1.8 mg/dL differ by 3/3 (the issue's case): one of them goes, and the remaining
    # neighbours 1.6 and 1.8 differ by 18/33 (15 without the abnormality), which is not small
    doc = {"sensitivity": [sens(1.6, 15, 30), sens(1.7, 30, 60), sens(1.8, 33, 63)]}
    out = suppress(doc, MIN)
    s16, s17, s18 = out["sensitivity"]
    assert is_hidden(s17, "numerator", "denominator", "prevalence", "ci_low", "ci_high")
    assert shown(s16, "numerator", "denominator") == (15, 30) and shown(s18, "numerator", "denominator") == (33, 63)


def test_the_sensitivity_row_of_the_analysis_threshold_keeps_its_headline_and_the_neighbour_goes():
    """The 1.7 mg/dL row publishes the same counts as the co-occurrence row: 1.8 is suppressed instead."""
    doc = {"parameters": PARAMETERS,
           "cooccurrence": [cooc("hypokalemia", "abnormality_given_hypomg", "24h", "result", 30, 60)],
           "sensitivity": [sens(1.6, 15, 30), sens(1.7, 30, 60), sens(1.8, 33, 63)]}
    out = suppress(doc, MIN)
    assert [r["suppressed"] for r in out["sensitivity"]] == [False, False, True]
    assert not out["cooccurrence"][0]["suppressed"]


def test_same_draw_within_the_window_for_the_same_threshold():
    doc = {"sensitivity": [sens(1.7, 28, 58, "same_draw"), sens(1.7, 30, 60, "24h")]}
    out = suppress(doc, MIN)
    assert [r["suppressed"] for r in out["sensitivity"]] == [True, False]


def test_a_suppressed_sensitivity_row_hides_the_co_occurrence_row_publishing_the_same_counts():
    doc = {"parameters": PARAMETERS,
           "cooccurrence": [cooc("hypokalemia", "abnormality_given_hypomg", "same_draw", "result", 28, 58),
                            cooc("hypokalemia", "abnormality_given_hypomg", "24h", "result", 30, 60)],
           "sensitivity": [sens(1.7, 28, 58, "same_draw"), sens(1.7, 30, 60, "24h")]}
    out = suppress(doc, MIN)
    same_draw = out["cooccurrence"][0]
    assert is_hidden(same_draw, "numerator", "denominator") and same_draw["references"][0]["p_value"] is None
    assert out["sensitivity"][0]["suppressed"] and not out["cooccurrence"][1]["suppressed"]


def test_a_prevalence_ratio_whose_input_is_suppressed_is_suppressed():
    doc = {"cooccurrence": [cooc("hypokalemia", "abnormality_given_hypomg", "same_draw", "result", 28, 58),
                            cooc("hypokalemia", "abnormality_given_hypomg", "24h", "result", 30, 60),
                            cooc("hypokalemia", "abnormality_given_normomg", "same_draw", "result", 50, 400),
                            cooc("hypokalemia", "abnormality_given_normomg", "24h", "result", 90, 420)],
           "prevalence_ratios": [{"abnormality": "hypokalemia", "window": w, "level": "result", "ratio": 3.0,
                                  "ci_low": 2.0, "ci_high": 4.0, "suppressed": False} for w in ("same_draw", "24h")]}
    out = suppress(doc, MIN)
    same_draw, window = out["prevalence_ratios"]
    assert same_draw == {"abnormality": "hypokalemia", "window": "same_draw", "level": "result", "ratio": None,
                         "ci_low": None, "ci_high": None, "suppressed": True}
    assert window["ratio"] == 3.0 and not window["suppressed"]


def test_quarantine_reasons_against_the_quarantined_count():
    reasons = [{"input_table": "labs", "reason": r, "rows": n, "suppressed": False}
               for r, n in (("bad_timestamp", 3), ("duplicate", 12), ("non_numeric_value", 15))]
    doc = {**counts(lab_rows_read=1030, lab_rows_loaded=950, lab_rows_out_of_scope=50, lab_rows_quarantined=30,
                    lab_rows_superseded=0), "quarantine_reasons": reasons}
    out = suppress(doc, MIN)
    assert [(r["rows"], r["suppressed"]) for r in out["quarantine_reasons"]] == [
        (None, True), (None, True), (15, False)]
    assert out["counts"]["lab_rows_quarantined"] == 30  # 30 - 15 = 15 hidden rows: not small


def test_a_small_count_is_suppressed_with_its_complement_and_zero_stays_zero():
    doc = counts(med_rows_read=835, med_rows_loaded=828, med_rows_quarantined=7, lab_rows_read=1000,
                 lab_rows_loaded=900, lab_rows_out_of_scope=100, lab_rows_quarantined=0, lab_rows_superseded=0,
                 mg_results=100, hypomg_results=95)
    out = suppress(doc, MIN)["counts"]
    assert out["med_rows_quarantined"] is None and out["med_rows_loaded"] is None and out["med_rows_read"] == 835
    assert out["lab_rows_quarantined"] == 0 and out["lab_rows_superseded"] == 0 and out["lab_rows_read"] == 1000
    # 100 Mg results, 95 low: the 5 not low would be 100 - 95
    assert out["hypomg_results"] is None and out["mg_results"] == 100


def test_attrition_steps_and_the_counts_they_repeat():
    steps = [("lab rows read", 1000, 300), ("magnesium results", 400, 200), ("hypomagnesemia results", 116, 56),
             ("hypomagnesemia results with potassium measured within the co-occurrence window", 115, 55)]
    doc = {**counts(lab_rows_read=1000, mg_results=400, hypomg_results=116),
           "attrition": [{"step": s, "rows": r, "patients": p, "suppressed": False} for s, r, p in steps]}
    out = suppress(doc, MIN)
    # 1 result and 1 patient lack potassium: the smaller step goes; the counts block keeps 116
    assert [(a["rows"], a["patients"]) for a in out["attrition"]] == [(1000, 300), (400, 200), (116, 56), (None, None)]
    assert out["attrition"][3]["suppressed"] and out["counts"]["hypomg_results"] == 116


def test_min_cell_size_zero_turns_everything_off():
    doc = audit_doc((75, 50), "by_severity", "severity", mild=(62, 39), moderate=(13, 11))
    assert suppress(doc, 0) == doc


def test_rows_suppressed_by_analyse_are_completed_from_the_raw_document():
    """analyse passes the primary-suppressed document and the same document built without suppression."""
    raw = audit_doc((75, 50), "by_severity", "severity", mild=(62, 39), moderate=(13, 11))
    primary = copy.deepcopy(raw)
    primary["audit"]["by_severity"][1].update(episodes=None, mg_checked=None, rate=None, ci_low=None, ci_high=None,
                                              suppressed=True)
    out = suppress(primary, MIN, raw=raw)
    assert all(r["suppressed"] and r["episodes"] is None for r in out["audit"]["by_severity"])
    assert leaks(primary, raw, MIN) and leaks(out, raw, MIN) == []


# ---- generated documents ------------------------------------------------------------------------

def _random_document(rng: random.Random) -> dict:
    """Months of an audit, histogram bins and a sensitivity chain, with many small cells."""
    months = {}
    for i in range(rng.randint(1, 6)):
        episodes = rng.choice([0, rng.randint(1, 12), rng.randint(1, 60)])
        months[f"m{i}"] = (episodes, rng.randint(0, episodes))
    extra = rng.choice([0, 0, rng.randint(1, 5)])  # episodes outside every month (a hidden remainder)
    total = (sum(e for e, _ in months.values()) + extra, sum(c for _, c in months.values()) + extra)
    doc = audit_doc(total, **months)
    bins = [rng.choice([0, rng.randint(1, 12), rng.randint(1, 80)]) for _ in range(rng.randint(1, 8))]
    doc["counts"] = {"mg_results": sum(bins), "hypomg_results": rng.randint(0, sum(bins))}
    doc["mg_distribution"] = {"bin_width_mmol_l": 0.05, "bins": [
        {"from_mmol_l": i, "to_mmol_l": i + 1, "results": n, "suppressed": False} for i, n in enumerate(bins)]}
    n = d = 0
    doc["sensitivity"] = []
    for t in (1.5, 1.6, 1.7, 1.8):
        step_d = rng.choice([rng.randint(0, 6), rng.randint(0, 40)])
        n, d = n + rng.randint(0, step_d), d + step_d
        doc["sensitivity"].append(sens(t, n, d))
    return doc


def _small(value: int) -> bool:
    return 1 <= value < MIN


def _derivations(published: dict, raw: dict) -> list[str]:
    """Independent of pipelines.suppression: what an attacker gets by subtraction from published values."""
    found = []
    total = published["audit"]["overall"]
    months = list(zip(published["audit"]["by_month"], raw["audit"]["by_month"]))
    remainder = raw["audit"]["overall"]["episodes"] - sum(r["episodes"] for _, r in months)
    if not total["suppressed"]:
        hidden = [r for p, r in months if p["suppressed"]]
        residual = {k: total[k] - sum(p[k] for p, _ in months if not p["suppressed"])
                    for k in ("episodes", "mg_checked")}
        residual["unchecked"] = residual["episodes"] - residual["mg_checked"]
        if len(hidden) == 1 and remainder == 0:
            found.append(f"month {hidden[0]} = overall - shown months")
        found += [f"overall - shown months: {k} = {v}" for k, v in residual.items() if _small(v)]
    elif months and all(not p["suppressed"] for p, _ in months) and remainder == 0:
        found.append("overall = sum of the months")
    bins = list(zip(published["mg_distribution"]["bins"], raw["mg_distribution"]["bins"]))
    if published["counts"]["mg_results"] is not None:
        hidden = [r for p, r in bins if p["suppressed"]]
        residual = published["counts"]["mg_results"] - sum(p["results"] for p, _ in bins if not p["suppressed"])
        if len(hidden) == 1:
            found.append(f"bin {hidden[0]} = mg_results - shown bins")
        if _small(residual):
            found.append(f"mg_results - shown bins = {residual}")
    chain = [r for r in published["sensitivity"] if not r["suppressed"]]
    for low, high in zip(chain, chain[1:]):
        n, d = high["numerator"] - low["numerator"], high["denominator"] - low["denominator"]
        if _small(n) or _small(d) or _small(d - n):
            found.append(f"sensitivity {high['mg_threshold_mg_dl']} - {low['mg_threshold_mg_dl']} = {n}/{d}")
    return found


def _primary_misses(published: dict, raw: dict) -> list[str]:
    """Small cells that are still shown."""
    misses = [f"month {r}" for p, r in zip(published["audit"]["by_month"], raw["audit"]["by_month"])
              if not p["suppressed"] and any(_small(v) for v in (r["episodes"], r["mg_checked"],
                                                                   r["episodes"] - r["mg_checked"]))]
    misses += [f"bin {r}" for p, r in zip(published["mg_distribution"]["bins"], raw["mg_distribution"]["bins"])
               if not p["suppressed"] and _small(r["results"])]
    return misses


@pytest.mark.parametrize("seed", range(300))
def test_generated_documents_leave_nothing_derivable(seed):
    rng = random.Random(seed)
    raw = _random_document(rng)
    out = suppress(raw, MIN)
    assert _derivations(out, raw) == []
    assert _primary_misses(out, raw) == []
    # every shown value is the true one, and zero is never suppressed
    for p, r in zip(out["mg_distribution"]["bins"], raw["mg_distribution"]["bins"]):
        assert p["results"] == (None if p["suppressed"] else r["results"])
        assert not (r["results"] == 0 and p["suppressed"])


def test_the_generated_check_finds_derivations_in_primary_suppression_alone():
    """The check above can fail: primary suppression alone leaves derivable cells in these documents."""
    failing = 0
    for seed in range(300):
        raw = _random_document(random.Random(seed))
        primary = copy.deepcopy(raw)
        for b in primary["mg_distribution"]["bins"]:
            if _small(b["results"]):
                b.update(results=None, suppressed=True)
        for m in primary["audit"]["by_month"]:
            if any(_small(v) for v in (m["episodes"], m["mg_checked"], m["episodes"] - m["mg_checked"])):
                m.update(episodes=None, mg_checked=None, suppressed=True)
        failing += bool(_derivations(primary, raw))
    assert failing > 50


# ---- validation.json examples -------------------------------------------------------------------

def test_validation_examples_keep_row_numbers_reasons_and_counts_only():
    from pipelines.validate import _safe_example

    row = {"source_file": "labs.csv", "source_row": 1500, "reason": "malformed_row", "status": "quarantined",
           "analyte": "MG", "unit": "mg/dL", "quarantined": 3, "patient_id": "P123", "encounter_id": "E9",
           "specimen_id": "S1", "result_id": "R1", "collected_at": "2024-03-01 08:00:00", "start_at": "x",
           "stop_at": "y", "care_unit": "John Smith", "drug": "Furosemide for Jane Roe", "route": "PO",
           "value": "1.5", "value_canonical": 0.617}
    assert _safe_example(row) == {"source_file": "labs.csv", "source_row": "1500", "reason": "malformed_row",
                                  "status": "quarantined", "analyte": "MG", "unit": "mg/dL", "quarantined": 3}
    # a "count" column holding text is not a count
    assert _safe_example({"rows": "John Smith", "drug": "x"}) == {}
