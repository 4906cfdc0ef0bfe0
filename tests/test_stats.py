"""Statistics (analysis plan section 8) against independent implementations, and small-cell
suppression (section 7)."""
from __future__ import annotations

import math

import pytest
from scipy.stats import binom
from statsmodels.stats.proportion import proportion_confint

from pipelines.analyse import proportion
from pipelines.stats import binomial_p_value, is_small_cell, katz_ratio, wilson_interval


@pytest.mark.parametrize("k,n", [(0, 5), (1, 1), (5, 5), (42, 100), (7, 311), (250, 251), (3, 40)])
def test_wilson_matches_statsmodels(k, n):
    low, high = wilson_interval(k, n)
    ref_low, ref_high = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert low == pytest.approx(ref_low, abs=1e-7)
    assert high == pytest.approx(ref_high, abs=1e-7)


@pytest.mark.parametrize("n", [1, 7, 30, 31, 1000, 123457])
def test_wilson_contains_the_estimate_exactly_at_the_edges(n):
    assert wilson_interval(n, n)[1] == 1.0 and wilson_interval(n, n)[0] < 1.0
    assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(0, n)[1] > 0.0


def minlike_p_value(k: int, n: int, p: float) -> float:
    """Exact two-sided binomial test by summing every outcome no more likely than the observed one."""
    observed = binom.pmf(k, n, p)
    return min(1.0, sum(binom.pmf(i, n, p) for i in range(n + 1) if binom.pmf(i, n, p) <= observed * (1 + 1e-7)))


@pytest.mark.parametrize("k,n,p", [(42, 100, 0.42), (10, 100, 0.42), (60, 100, 0.42), (3, 11, 0.23), (0, 20, 0.2),
                                   (20, 20, 0.2), (123, 400, 0.261)])
def test_binomial_p_value_matches_minlike_sum(k, n, p):
    assert binomial_p_value(k, n, p) == pytest.approx(minlike_p_value(k, n, p), rel=1e-9, abs=1e-12)


def test_katz_interval_by_hand():
    # a/n1 = 30/100, c/n2 = 20/200: RR = 3; SE = sqrt(1/30 - 1/100 + 1/20 - 1/200)
    ratio, low, high = katz_ratio(30, 100, 20, 200)
    se = math.sqrt(1 / 30 - 1 / 100 + 1 / 20 - 1 / 200)
    assert ratio == pytest.approx(3.0)
    assert low == pytest.approx(3.0 * math.exp(-1.959964 * se))
    assert high == pytest.approx(3.0 * math.exp(1.959964 * se))


def test_katz_has_no_interval_where_an_abnormal_count_is_zero():
    assert katz_ratio(0, 50, 10, 100) == (0.0, None, None)
    assert katz_ratio(5, 50, 0, 100) == (None, None, None)  # comparison group has no abnormal result
    assert katz_ratio(5, 0, 3, 100) == (None, None, None)


def test_katz_interval_exists_when_no_result_lacks_the_abnormality():
    """Plan section 8: both abnormal counts positive is enough; a = n1 (zero without) keeps it.

    a/n1 = 12/12, c/n2 = 20/80: RR = 4; SE = sqrt(1/12 - 1/12 + 1/20 - 1/80) = sqrt(0.0375).
    """
    ratio, low, high = katz_ratio(12, 12, 20, 80)
    se = math.sqrt(0.0375)
    assert ratio == pytest.approx(4.0)
    assert (low, high) == (pytest.approx(4.0 * math.exp(-1.959964 * se)), pytest.approx(4.0 * math.exp(1.959964 * se)))
    # both groups entirely abnormal: the interval degenerates to the ratio itself, but it exists
    assert katz_ratio(15, 15, 30, 30) == (pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0))


@pytest.mark.parametrize("num,den,expected", [
    (0, 0, False),      # zero stays zero
    (0, 11, False),
    (0, 10, True),      # denominator 10
    (1, 50, True),      # numerator 1
    (10, 50, True),
    (11, 50, False),
    (45, 50, True),     # remainder 5
    (39, 50, False),    # remainder 11
    (50, 50, False),    # remainder 0 is not a small cell
])
def test_small_cells(num, den, expected):
    assert is_small_cell(num, den, 11) is expected


def test_min_cell_size_zero_turns_suppression_off():
    assert is_small_cell(1, 2, 0) is False
    assert proportion(1, 2, 0)["numerator"] == 1


def test_suppressed_row_keeps_keys_with_nulls():
    row = proportion(3, 40, 11)
    assert row == {"numerator": None, "denominator": None, "prevalence": None, "ci_low": None, "ci_high": None,
                   "suppressed": True}
    zero = proportion(0, 0, 11)
    assert zero["suppressed"] is False and zero["numerator"] == 0 and zero["prevalence"] is None
