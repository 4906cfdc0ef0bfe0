"""Adjusted prevalence ratios (docs/definitions.md section 8, Adjusted ratios; results.json `adjusted_ratios`).

For each abnormality X, at patient level in the co-occurrence window: each patient once, by their
first magnesium result that is hypo- or normomagnesemic and has X measured in the window (the order of
the patient level, section 4). Outcome: X abnormal in the window; exposure: that result is
hypomagnesemic. Modified Poisson regression (a Poisson GLM with robust, HC0 sandwich errors; Zou 2004),
adjusted for age (per 10 years), sex and each drug class exposed at the result (analysis plan section 6);
a covariate that does not vary is left out and named. Missing age or sex enter as an `unknown`
indicator (age then 0 after centring), so no patient is dropped. The crude ratio of the same patients
(Katz interval) is beside it. The patient rows are read into memory for the fit and never leave it.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import duckdb
import numpy as np

from pipelines.stats import Z_95, is_small_cell, katz_ratio

AGE_SCALE_YEARS = 10.0


Patterns = tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]


def patient_patterns(con: duckdb.DuckDBPyConnection, abnormalities: list[str]) -> dict[str, Patterns]:
    """Per abnormality, (count, outcome, exposure, covariates) of its patient-level data set, as distinct
    patterns: the patients are grouped in SQL by what the fit reads (outcome, exposure, age, sex, the
    drug classes exposed; sql/marts/mart_adjusted_patterns.sql), so only the patterns and their counts
    reach Python."""
    found = con.execute(
        "SELECT abnormality, hypo, is_abnormal, age, sex, present, exposed, patients FROM mart_adjusted_patterns "
        "WHERE abnormality IN (SELECT unnest(?)) "
        "ORDER BY abnormality, hypo, is_abnormal, age NULLS LAST, sex, present, exposed", [abnormalities]).fetchall()
    names = [r[0] for r in con.execute("SELECT DISTINCT drug_class FROM ref_drug_classes ORDER BY drug_class").fetchall()]
    by_abnormality: dict[str, list[tuple]] = {a: [] for a in abnormalities}
    for abnormality, *row in found:
        present, exposed = ({n for i, n in enumerate(names) if bits >> i & 1} for bits in row[4:6])
        by_abnormality[abnormality].append((*row[:4], present, exposed, row[6]))
    return {a: _patterns(rows) for a, rows in by_abnormality.items()}


def _patterns(found: list[tuple]) -> Patterns:
    """(count, outcome, exposure, covariates) from rows (hypo, abnormal, age, sex, the drug classes present and
    exposed as sets, patients)."""
    count = np.array([float(r[6]) for r in found])
    outcome = np.array([1.0 if r[1] else 0.0 for r in found])
    exposure = np.array([1.0 if r[0] else 0.0 for r in found])
    ages = [r[2] if r[2] is not None and 0 <= r[2] <= 130 else None for r in found]
    known = [(a, c) for a, c in zip(ages, count) if a is not None]
    patients_known = sum(c for _, c in known)
    centre = sum(a * c for a, c in known) / patients_known if known else 0.0
    covariates = {
        "age_per_10_years": np.array([0.0 if a is None else (a - centre) / AGE_SCALE_YEARS for a in ages]),
        "age_unknown": np.array([1.0 if a is None else 0.0 for a in ages]),
        "sex_male": np.array([1.0 if r[3] == "male" else 0.0 for r in found]),
        "sex_unknown": np.array([1.0 if r[3] not in ("male", "female") else 0.0 for r in found]),
    }
    for drug_class in sorted(set().union(*(r[4] for r in found))):
        covariates[f"drug_{drug_class}"] = np.array([1.0 if drug_class in r[5] else 0.0 for r in found])
    return count, outcome, exposure, covariates


def modified_poisson(outcome: np.ndarray, exposure: np.ndarray, covariates: dict[str, np.ndarray],
                     count: np.ndarray | None = None) -> dict[str, Any]:
    """Prevalence ratio of `exposure` from a Poisson GLM with robust (HC0) errors, adjusted for the
    covariates that vary (the others are listed as dropped). Each row stands for `count` patients
    (one each without it). Returns ratio, 95% interval, p-value, convergence, and the covariates used
    and dropped."""
    # only runs that fit a model pay for the import; the GLM module alone, not statsmodels.api's every model
    from statsmodels.genmod import families
    from statsmodels.genmod.generalized_linear_model import GLM

    used: list[str] = []
    columns = [exposure]
    for name, x in covariates.items():
        # constant, or the same as the exposure or a covariate already in: no information of its own
        if len(x) and np.ptp(x) > 0 and not any(np.array_equal(x, other) for other in columns):
            used.append(name)
            columns.append(x)
    dropped = [name for name in covariates if name not in used]
    X = np.column_stack([np.ones(len(outcome)), exposure, *(covariates[name] for name in used)])
    # patients with the same outcome and covariates are one row weighted by their number: the same
    # estimates and HC0 errors (to rounding), at the cost of the distinct patterns, not the patients
    patterns, inverse = np.unique(np.column_stack([outcome, X]), axis=0, return_inverse=True)
    counts = np.bincount(inverse.ravel(), weights=np.ones(len(outcome)) if count is None else count)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = GLM(patterns[:, 0], patterns[:, 1:], family=families.Poisson(),
                         freq_weights=counts).fit(cov_type="HC0", maxiter=100)
        except Exception as exc:  # a singular design (e.g. a covariate equal to the exposure)
            return {"ratio": None, "ci_low": None, "ci_high": None, "p_value": None, "converged": False,
                    "covariates": used, "covariates_dropped": dropped, "note": f"not estimable: {exc}"}
    beta, se = float(fit.params[1]), float(fit.bse[1])
    converged = bool(fit.converged) and math.isfinite(beta) and math.isfinite(se)
    if not converged or se <= 0:  # se 0: every patient has the outcome (or none), nothing to estimate
        return {"ratio": None, "ci_low": None, "ci_high": None, "p_value": None, "converged": converged,
                "covariates": used, "covariates_dropped": dropped,
                "note": "did not converge" if not converged else "not estimable: no variation in the outcome"}
    return {"ratio": math.exp(beta), "ci_low": math.exp(beta - Z_95 * se), "ci_high": math.exp(beta + Z_95 * se),
            "p_value": float(fit.pvalues[1]), "converged": True, "covariates": used, "covariates_dropped": dropped,
            "note": ""}


def adjusted_ratio_rows(con: duckdb.DuckDBPyConnection, abnormalities: list[str], window: str,
                        min_cell: int) -> list[dict[str, Any]]:
    """One row per abnormality: n, events by group, crude and adjusted ratios; withheld (counts,
    ratios) when a group's events or non-events are a small cell."""
    out = []
    data = patient_patterns(con, abnormalities)
    for abnormality in abnormalities:
        w, y, e, covariates = data[abnormality]
        n = int(w.sum())
        n1, a = int((w * e).sum()), int((w * y * e).sum())
        n0, c = n - n1, int((w * y * (1 - e)).sum())
        row: dict[str, Any] = {"abnormality": abnormality, "window": window, "level": "patient",
                               "exposure": "hypomagnesemia", "reference": "normomagnesemia", "model": "modified_poisson",
                               "n": n, "events": a + c, "exposed": n1, "exposed_events": a,
                               "unexposed": n0, "unexposed_events": c}
        hidden = is_small_cell(a, n1, min_cell) or is_small_cell(c, n0, min_cell)
        crude = (None, None, None) if hidden else katz_ratio(a, n1, c, n0)
        fit = modified_poisson(y, e, covariates, w) if not hidden and n1 and n0 and (a + c) else {
            "ratio": None, "ci_low": None, "ci_high": None, "p_value": None, "converged": False,
            "covariates": [], "covariates_dropped": list(covariates), "note": "withheld" if hidden else "no data"}
        row.update({"crude_ratio": crude[0], "crude_ci_low": crude[1], "crude_ci_high": crude[2],
                    "adjusted_ratio": fit["ratio"], "adjusted_ci_low": fit["ci_low"],
                    "adjusted_ci_high": fit["ci_high"], "adjusted_p_value": fit["p_value"],
                    "converged": fit["converged"], "covariates": fit["covariates"],
                    "covariates_dropped": fit["covariates_dropped"], "note": fit["note"], "suppressed": hidden})
        if hidden:
            for key in ("n", "events", "exposed", "exposed_events", "unexposed", "unexposed_events"):
                row[key] = None
        out.append(row)
    return out
