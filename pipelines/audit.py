"""The quality team's audit statistics (docs/definitions.md section 5, Audit charts): pure functions.

Counts come from the audit marts (sql/marts/mart_audit*.sql); this module turns them into what a
quality team reads: the audit period chosen from the data, a p-chart (or Laney's p' chart) of the
magnesium-check rate with the special-cause rules and limits frozen on a baseline, funnel limits
for a fair comparison of care units, and the reflex-testing simulator. Nothing here reads a file
or a database, and nothing here suppresses: pipelines/analyse.py applies small-cell suppression.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable, Sequence

from scipy.stats import binom

from pipelines.stats import is_small_cell, wilson_interval

PERIODS = ("month", "quarter", "year")
# p-chart limits at 3 sigma; d2 for moving ranges of two points (Laney 2002)
SIGMA_LIMIT = 3.0
D2_MOVING_RANGE = 1.128
# Laney's p' is chosen when the baseline's z-scores vary at least this many times more from one
# period to the next than binomial variation allows (sigma_z), with enough moving ranges to tell.
LANEY_SIGMA_Z_CUTOFF = 1.5
LANEY_MIN_POINTS = 8
RUN_LENGTH = 8     # points in a row on one side of the centre line
TREND_LENGTH = 6   # points in a row each higher (or lower) than the one before
# funnel limits: two-sided coverage of each pair of limits (exact binomial quantiles)
FUNNEL_LEVELS = {"95": 0.95, "99_8": 0.998}
FUNNEL_GRID_POINTS = 60
# Jones BJ, Twomey PJ. J Clin Pathol 2009;62(9):816-9: specimens with K <= 2.5 mmol/L
REFLEX_REFERENCE = {
    "citation": "Jones BJ, Twomey PJ. Comparison of reflective and reflex testing for hypomagnesaemia in severe "
                "hypokalaemia. J Clin Pathol 2009;62(9):816-9. doi:10.1136/jcp.2008.060798",
    "k_at_most_mmol_l": 2.5,
    "mg_measured_before": 0.077, "mg_measured_with_reflex": 0.987,
    "hypomg_detected_before": 0.077, "hypomg_detected_with_reflex": 0.693,
    "tests_per_detection_with_reflex": 1.42,
}


# ---- periods ------------------------------------------------------------------------------------

def period_label(month: str, period: str) -> str:
    """The period of a month "YYYY-MM": "2024-03" (month), "2024-Q1" (quarter) or "2024" (year)."""
    year, mon = month[:4], int(month[5:7])
    if period == "month":
        return month
    if period == "quarter":
        return f"{year}-Q{(mon - 1) // 3 + 1}"
    return year


def calendar(first_month: str, last_month: str, period: str) -> list[str]:
    """Every period from the one holding `first_month` to the one holding `last_month`, empty ones too."""
    year, mon = int(first_month[:4]), int(first_month[5:7])
    end = (int(last_month[:4]), int(last_month[5:7]))
    out: list[str] = []
    while (year, mon) <= end:
        label = period_label(f"{year:04d}-{mon:02d}", period)
        if not out or out[-1] != label:
            out.append(label)
        year, mon = (year + 1, 1) if mon == 12 else (year, mon + 1)
    return out


def series(monthly: dict[str, tuple[int, int]], period: str) -> list[tuple[str, int, int]]:
    """(period, episodes, checked) of every period between the first and last month, empty ones as (p, 0, 0)."""
    if not monthly:
        return []
    totals = {p: [0, 0] for p in calendar(min(monthly), max(monthly), period)}
    for month, (n, x) in monthly.items():
        cell = totals[period_label(month, period)]
        cell[0] += n
        cell[1] += x
    return [(p, n, x) for p, (n, x) in totals.items()]


def choose_period(monthly: dict[str, tuple[int, int]], setting: str, min_episodes: int) -> dict[str, Any]:
    """The audit period: `setting` itself, or for "auto" the finest of month, quarter, year at which
    more than half of the periods between the first and last episode (empty periods included) reach
    the minimum cell size: at least `min_episodes` episodes, and neither the checked nor the
    unchecked episodes a small cell (1..min_episodes-1), so that the period can be shown. None when
    no period qualifies; `reason` says why in words."""
    candidates = []
    for period in PERIODS:
        cells = [(n, x) for _, n, x in series(monthly, period)]
        reaching = sum(1 for n, x in cells if n >= min_episodes and not is_small_cell(x, n, min_episodes))
        candidates.append({"period": period, "periods": len(cells), "periods_reaching_minimum": reaching})
    out: dict[str, Any] = {"setting": setting, "min_episodes": min_episodes, "candidates": candidates}
    if not monthly:
        return {**out, "period": None, "reason": "no hypokalemia episodes"}
    if setting != "auto":
        return {**out, "period": setting, "reason": f"set in the configuration (audit.period = \"{setting}\")"}
    for c in candidates:
        if 2 * c["periods_reaching_minimum"] > c["periods"]:
            return {**out, "period": c["period"],
                    "reason": f"the finest period at which most periods ({c['periods_reaching_minimum']} of "
                              f"{c['periods']}) hold at least {min_episodes} episodes, checked and unchecked "
                              f"each 0 or at least {min_episodes}"}
    year = candidates[-1]
    return {**out, "period": None,
            "reason": f"even by year only {year['periods_reaching_minimum']} of {year['periods']} years hold at "
                      f"least {min_episodes} episodes with checked and unchecked episodes each 0 or at least "
                      f"{min_episodes}, so no trend can be drawn without withholding most of it"}


def in_baseline(label: str, start: str, end: str) -> bool:
    """Whether a period lies in the configured baseline [start, end] (ISO dates; blank = open).

    A period belongs to the baseline when its first day is on or after `start` and its last day on
    or before `end`, so that a baseline never includes half a period."""
    first, last = period_bounds(label)
    return (not start or first >= date.fromisoformat(start)) and (not end or last <= date.fromisoformat(end))


def period_bounds(label: str) -> tuple[date, date]:
    """First and last day of a period label ("2024", "2024-Q1", "2024-03")."""
    year = int(label[:4])
    if len(label) == 4:
        first_month, last_month = 1, 12
    elif "Q" in label:
        q = int(label[-1])
        first_month, last_month = 3 * q - 2, 3 * q
    else:
        first_month = last_month = int(label[5:7])
    following = date(year + 1, 1, 1) if last_month == 12 else date(year, last_month + 1, 1)
    return date(year, first_month, 1), date.fromordinal(following.toordinal() - 1)


# ---- control chart ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    """One period of the chart: its label, episodes (n) and episodes with Mg checked (x)."""

    period: str
    n: int
    x: int


def p_chart(points: Sequence[Point], baseline: Sequence[bool], hidden: Iterable[str] = ()) -> dict[str, Any]:
    """A p-chart of x/n per period with limits frozen on the baseline periods.

    Centre p̄ = Σx / Σn over the baseline periods with episodes; each period's sigma_i =
    sqrt(p̄(1 - p̄)/n_i). Laney's p' multiplies sigma_i by sigma_z, the mean moving range of the
    baseline's z_i = (p_i - p̄)/sigma_i divided by 1.128; it is chosen when sigma_z >=
    LANEY_SIGMA_Z_CUTOFF with at least LANEY_MIN_POINTS baseline points (over-dispersion: with
    large denominators ordinary limits flag almost every point), never to narrow the limits.
    Limits p̄ ± 3 sigma, clipped to [0, 1]. Periods in `hidden` (withheld small cells) are no points
    of the chart: they take no part in sigma_z or the rules, and get no limits (a limit at n_i would
    give n_i away); they still count in p̄, which the document publishes only with its totals safe.
    """
    hidden = set(hidden)
    base = [p for p, b in zip(points, baseline) if b and p.n > 0]
    total_n, total_x = sum(p.n for p in base), sum(p.x for p in base)
    if total_n == 0:
        return {"chart": None, "chart_reason": "no baseline period has episodes", "centre": None, "sigma_z": None,
                "points": [_point(p, b, None, None, None) for p, b in zip(points, baseline)], "signals": []}
    centre = total_x / total_n
    shown_base = [p for p in base if p.period not in hidden]
    sigma_z = laney_sigma_z(shown_base, centre)
    laney = sigma_z is not None and sigma_z >= LANEY_SIGMA_Z_CUTOFF and len(shown_base) >= LANEY_MIN_POINTS
    factor = sigma_z if laney else 1.0
    out_points = []
    for p, b in zip(points, baseline):
        if p.n == 0 or p.period in hidden:
            out_points.append(_point(p, b, centre, None, None))
            continue
        half = SIGMA_LIMIT * factor * math.sqrt(centre * (1 - centre) / p.n)
        out_points.append(_point(p, b, centre, max(0.0, centre - half), min(1.0, centre + half)))
    signals = special_causes(out_points)
    return {"chart": "laney_p_prime" if laney else "p", "chart_reason": chart_reason(laney, sigma_z, len(shown_base)),
            "centre": centre, "sigma_z": sigma_z, "points": out_points, "signals": signals}


def laney_sigma_z(points: Sequence[Point], centre: float) -> float | None:
    """sigma_z = mean |z_i - z_(i-1)| / 1.128 over consecutive points; None with fewer than two."""
    if centre <= 0 or centre >= 1:
        return None
    z = [(p.x / p.n - centre) / math.sqrt(centre * (1 - centre) / p.n) for p in points if p.n > 0]
    if len(z) < 2:
        return None
    ranges = [abs(b - a) for a, b in zip(z, z[1:])]
    return sum(ranges) / len(ranges) / D2_MOVING_RANGE


def chart_reason(laney: bool, sigma_z: float | None, n_points: int) -> str:
    if sigma_z is None:
        return "p-chart: too few baseline points to measure over-dispersion"
    if laney:
        return (f"Laney p' chart: the baseline varies {sigma_z:.2f} times more than binomial variation "
                f"(sigma_z >= {LANEY_SIGMA_Z_CUTOFF:g}), so ordinary limits would flag most points")
    if n_points < LANEY_MIN_POINTS:
        return f"p-chart: fewer than {LANEY_MIN_POINTS} baseline points to judge over-dispersion (sigma_z {sigma_z:.2f})"
    return f"p-chart: no clear over-dispersion (sigma_z {sigma_z:.2f} < {LANEY_SIGMA_Z_CUTOFF:g})"


def _point(p: Point, baseline: bool, centre: float | None, lcl: float | None, ucl: float | None) -> dict[str, Any]:
    rate = p.x / p.n if p.n else None
    return {"period": p.period, "episodes": p.n, "mg_checked": p.x, "rate": rate, "centre": centre,
            "lcl": lcl, "ucl": ucl, "in_baseline": baseline,
            "outside_limits": False, "run_of_8": False, "trend_of_6": False}


def special_causes(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flag the three rules on the points that have limits, in period order: a point outside the
    limits (strictly); RUN_LENGTH or more points in a row strictly on one side of the centre (a
    point on the centre ends a run); TREND_LENGTH or more points in a row each strictly higher, or
    each strictly lower, than the one before (a tie ends a trend). A period without a point (no
    episodes, or withheld) ends runs and trends: nobody can say they went on through it. Every
    point of a run or trend is flagged. Returns one signal per rule occurrence."""
    charted = [p["lcl"] is not None for p in points]
    signals = []
    for p, c in zip(points, charted):
        if c and (p["rate"] > p["ucl"] or p["rate"] < p["lcl"]):
            p["outside_limits"] = True
            signals.append({"rule": "outside_limits", "periods": [p["period"]],
                            "direction": "above" if p["rate"] > p["ucl"] else "below"})
    sides = [_sign(p["rate"] - p["centre"]) if c else 0 for p, c in zip(points, charted)]
    for start, end, side in _streaks(sides):
        if end - start >= RUN_LENGTH:
            for p in points[start:end]:
                p["run_of_8"] = True
            signals.append({"rule": "run_of_8", "periods": [p["period"] for p in points[start:end]],
                            "direction": "above" if side > 0 else "below"})
    # step i joins points i and i + 1; a trend of k points is k - 1 equal steps in a row
    steps = [_sign(b["rate"] - a["rate"]) if ca and cb else 0
             for a, b, ca, cb in zip(points, points[1:], charted, charted[1:])]
    for start, end, side in _streaks(steps):
        if end - start + 1 >= TREND_LENGTH:
            members = points[start:end + 1]
            for p in members:
                p["trend_of_6"] = True
            signals.append({"rule": "trend_of_6", "periods": [p["period"] for p in members],
                            "direction": "increasing" if side > 0 else "decreasing"})
    return signals


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def _streaks(values: list[int]) -> list[tuple[int, int, int]]:
    """Maximal [start, end) stretches of one non-zero value (zeros belong to no stretch)."""
    out, start = [], 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            if values[start] != 0:
                out.append((start, i, values[start]))
            start = i
    return out


# ---- funnel plot --------------------------------------------------------------------------------

def funnel_limits(centre: float, n: int) -> dict[str, float]:
    """Exact binomial funnel limits at n around the centre rate, as rates.

    For each level (95%, 99.8%) the lower limit is the (1 - level)/2 quantile and the upper the
    (1 + level)/2 quantile of Binomial(n, centre), divided by n; a unit whose count equals a limit
    count lies on the limit and counts as inside."""
    out = {}
    for name, level in FUNNEL_LEVELS.items():
        low = binom.ppf((1 - level) / 2, n, centre) if n else 0.0
        high = binom.ppf((1 + level) / 2, n, centre) if n else 0.0
        out[f"lower_{name}"] = float(low) / n if n else None
        out[f"upper_{name}"] = float(high) / n if n else None
    return out


def funnel_position(x: int, n: int, centre: float) -> str:
    """Where a unit's x of n lies: 'inside', 'above_95', 'below_95', 'above_99_8', 'below_99_8'."""
    limits = funnel_limits(centre, n)
    rate = x / n
    for level in ("99_8", "95"):
        if rate > limits[f"upper_{level}"]:
            return f"above_{level}"
        if rate < limits[f"lower_{level}"]:
            return f"below_{level}"
    return "inside"


def funnel_curve(centre: float, largest_n: int) -> list[dict[str, Any]]:
    """The limits on a grid of denominators from 1 to `largest_n` (geometric, whole numbers): the
    curve is drawn through these and never at a withheld unit's own denominator."""
    if largest_n < 1:
        return []
    grid = sorted({max(1, int(round(largest_n ** (i / (FUNNEL_GRID_POINTS - 1))))) for i in range(FUNNEL_GRID_POINTS)})
    return [{"episodes": n, **funnel_limits(centre, n)} for n in grid]


# ---- reflex-testing simulator -------------------------------------------------------------------

def reflex_simulation(rows: Sequence[dict[str, Any]], thresholds: Sequence[float], months: int) -> list[dict[str, Any]]:
    """For each rule "add Mg to every K below X": extra Mg tests (low K results below X without a Mg
    result in the same draw), per month of data; untested episodes whose lowest K is below X; and
    the hypomagnesemia expected among them from the prevalence among tested episodes of the same
    severity (low Mg among Mg-checked episodes, Wilson 95% interval), summed over severities. The
    interval of the expected number sums each severity's bounds (conservative). `rows` are
    mart_audit_reflex rows (k_value_mmol_l, severity, k_results_without_mg, episodes,
    episodes_checked, episodes_checked_low_mg)."""
    prevalence = severity_prevalence(rows)
    out = []
    for threshold in thresholds:
        below = [r for r in rows if r["k_value_mmol_l"] < threshold]
        extra = sum(r["k_results_without_mg"] for r in below)
        untested: dict[str, int] = {}
        for r in below:
            if r["severity"] is not None:
                untested[r["severity"]] = untested.get(r["severity"], 0) + r["episodes"] - r["episodes_checked"]
        expected = low = high = 0.0
        unknown = [s for s, u in untested.items() if u and prevalence.get(s, {}).get("denominator", 0) == 0]
        for s, u in untested.items():
            p = prevalence.get(s)
            if u and p and p["denominator"]:
                expected += u * p["prevalence"]
                low += u * p["ci_low"]
                high += u * p["ci_high"]
        estimable = not unknown
        out.append({
            "k_below_mmol_l": threshold,
            "extra_mg_tests": extra,
            "extra_mg_tests_per_month": extra / months if months else None,
            "untested_episodes": sum(untested.values()),
            "untested_by_severity": dict(sorted(untested.items())),
            "expected_hypomg_detections": expected if estimable else None,
            "expected_ci_low": low if estimable else None,
            "expected_ci_high": high if estimable else None,
            "tests_per_detection": extra / expected if estimable and expected > 0 else None,
            "severities_without_tested_episodes": sorted(unknown),
        })
    return out


def severity_prevalence(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Low Mg among Mg-checked episodes per severity, with its Wilson 95% interval."""
    counts: dict[str, list[int]] = {}
    for r in rows:
        if r["severity"] is not None:
            c = counts.setdefault(r["severity"], [0, 0])
            c[0] += r["episodes_checked_low_mg"]
            c[1] += r["episodes_checked"]
    out = {}
    for s, (x, n) in sorted(counts.items()):
        low, high = wilson_interval(x, n)
        out[s] = {"severity": s, "numerator": x, "denominator": n, "prevalence": x / n if n else None,
                  "ci_low": low, "ci_high": high}
    return out


def months_between(first_day: str | None, last_day: str | None) -> int:
    """Calendar months from the month of `first_day` to that of `last_day`, both included (ISO dates)."""
    if not first_day or not last_day:
        return 0
    return (int(last_day[:4]) - int(first_day[:4])) * 12 + int(last_day[5:7]) - int(first_day[5:7]) + 1
