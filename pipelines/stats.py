"""Statistics of docs/definitions.md section 8: Wilson interval, exact binomial test, Katz log interval."""
from __future__ import annotations

import math

from scipy.stats import binomtest

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
