"""The quality team's audit statistics (pipelines/audit.py, pipelines/audit_results.py): the automatic
period, the p-chart and Laney's p' chart with the three special-cause rules, baseline freezing, funnel
limits, the reflex simulator, their suppression and the [audit] settings. Monthly series are hand-made
with known special causes; every expected value is worked out in the comments."""
from __future__ import annotations

import math

import pytest

from pipelines import audit
from pipelines.audit import Point, choose_period, funnel_position, p_chart, reflex_simulation
from pipelines.audit_results import funnel, reflex_thresholds
from pipelines.config import load_config
from pipelines.errors import ConfigError
from pipelines.stats import wilson_interval

MONTHS_2024 = [f"2024-{m:02d}" for m in range(1, 13)]


def chart(xs, n=100, months=MONTHS_2024, baseline=None, hidden=()):
    points = [Point(m, n, x) for m, x in zip(months, xs)]
    return p_chart(points, baseline or [True] * len(points), hidden)


def flagged(result, rule):
    return [p["period"] for p in result["points"] if p[rule]]


# ---- the three rules ----------------------------------------------------------------------------

def test_one_point_outside_the_limits_and_limits_by_hand():
    # 11 months at 50/100 and July at 90/100: centre 640/1200 = 8/15; sigma = sqrt(8/15 * 7/15 / 100)
    result = chart([50] * 6 + [90] + [50] * 5)
    centre = 8 / 15
    sigma = math.sqrt(centre * (1 - centre) / 100)
    assert result["centre"] == pytest.approx(centre)
    july = result["points"][6]
    assert (july["lcl"], july["ucl"]) == (pytest.approx(centre - 3 * sigma), pytest.approx(centre + 3 * sigma))
    assert flagged(result, "outside_limits") == ["2024-07"]
    # 6 and 5 months below the centre on either side of July: no run of 8; flat: no trend
    assert flagged(result, "run_of_8") == [] and flagged(result, "trend_of_6") == []
    # z = -0.668 for 50/100 and 7.350 for July: two moving ranges of 8.018 over 11, / 1.128 = 1.292 < 1.5
    assert result["sigma_z"] == pytest.approx(2 * (0.9 - 0.5) / sigma / 11 / 1.128)
    assert result["chart"] == "p"
    assert result["signals"] == [{"rule": "outside_limits", "periods": ["2024-07"], "direction": "above"}]


def test_limits_vary_with_each_period_denominator_and_clip_to_zero_one():
    points = [Point("2024-01", 4, 4), Point("2024-02", 400, 200), Point("2024-03", 100, 50)]
    result = p_chart(points, [True] * 3)
    centre = 254 / 504
    small, large = result["points"][0], result["points"][1]
    assert small["ucl"] == 1.0 and small["lcl"] == pytest.approx(max(0.0, centre - 3 * math.sqrt(centre * (1 - centre) / 4)))
    assert large["ucl"] - large["lcl"] == pytest.approx(6 * math.sqrt(centre * (1 - centre) / 400))


def test_a_run_of_8_on_one_side_is_flagged_and_7_is_not():
    # 8 months at 60/100, then 2 at 45/100: centre 0.57, limits 0.57 +/- 0.149, all inside
    run = chart([60] * 8 + [45] * 2, months=MONTHS_2024[:10])
    assert flagged(run, "run_of_8") == MONTHS_2024[:8]
    assert flagged(run, "outside_limits") == []
    seven = chart([60] * 7 + [45] * 3, months=MONTHS_2024[:10])
    assert flagged(seven, "run_of_8") == []


def test_a_point_on_the_centre_line_or_a_withheld_period_ends_a_run():
    # centre exactly 0.5: 4 above, one at 0.5, 4 above, then 3 below that balance them
    xs = [60, 60, 60, 60, 50, 60, 60, 60, 60, 25, 25, 20]  # sum 600 = 0.5 x 1200
    assert chart(xs)["centre"] == 0.5 and flagged(chart(xs), "run_of_8") == []
    steady = [60] * 9 + [30] * 3  # sum 630: 9 above the centre 0.525
    assert flagged(chart(steady), "run_of_8") == MONTHS_2024[:9]
    assert flagged(chart(steady, hidden={"2024-05"}), "run_of_8") == []  # 4 + 4 around a withheld month


def test_a_trend_of_6_rising_is_flagged_5_is_not_and_a_tie_ends_it():
    months = MONTHS_2024[:8]
    rising = chart([50, 51, 52, 53, 54, 55, 50, 50], months=months)
    assert flagged(rising, "trend_of_6") == months[:6]
    assert rising["signals"][-1] == {"rule": "trend_of_6", "periods": months[:6], "direction": "increasing"}
    assert flagged(chart([50, 51, 52, 53, 54, 50, 50, 50], months=months), "trend_of_6") == []
    assert flagged(chart([50, 51, 52, 52, 53, 54, 55, 50], months=months), "trend_of_6") == []
    falling = chart([60, 58, 56, 54, 52, 50, 49, 60], months=months)
    assert flagged(falling, "trend_of_6") == months[:7]


def test_over_dispersed_large_denominators_choose_laney_p_prime():
    # 12 months of 5000 episodes alternating 50% and 56%: centre 0.53, binomial sigma 0.00706, so the
    # ordinary limits (+/- 0.0212) flag every month; z = +/- 4.250, moving range 8.501, sigma_z 7.536
    xs = [2500, 2800] * 6
    result = chart(xs, n=5000)
    sigma = math.sqrt(0.53 * 0.47 / 5000)
    assert result["sigma_z"] == pytest.approx(2 * 0.03 / sigma / 1.128)
    assert result["chart"] == "laney_p_prime" and "Laney" in result["chart_reason"]
    assert result["points"][0]["ucl"] == pytest.approx(0.53 + 3 * sigma * result["sigma_z"])
    assert flagged(result, "outside_limits") == []
    # the same rates on 100 episodes a month are ordinary binomial noise: a p-chart, no point outside
    small = chart([50, 56] * 6, n=100)
    assert small["chart"] == "p" and flagged(small, "outside_limits") == []


def test_baseline_freezes_the_limits_so_the_shift_after_it_shows():
    # January-June at 50/100 (baseline), July-December at 80/100: centre 0.5 +/- 0.15 from the baseline only
    baseline = [audit.in_baseline(m, "2024-01-01", "2024-06-30") for m in MONTHS_2024]
    assert baseline == [True] * 6 + [False] * 6
    result = chart([50] * 6 + [80] * 6, baseline=baseline)
    assert result["centre"] == 0.5
    assert result["points"][11]["ucl"] == pytest.approx(0.65)
    assert flagged(result, "outside_limits") == MONTHS_2024[6:]
    assert [p["in_baseline"] for p in result["points"]] == baseline
    # a baseline holds whole periods only: 2024-Q2 ends after 2024-05-31
    assert audit.in_baseline("2024-Q1", "", "2024-05-31") and not audit.in_baseline("2024-Q2", "", "2024-05-31")


# ---- the automatic period -----------------------------------------------------------------------

def months(count: int, per_month: int) -> dict[str, tuple[int, int]]:
    out = {}
    for i in range(count):
        out[f"{2022 + i // 12}-{i % 12 + 1:02d}"] = (per_month, per_month // 2)
    return out


@pytest.mark.parametrize("per_month,expected", [(3, "year"), (30, "month"), (300, "month")])
def test_automatic_period_for_3_30_and_300_episodes_a_month(per_month, expected):
    # 3 a month: a quarter holds 9 < 11, a year 36; 30 and 300 a month: every month reaches 11
    chosen = choose_period(months(24, per_month), "auto", 11)
    assert chosen["period"] == expected
    assert f"at least 11 episodes" in chosen["reason"]


def test_empty_periods_count_against_a_period_and_no_period_is_stated():
    # 22 episodes (11 checked) every other month and 1 in December: 6 of 12 months reach 11, which is
    # not most -> quarter (44, 22, 44, 23 episodes, none with a small checked or unchecked count)
    every_other = {**{f"2024-{m:02d}": (22, 11) for m in range(1, 13, 2)}, "2024-12": (1, 0)}
    chosen = choose_period(every_other, "auto", 11)
    assert chosen["period"] == "quarter"
    assert chosen["candidates"][0] == {"period": "month", "periods": 12, "periods_reaching_minimum": 6}
    sparse = {"2110-03": (2, 1), "2150-07": (5, 5), "2201-12": (4, 3)}
    none = choose_period(sparse, "auto", 11)
    assert none["period"] is None and "0 of 92 years" in none["reason"]
    assert choose_period(sparse, "month", 11)["period"] == "month"


def test_a_period_whose_unchecked_episodes_are_a_small_cell_does_not_count():
    # 15 episodes a month, 12 checked: 3 unchecked (withheld); a quarter 9 unchecked; a year 36
    chosen = choose_period(months_with(24, 15, 12), "auto", 11)
    assert chosen["period"] == "year"
    assert [c["periods_reaching_minimum"] for c in chosen["candidates"]] == [0, 0, 2]


def months_with(count: int, per_month: int, checked: int) -> dict[str, tuple[int, int]]:
    return {f"{2022 + i // 12}-{i % 12 + 1:02d}": (per_month, checked) for i in range(count)}


def test_series_fills_empty_periods_and_sums_months():
    assert audit.series({"2023-11": (3, 1), "2024-02": (5, 2)}, "quarter") == [
        ("2023-Q4", 3, 1), ("2024-Q1", 5, 2)]
    assert [p for p, _, _ in audit.series({"2023-11": (3, 1), "2024-02": (5, 2)}, "month")] == [
        "2023-11", "2023-12", "2024-01", "2024-02"]


# ---- funnel -------------------------------------------------------------------------------------

def test_funnel_unit_exactly_on_a_limit_is_inside():
    # Binomial(20, 0.5): P(X <= 13) = 0.942, P(X <= 14) = 0.979 -> the 97.5% quantile is 14;
    # P(X <= 5) = 0.021, P(X <= 6) = 0.058 -> the 2.5% quantile is 6; 99.9%: 17, 0.1%: 3
    limits = audit.funnel_limits(0.5, 20)
    assert limits == {"lower_95": 6 / 20, "upper_95": 14 / 20, "lower_99_8": 3 / 20, "upper_99_8": 17 / 20}
    assert [funnel_position(x, 20, 0.5) for x in (14, 15, 17, 18, 6, 5, 3, 2)] == [
        "inside", "above_95", "above_95", "above_99_8", "inside", "below_95", "below_95", "below_99_8"]


def unit(name, n, x):
    return {"group_value": name, "episodes": n, "mg_checked": x}


def test_funnel_units_sorted_by_rate_outside_named_and_withheld_units_reveal_nothing():
    # centre 150/300 = 0.5; Binomial(40, 0.5): 95% limits 14..26 -> A (26/40) lies on the limit,
    # B (27/40) above it; Binomial(115, 0.5): 47..68 (99.8%: 41..74) -> D (46/115) below the 95% limit
    overall = {"episodes": 300, "mg_checked": 150}
    units = [unit("A", 40, 26), unit("B", 40, 27), unit("C", 40, 20), unit("tiny", 5, 5), unit("D", 115, 46)]
    result = funnel(overall, units, 11)
    assert [u["care_unit"] for u in result["units"]] == ["B", "A", "C", "D", "tiny"]  # withheld last
    assert result["outside"] == [{"care_unit": "B", "position": "above_95"}, {"care_unit": "D", "position": "below_95"}]
    tiny = result["units"][-1]
    assert tiny["suppressed"] and tiny["episodes"] is None and tiny["position"] is None
    a = result["units"][1]
    assert a["position"] == "inside" and (a["ci_low"], a["ci_high"]) == wilson_interval(26, 40)
    # the limits are drawn on their own grid: the withheld unit's size changes nothing
    other = funnel(overall, [*units[:3], unit("tiny", 7, 7), units[4]], 11)
    assert other["curve"] == result["curve"] and result["curve"][-1]["episodes"] == 300
    withheld_overall = funnel({"episodes": 300, "mg_checked": 295}, units, 11)
    assert withheld_overall["centre"] is None and withheld_overall["curve"] == [] and withheld_overall["centre_suppressed"]


# ---- reflex simulator ---------------------------------------------------------------------------

REFLEX_ROWS = [
    {"k_value_mmol_l": 2.2, "severity": "severe", "k_results_without_mg": 3, "episodes": 4, "episodes_checked": 2,
     "episodes_checked_low_mg": 1},
    {"k_value_mmol_l": 2.8, "severity": "moderate", "k_results_without_mg": 5, "episodes": 10, "episodes_checked": 6,
     "episodes_checked_low_mg": 3},
    {"k_value_mmol_l": 3.2, "severity": "mild", "k_results_without_mg": 7, "episodes": 20, "episodes_checked": 10,
     "episodes_checked_low_mg": 2},
]


def test_reflex_simulator_by_hand():
    # prevalence among tested: severe 1/2, moderate 3/6, mild 2/10; untested: 2, 4, 10
    # K < 3.5: 15 extra tests over 10 months; expected 2 x 0.5 + 4 x 0.5 + 10 x 0.2 = 5; 15 / 5 = 3
    # K < 3.0: 8 tests, 2 x 0.5 + 4 x 0.5 = 3; K < 2.5: 3 tests, 1 detection
    rules = reflex_simulation(REFLEX_ROWS, [3.5, 3.0, 2.5], months=10)
    got = [(r["extra_mg_tests"], r["extra_mg_tests_per_month"], r["untested_episodes"],
            r["expected_hypomg_detections"], r["tests_per_detection"]) for r in rules]
    assert got == [(15, 1.5, 16, pytest.approx(5.0), pytest.approx(3.0)),
                   (8, 0.8, 6, pytest.approx(3.0), pytest.approx(8 / 3)),
                   (3, 0.3, 2, pytest.approx(1.0), pytest.approx(3.0))]
    low = 2 * wilson_interval(1, 2)[0] + 4 * wilson_interval(3, 6)[0] + 10 * wilson_interval(2, 10)[0]
    assert rules[0]["expected_ci_low"] == pytest.approx(low)


def test_reflex_simulator_without_tested_episodes_of_a_severity_says_so():
    rows = [{**REFLEX_ROWS[0], "episodes_checked": 0, "episodes_checked_low_mg": 0}]
    rule = reflex_simulation(rows, [2.5], months=1)[0]
    assert rule["expected_hypomg_detections"] is None and rule["severities_without_tested_episodes"] == ["severe"]
    assert audit.months_between("2110-04-08", "2111-03-01") == 12


# ---- [audit] settings ---------------------------------------------------------------------------

@pytest.mark.parametrize("body,key", [
    ('period = "week"', "audit.period"),
    ('baseline_start = "2024-13-01"', "audit.baseline_start"),
    ('baseline_start = "2024-06-01"\nbaseline_end = "2024-01-01"', "audit.baseline_end"),
    ("reflex_k_thresholds_mmol_l = [3.5, 0.5]", "audit.reflex_k_thresholds_mmol_l[1]"),
    ("reflex_k_thresholds_mmol_l = [3.0, 3.0]", "audit.reflex_k_thresholds_mmol_l"),
])
def test_audit_settings_are_range_checked(tmp_path, body, key):
    path = tmp_path / "c.toml"
    path.write_text(f"[audit]\n{body}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value).startswith(f"{path}: {key}: ")


def test_audit_settings_load():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.toml"
        path.write_text('[audit]\nperiod = "quarter"\nbaseline_start = "2024-01-01"\n'
                        "reflex_k_thresholds_mmol_l = [3.2]\n")
        config = load_config(path)
    assert (config.audit.period, config.audit.baseline_start, config.audit.reflex_k_thresholds_mmol_l) == (
        "quarter", "2024-01-01", (3.2,))
    assert config.to_dict()["audit"]["reflex_k_thresholds_mmol_l"] == [3.2]
    assert reflex_thresholds(config) == (3.2,)
    assert reflex_thresholds(load_config(None)) == (3.5, 3.0, 2.5)  # blank: the severity thresholds
