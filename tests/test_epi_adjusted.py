"""Adjusted prevalence ratios (docs/definitions.md section 8, Adjusted ratios): the modified Poisson fit
recovers a known ratio from simulated data with a confounder (where the crude ratio is biased), and the
patient-level data set of a hand-made run gives the crude ratio worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from builder import lab, make_db
from pipelines.adjusted import modified_poisson
from pipelines.analyse import build_results
from pipelines.config import Config, Privacy
from pipelines.stats import Z_95, katz_ratio


def simulated(seed: int = 20240301, n: int = 20000):
    """Prevalence 0.1 x 2 (exposed) x 2.5 (confounder); the confounder doubles the odds of exposure."""
    rng = np.random.default_rng(seed)
    confounder = rng.random(n) < 0.4
    exposure = rng.random(n) < np.where(confounder, 0.6, 0.25)
    risk = 0.1 * np.where(exposure, 2.0, 1.0) * np.where(confounder, 2.5, 1.0)
    outcome = rng.random(n) < risk
    return outcome.astype(float), exposure.astype(float), {"confounder": confounder.astype(float)}


def test_modified_poisson_recovers_the_known_ratio():
    y, e, covariates = simulated()
    fit = modified_poisson(y, e, covariates)
    assert fit["converged"] and fit["covariates"] == ["confounder"]
    assert fit["ratio"] == pytest.approx(2.0, rel=0.08)
    assert fit["ci_low"] < 2.0 < fit["ci_high"]
    crude = (y[e == 1].mean()) / (y[e == 0].mean())
    assert crude > 2.3  # confounded: the adjustment is what brings it back to 2



def test_patterns_weighted_by_their_count_give_the_patient_level_fit():
    """The fit runs on distinct (outcome, covariates) patterns with frequency weights; statsmodels on
    every patient's own row (an independent fit) gives the same ratio, interval and p-value."""
    import statsmodels.api as sm

    y, e, covariates = simulated(n=5000)
    age = np.random.default_rng(7).integers(0, 5, len(y)).astype(float)  # a covariate with five levels
    fit = modified_poisson(y, e, covariates | {"age": age})
    X = np.column_stack([np.ones(len(y)), e, covariates["confounder"], age])
    every_row = sm.GLM(y, X, family=sm.families.Poisson()).fit(cov_type="HC0")
    beta, se = every_row.params[1], every_row.bse[1]
    assert fit["ratio"] == pytest.approx(np.exp(beta), rel=1e-9)
    assert fit["ci_low"] == pytest.approx(np.exp(beta - Z_95 * se), rel=1e-9)
    assert fit["p_value"] == pytest.approx(every_row.pvalues[1], rel=1e-6)

def test_constant_and_duplicate_covariates_are_dropped_and_named():
    y, e, covariates = simulated(n=2000)
    covariates |= {"always": np.ones(len(y)), "copy": covariates["confounder"].copy(), "exposure_again": e.copy()}
    fit = modified_poisson(y, e, covariates)
    assert fit["covariates"] == ["confounder"]
    assert fit["covariates_dropped"] == ["always", "copy", "exposure_again"]


def test_results_json_gives_crude_and_adjusted_at_patient_level(tmp_path):
    # 12 patients with one hypomagnesemia result (6 with low K), 24 with one normal Mg (6 with low K),
    # each with K at the same time: crude ratio (6/12) / (6/24) = 2; no covariate varies, so adjusted = crude
    labs = []
    for i in range(12):
        labs += [lab(f"h{i}", "2024-03-01 08:00", "MG", "1.5", "mg/dL"),
                 lab(f"h{i}", "2024-03-01 08:00", "K", "3.0" if i < 6 else "4.0", "mmol/L")]
    for i in range(24):
        labs += [lab(f"n{i}", "2024-03-01 08:00", "MG", "2.0", "mg/dL"),
                 lab(f"n{i}", "2024-03-01 08:00", "K", "3.0" if i < 6 else "4.0", "mmol/L")]
    config = Config(privacy=Privacy(min_cell_size=0))
    results = build_results(make_db(tmp_path, labs=labs, config=config), config)
    row = next(r for r in results["adjusted_ratios"] if r["abnormality"] == "hypokalemia")
    assert (row["n"], row["exposed"], row["exposed_events"], row["unexposed"], row["unexposed_events"]) == (
        36, 12, 6, 24, 6)
    assert row["crude_ratio"] == pytest.approx(2.0)
    assert (row["crude_ci_low"], row["crude_ci_high"]) == pytest.approx(katz_ratio(6, 12, 6, 24)[1:])
    assert row["converged"] and row["adjusted_ratio"] == pytest.approx(2.0, rel=1e-6)
    assert row["covariates"] == []  # no demographics, no drug exposure: nothing varies
    assert "sex_male" in row["covariates_dropped"]


def test_rows_standing_for_several_patients_give_the_fit_of_the_patients_themselves():
    """patient_patterns hands the fit one row per pattern with its patient count: the fit equals the
    one on every patient's row, covariates dropped alike."""
    y, e, covariates = simulated(n=3000)
    covariates |= {"always": np.ones(len(y))}
    rows = np.column_stack([y, e, covariates["confounder"], covariates["always"]])
    patterns, count = np.unique(rows, axis=0, return_counts=True)
    grouped = modified_poisson(patterns[:, 0], patterns[:, 1],
                               {"confounder": patterns[:, 2], "always": patterns[:, 3]}, count.astype(float))
    every = modified_poisson(y, e, covariates)
    assert len(patterns) == 8  # 2 x 2 x 2 patterns for 3,000 patients
    assert grouped["covariates"] == every["covariates"] == ["confounder"]
    assert grouped["covariates_dropped"] == every["covariates_dropped"] == ["always"]
    for key in ("ratio", "ci_low", "ci_high", "p_value"):
        assert grouped[key] == pytest.approx(every[key], rel=1e-12)
