"""Interval methods (docs/definitions.md section 8) against statsmodels' independent implementation, the
configured method in results.json, and the patient-clustered interval on data whose answer is known:
identical repeated copies (wider than Wilson by the expected factor) and independent results (close to it)."""
from __future__ import annotations

import datetime as dt
import math

import pytest
from scipy.stats import chi2
from statsmodels.stats.proportion import proportion_confint

from builder import lab, make_db
from pipelines.analyse import build_results
from pipelines.config import Config, Privacy, Statistics, load_config
from pipelines.errors import ConfigError
from pipelines.stats import (
    ClusterSums, clustered_p_value, clustered_proportion, proportion_interval, wilson_interval,
)

CASES = [(0, 10), (10, 10), (3, 10), (1, 1), (0, 1), (17, 50), (250, 1000), (999, 1000)]
STATSMODELS = {"wilson": "wilson", "clopper-pearson": "beta", "agresti-coull": "agresti_coull",
               "jeffreys": "jeffreys"}


@pytest.mark.parametrize("method", sorted(STATSMODELS))
@pytest.mark.parametrize("k,n", CASES)
def test_each_method_matches_statsmodels(method, k, n):
    low, high = proportion_interval(k, n, method)
    ref_low, ref_high = proportion_confint(k, n, alpha=0.05, method=STATSMODELS[method])
    if method == "jeffreys":
        # Brown, Cai & DasGupta's boundary rule (statsmodels leaves the beta quantile there)
        ref_low = 0.0 if k == 0 else ref_low
        ref_high = 1.0 if k == n else ref_high
    assert low == pytest.approx(ref_low, abs=1e-7)
    assert high == pytest.approx(ref_high, abs=1e-7)
    assert 0.0 <= low <= k / n <= high <= 1.0


def test_boundaries_are_exact_where_the_method_says_so():
    assert proportion_interval(0, 10, "clopper-pearson")[0] == 0.0
    assert proportion_interval(10, 10, "clopper-pearson")[1] == 1.0
    assert proportion_interval(0, 10, "jeffreys")[0] == 0.0
    assert proportion_interval(10, 10, "jeffreys")[1] == 1.0
    # Clopper-Pearson at 0/10: upper = 1 - 0.025^(1/10), by hand
    assert proportion_interval(0, 10, "clopper-pearson")[1] == pytest.approx(1 - 0.025 ** 0.1, abs=1e-7)  # Z_95 is 1.959964
    assert proportion_interval(3, 0, "wilson") == (None, None)


def test_unknown_method_is_a_config_error_naming_the_key(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[statistics]\ninterval_method = "wald"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="statistics.interval_method"):
        load_config(path)
    path.write_text('[statistics]\ninterval_method = "jeffreys"\n', encoding="utf-8")
    assert load_config(path).statistics.interval_method == "jeffreys"


# ---- the clustered interval on sums -----------------------------------------------------------------

def copies(outcomes: list[int], c: int) -> ClusterSums:
    """Each patient's outcome repeated c times (y_i = c x_i, n_i = c)."""
    ys = [c * x for x in outcomes]
    return ClusterSums(len(outcomes), c * len(outcomes), sum(ys), sum(y * y for y in ys), sum(y * c for y in ys),
                       c * c * len(outcomes))


def test_identical_copies_widen_by_the_expected_factor():
    # m = 40 patients, 12 positive, each result copied c = 5 times: p = 0.3, N = 200.
    # V = m/(m-1) * sum (y_i - p c)^2 / N^2 = p(1-p)/(m-1), so the design effect is c m/(m-1) = 200/39
    # and the effective sample size N / deff = m - 1 = 39.
    s = copies([1] * 12 + [0] * 28, 5)
    c = clustered_proportion(s)
    assert c.prevalence == pytest.approx(0.3)
    assert c.design_effect == pytest.approx(5 * 40 / 39)
    assert c.effective_trials == pytest.approx(39)
    assert c.results_per_patient == pytest.approx(5)
    assert (c.ci_low, c.ci_high) == pytest.approx(wilson_interval(0.3 * 39, 39))
    naive_low, naive_high = wilson_interval(60, 200)
    ratio = (c.ci_high - c.ci_low) / (naive_high - naive_low)
    assert ratio > 2.0  # about sqrt(200/39) = 2.26; Wilson's shrinkage makes it a little smaller
    assert ratio == pytest.approx(math.sqrt(200 / 39), rel=0.05)


def test_independent_results_stay_close_to_wilson():
    # one result per patient: the design effect is m/(m-1), the interval Wilson's at m - 1 trials
    s = copies([1] * 30 + [0] * 70, 1)
    c = clustered_proportion(s)
    assert c.design_effect == pytest.approx(100 / 99)
    naive = wilson_interval(30, 100)
    assert c.ci_low == pytest.approx(naive[0], abs=0.002)
    assert c.ci_high == pytest.approx(naive[1], abs=0.002)
    assert c.ci_low <= naive[0] and c.ci_high >= naive[1]  # never narrower


def test_clustered_p_value_is_the_rao_scott_corrected_score_test():
    s = copies([1] * 12 + [0] * 28, 5)
    deff = 5 * 40 / 39
    expected = chi2.sf((0.3 - 0.42) ** 2 / (0.42 * 0.58 / 200) / deff, 1)
    assert clustered_p_value(s, 0.42) == pytest.approx(expected)
    # the naive score test (deff 1) is far smaller: repeated copies inflate the evidence
    assert chi2.sf((0.3 - 0.42) ** 2 / (0.42 * 0.58 / 200), 1) < expected / 10


def test_every_method_gives_a_clustered_interval_at_the_effective_counts():
    s = copies([1] * 12 + [0] * 28, 5)
    for method in STATSMODELS:
        c = clustered_proportion(s, method)
        assert (c.ci_low, c.ci_high) == pytest.approx(proportion_interval(0.3 * 39, 39, method))


# ---- end to end on hand-made results --------------------------------------------------------------

def at(days: float) -> str:
    return (dt.datetime(2024, 3, 1, 8, 0) + dt.timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S")


def repeated_labs() -> list[dict]:
    """12 patients, each with 3 hypomagnesemia results 3 days apart and a potassium at the same time:
    patients 0-5 always hypokalemic (3.0), 6-11 never (4.0)."""
    out = []
    for i in range(12):
        for d in range(3):
            out.append(lab(f"p{i}", at(3 * d), "MG", "1.5", "mg/dL"))
            out.append(lab(f"p{i}", at(3 * d), "K", "3.0" if i < 6 else "4.0", "mmol/L"))
    return out


def test_results_json_names_the_method_and_clusters_the_repeated_results(tmp_path):
    config = Config(privacy=Privacy(min_cell_size=0), statistics=Statistics("clopper-pearson"))
    con = make_db(tmp_path, labs=repeated_labs(), config=config)
    results = build_results(con, config)
    assert results["statistics"]["interval_method"] == "clopper-pearson"
    assert results["parameters"]["statistics"]["interval_method"] == "clopper-pearson"
    row = next(r for r in results["cooccurrence"] if (r["abnormality"], r["direction"], r["window"], r["level"])
               == ("hypokalemia", "abnormality_given_hypomg", "24h", "result"))
    assert (row["numerator"], row["denominator"]) == (18, 36)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(proportion_confint(18, 36, method="beta"))
    c = next(r for r in results["clustered"] if (r["abnormality"], r["direction"], r["window"])
             == ("hypokalemia", "abnormality_given_hypomg", "24h"))
    # by hand: y_i in {0, 3}, n_i = 3, m = 12: deff = 3 * 12 / 11, effective trials 11
    assert c["patients"] == 12 and c["results_per_patient"] == pytest.approx(3)
    assert c["design_effect"] == pytest.approx(36 / 11)
    assert (c["naive_ci_low"], c["naive_ci_high"]) == (row["ci_low"], row["ci_high"])
    assert (c["clustered_ci_low"], c["clustered_ci_high"]) == pytest.approx(
        proportion_confint(5.5, 11, method="beta"))
    liamis = next(ref for ref in c["references"] if ref["set"] == "liamis")
    assert liamis["clustered_p_value"] > liamis["p_value"]
    # the sums over patients add up to the co-occurrence mart, row by row
    mismatches = con.execute(
        "SELECT count(*) FROM mart_cooccurrence AS m LEFT JOIN mart_cooccurrence_clusters AS p "
        "USING (abnormality, direction, window_name) WHERE m.level = 'result' "
        "AND (coalesce(p.y, 0) <> m.numerator OR coalesce(p.n, 0) <> m.denominator)").fetchone()[0]
    assert mismatches == 0


def test_all_positive_rows_fall_back_to_the_patients_as_trials(tmp_path):
    config = Config(privacy=Privacy(min_cell_size=0))
    con = make_db(tmp_path, labs=repeated_labs(), config=config)
    results = build_results(con, config)
    c = next(r for r in results["clustered"] if (r["abnormality"], r["direction"], r["window"])
             == ("hypokalemia", "hypomg_given_abnormality", "24h"))
    # index: the 18 low K results of 6 patients, all with hypomagnesemia: p = 1, no variance;
    # the interval is Wilson's at 6 of 6 (one trial per patient)
    assert c["prevalence"] == 1.0 and c["design_effect"] is None and c["patients"] == 6
    assert (c["clustered_ci_low"], c["clustered_ci_high"]) == pytest.approx(wilson_interval(6, 6))


def test_default_run_keeps_wilson(tmp_path):
    config = Config(privacy=Privacy(min_cell_size=0))
    con = make_db(tmp_path, labs=repeated_labs(), config=config)
    results = build_results(con, config)
    row = next(r for r in results["cooccurrence"] if r["numerator"] == 18 and r["denominator"] == 36)
    assert (row["ci_low"], row["ci_high"]) == wilson_interval(18, 36)
    assert results["statistics"]["interval_method"] == "wilson"
