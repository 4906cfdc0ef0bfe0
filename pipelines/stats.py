"""Statistics of docs/definitions.md section 8: the interval methods (Wilson by default), exact binomial
test, Katz log interval, and the patient-clustered (robust variance) interval and test of repeated results."""
from __future__ import annotations

import math
from dataclasses import dataclass


class _LazyScipy:
    """scipy.stats.<name>, imported on first use: SciPy's statistics take about a second to load, and
    every command imports this module (through pipelines.config) while only a run's analyse step
    computes with it (docs/performance.md, start-up)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _target(self):
        import scipy.stats

        return getattr(scipy.stats, self.name)

    def __getattr__(self, attr: str):
        return getattr(self._target(), attr)

    def __call__(self, *args, **kwargs):
        return self._target()(*args, **kwargs)


beta, binomtest, chi2, norm = (_LazyScipy(n) for n in ("beta", "binomtest", "chi2", "norm"))

Z_95 = 1.959964


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float | None, float | None]:
    """Wilson score interval for successes/trials; (None, None) when there are no trials."""
    if trials == 0:
        return None, None
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    # The interval always contains p; at k = 0 or k = n floating point can miss it by 1e-16.
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def binomial_p_value(successes: int, trials: int, reference: float) -> float | None:
    """Exact two-sided binomial p-value of successes/trials against `reference` (scipy's method)."""
    if trials == 0:
        return None
    return float(binomtest(successes, trials, reference, alternative="two-sided").pvalue)


def katz_ratio(a: int, n1: int, c: int, n2: int, z: float = Z_95) -> tuple[float | None, float | None, float | None]:
    """Prevalence ratio (a/n1)/(c/n2) with the Katz log interval.

    No ratio when a denominator is zero or c is zero; no interval when a cell is zero.
    """
    if n1 == 0 or n2 == 0 or c == 0:
        return None, None, None
    ratio = (a / n1) / (c / n2)
    if a == 0:
        return ratio, None, None
    se = math.sqrt(1 / a - 1 / n1 + 1 / c - 1 / n2)
    return ratio, ratio * math.exp(-z * se), ratio * math.exp(z * se)


def is_small_cell(numerator: int | None, denominator: int | None, min_cell_size: int) -> bool:
    """Plan section 7: suppress when numerator, denominator or their difference is in 1..min-1."""
    if min_cell_size <= 0:
        return False
    cells = [numerator or 0, denominator or 0, (denominator or 0) - (numerator or 0)]
    return any(1 <= cell < min_cell_size for cell in cells)


# ---- interval methods (docs/definitions.md section 8, Interval methods) -------------------------
# Each takes successes and trials as numbers (floats allowed: the clustered interval passes the
# effective counts of section 8, Repeated measures) and returns (low, high), or (None, None) without trials.

INTERVAL_METHODS = ("wilson", "clopper-pearson", "jeffreys", "agresti-coull")
INTERVAL_LABELS = {
    "wilson": "Wilson score",
    "clopper-pearson": "Clopper-Pearson exact",
    "jeffreys": "Jeffreys",
    "agresti-coull": "Agresti-Coull",
}


def clopper_pearson_interval(successes: float, trials: float, z: float = Z_95) -> tuple[float | None, float | None]:
    """Clopper-Pearson 'exact' interval from beta quantiles; 0 at k = 0 and 1 at k = n."""
    if trials == 0:
        return None, None
    alpha = _alpha(z)
    low = 0.0 if successes <= 0 else float(beta.ppf(alpha / 2, successes, trials - successes + 1))
    high = 1.0 if successes >= trials else float(beta.isf(alpha / 2, successes + 1, trials - successes))
    return low, high


def jeffreys_interval(successes: float, trials: float, z: float = Z_95) -> tuple[float | None, float | None]:
    """Jeffreys interval (beta(k + 1/2, n - k + 1/2) quantiles), with Brown, Cai & DasGupta's (2001)
    boundary rule: the lower limit is 0 at k = 0 and the upper limit 1 at k = n."""
    if trials == 0:
        return None, None
    alpha = _alpha(z)
    a, b = successes + 0.5, trials - successes + 0.5
    low = 0.0 if successes <= 0 else float(beta.ppf(alpha / 2, a, b))
    high = 1.0 if successes >= trials else float(beta.isf(alpha / 2, a, b))
    return low, high


def agresti_coull_interval(successes: float, trials: float, z: float = Z_95) -> tuple[float | None, float | None]:
    """Agresti-Coull interval: Wald around (k + z^2/2) / (n + z^2), clipped to [0, 1]."""
    if trials == 0:
        return None, None
    n_c = trials + z * z
    p_c = (successes + z * z / 2) / n_c
    half = z * math.sqrt(p_c * (1 - p_c) / n_c)
    return max(0.0, p_c - half), min(1.0, p_c + half)


_INTERVALS = {
    "wilson": wilson_interval,
    "clopper-pearson": clopper_pearson_interval,
    "jeffreys": jeffreys_interval,
    "agresti-coull": agresti_coull_interval,
}


def proportion_interval(successes: float, trials: float, method: str = "wilson",
                        z: float = Z_95) -> tuple[float | None, float | None]:
    """The 95% interval of successes/trials by `method` (one of INTERVAL_METHODS)."""
    try:
        interval = _INTERVALS[method]
    except KeyError:
        raise ValueError(f"unknown interval method {method!r} (known: {', '.join(INTERVAL_METHODS)})") from None
    return interval(successes, trials, z)


def _alpha(z: float) -> float:
    """Two-sided alpha of the normal quantile z (0.05 for Z_95)."""
    return float(2 * norm.sf(z))


# ---- repeated measures: patients as clusters (docs/definitions.md section 8, Repeated measures) ---

@dataclass(frozen=True)
class ClusterSums:
    """Sufficient statistics of a proportion over clusters (patients), from mart_cooccurrence_clusters:
    clusters m, sum of n_i, sum of y_i, sum of y_i^2, sum of y_i n_i, sum of n_i^2 (y_i = numerator,
    n_i = denominator of patient i). They give the robust variance without any patient's counts."""

    clusters: int
    n: float
    y: float
    yy: float
    yn: float
    nn: float


@dataclass(frozen=True)
class Clustered:
    """A proportion's patient-clustered statistics: the robust (sandwich) variance of the ratio
    estimator, the naive binomial variance, their ratio (the design effect), the effective number of
    trials n / max(1, design effect), the mean results per patient, and the clustered interval."""

    prevalence: float | None
    variance: float | None
    naive_variance: float | None
    design_effect: float | None
    effective_trials: float | None
    results_per_patient: float | None
    ci_low: float | None
    ci_high: float | None


def clustered_proportion(s: ClusterSums, method: str = "wilson", z: float = Z_95) -> Clustered:
    """Robust variance of p = sum y / sum n with patients as clusters (the ratio-estimator sandwich,
    with the small-sample factor m / (m - 1)):

        V = m / (m - 1) * sum_i (y_i - p n_i)^2 / n^2

    design effect = V / (p (1 - p) / n); the interval is `method` applied to the effective counts
    p * n_eff of n_eff = n / max(1, design effect) trials (Korn & Graubard 1998): never narrower than
    the naive one. No variance with fewer than 2 patients or p in {0, 1} (design effect undefined:
    the interval is then the method's at n_eff = number of patients, the most conservative case)."""
    if s.n <= 0 or s.clusters <= 0:
        return Clustered(None, None, None, None, None, None, None, None)
    p = s.y / s.n
    per_patient = s.n / s.clusters
    naive = p * (1 - p) / s.n
    if s.clusters < 2 or naive <= 0:
        n_eff = float(s.clusters)
        low, high = proportion_interval(p * n_eff, n_eff, method, z)
        return Clustered(p, None, naive, None, n_eff, per_patient, low, high)
    residual_ss = max(0.0, s.yy - 2 * p * s.yn + p * p * s.nn)
    variance = s.clusters / (s.clusters - 1) * residual_ss / (s.n * s.n)
    deff = variance / naive
    n_eff = s.n / max(1.0, deff)
    low, high = proportion_interval(p * n_eff, n_eff, method, z)
    return Clustered(p, variance, naive, deff, n_eff, per_patient, low, high)


def clustered_p_value(s: ClusterSums, reference: float) -> float | None:
    """Two-sided p-value of p = sum y / sum n against `reference` with patients as clusters: the score
    statistic (p - p0)^2 / (p0 (1 - p0) / n) divided by the design effect (first-order Rao-Scott
    correction, design effect floored at 1), referred to chi-square with 1 degree of freedom."""
    if s.n <= 0 or not 0 < reference < 1:
        return None
    c = clustered_proportion(s)
    deff = max(1.0, c.design_effect) if c.design_effect is not None else s.n / max(1, s.clusters)
    p = s.y / s.n
    statistic = (p - reference) ** 2 / (reference * (1 - reference) / s.n) / deff
    return float(chi2.sf(statistic, 1))
