"""The audit's additions to results.json: `audit.period`, `spc`, `funnel`, `time_to_check`,
`reflex_simulation` and `worklist` (docs/definitions.md section 5, Audit charts; docs/contract.md).

`additions` reads the audit marts (aggregates only) and applies primary small-cell suppression;
`finish` runs after the document's own complementary pass (pipelines/suppression.py) and adds
complementary suppression for these sections with the same machinery (cells, groups, fixed point).
It only ever hides cells of these sections: a cell of the v1 document is never changed, so the
v1 keys of results.json stay exactly as pipelines/suppression.py left them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines import audit as stats
from pipelines.config import Config, Privacy
from pipelines.db import rows
from pipelines.stats import is_small_cell, wilson_interval
from pipelines.suppression import PROPORTION_KEYS, Cell, Chain, Depends, State, Sum, cells, check

SECONDS_PER_HOUR = 3600.0
PROPORTION = ("n", "d", "d-n")
# the measures of v1 audit cells (pipelines/suppression.py) in the order of ORDERED: d, n, d-n
V1_AUDIT = ("episodes", "mg_checked", "unchecked")
ORDERED = ("d", "n", "d-n")
WORKLIST_FILES = {"csv": "restricted/worklist.csv", "xlsx": "restricted/worklist.xlsx"}
SPC_POINT_KEYS = ("episodes", "mg_checked", "rate", "centre", "lcl", "ucl", "outside_limits", "run_of_8",
                  "trend_of_6")
UNIT_KEYS = ("episodes", "mg_checked", "rate", "ci_low", "ci_high", "position")
TIME_KEYS = ("episodes", "with_time", "never", "never_share", "q1_hours", "median_hours", "q3_hours")
RULE_COUNT_KEYS = ("extra_mg_tests", "extra_mg_tests_per_month", "untested_episodes")
RULE_ESTIMATE_KEYS = ("expected_hypomg_detections", "expected_ci_low", "expected_ci_high", "tests_per_detection")
REFLEX_ASSUMPTION = ("Expected detections assume that untested episodes have the prevalence of low magnesium "
                     "observed among tested (Mg-checked) episodes of the same severity; clinicians may test "
                     "the episodes they suspect, so this can overstate the yield.")


def minimum_episodes(config: Config) -> int:
    """Episodes a period needs for the automatic period: the run's min_cell_size, or its default when
    suppression is off (so that turning suppression off does not make the chart zigzag)."""
    return config.privacy.min_cell_size if config.privacy.min_cell_size > 0 else Privacy().min_cell_size


def _proportion(n: Any, d: Any) -> dict[str, int]:
    n, d = int(n or 0), int(d or 0)
    return {"n": n, "d": d, "d-n": d - n}


# ---- the sections, with primary suppression ----------------------------------------------------

def additions(con: Any, config: Config, min_cell: int, window: dict[str, Any]) -> dict[str, Any]:
    """The additions to `audit`, each row suppressed on its own counts (1..min_cell-1)."""
    marts = rows(con, "SELECT * FROM mart_audit ORDER BY grouping, group_value")
    monthly = {m["group_value"]: (m["episodes"], m["mg_checked"]) for m in marts if m["grouping"] == "month"}
    overall = next((m for m in marts if m["grouping"] == "overall"), None)
    period = stats.choose_period(monthly, config.audit.period, minimum_episodes(config))
    return {
        "period": period,
        "spc": spc(monthly, period["period"], config, min_cell),
        "funnel": funnel(overall, [m for m in marts if m["grouping"] == "care_unit"], min_cell),
        "time_to_check": time_to_check(con, period["period"], min_cell),
        "reflex_simulation": reflex(con, config, min_cell, window),
        "worklist": worklist(con, overall, min_cell),
    }


def spc(monthly: dict[str, tuple[int, int]], period: str | None, config: Config, min_cell: int,
        hidden: set[str] | None = None) -> dict[str, Any]:
    """The control chart of the Mg-check rate per period (pipelines/audit.py p_chart); points whose
    counts are small cells are withheld (null counts, rate, limits and flags; suppressed true)."""
    a = config.audit
    base = {"period": period, "baseline_start": a.baseline_start or None, "baseline_end": a.baseline_end or None}
    if period is None:
        return {**base, "chart": None, "chart_reason": "no audit period (see audit.period.reason)", "centre": None,
                "centre_suppressed": False, "sigma_z": None, "baseline_periods": [], "points": [], "signals": []}
    points = [stats.Point(p, n, x) for p, n, x in stats.series(monthly, period)]
    baseline = [stats.in_baseline(p.period, a.baseline_start, a.baseline_end) for p in points]
    if hidden is None:
        hidden = {p.period for p in points if is_small_cell(p.x, p.n, min_cell)}
    chart = stats.p_chart(points, baseline, hidden)
    for point in chart["points"]:
        point["suppressed"] = point["period"] in hidden
        if point["suppressed"]:
            for key in SPC_POINT_KEYS:
                point[key] = None
    return {**base, "chart": chart["chart"], "chart_reason": chart["chart_reason"], "centre": chart["centre"],
            "centre_suppressed": False, "sigma_z": chart["sigma_z"],
            "baseline_periods": [p.period for p, b in zip(points, baseline) if b and p.n > 0],
            "points": chart["points"], "signals": _shown_signals(chart["signals"], hidden)}


def _shown_signals(signals: list[dict[str, Any]], hidden: set[str]) -> list[dict[str, Any]]:
    return [s for s in signals if not hidden.intersection(s["periods"])]


def funnel(overall: dict[str, Any] | None, units: list[dict[str, Any]], min_cell: int) -> dict[str, Any]:
    """Care units against the overall Mg-check rate: exact binomial 95% and 99.8% limits, units sorted by
    rate (withheld units last, by name, so their order gives nothing away)."""
    n, x = (overall["episodes"], overall["mg_checked"]) if overall else (0, 0)
    centre_shown = bool(n) and not is_small_cell(x, n, min_cell)
    centre = x / n if centre_shown else None
    out_units = []
    for u in units:
        small = is_small_cell(u["mg_checked"], u["episodes"], min_cell)
        low, high = wilson_interval(u["mg_checked"], u["episodes"])
        row = {"care_unit": u["group_value"], "episodes": u["episodes"], "mg_checked": u["mg_checked"],
               "rate": u["mg_checked"] / u["episodes"] if u["episodes"] else None, "ci_low": low, "ci_high": high,
               "position": stats.funnel_position(u["mg_checked"], u["episodes"], centre)
               if centre is not None and u["episodes"] else None, "suppressed": small}
        if small:
            row.update({k: None for k in UNIT_KEYS})
        out_units.append(row)
    out_units.sort(key=lambda r: (r["suppressed"], -(r["rate"] or 0), r["care_unit"]))
    return {"centre": centre, "centre_source": "audit.overall", "centre_suppressed": not centre_shown and bool(n),
            "limits": "exact binomial quantiles of Binomial(n, centre): 2.5%/97.5% (95%) and 0.1%/99.9% (99.8%)",
            "curve": stats.funnel_curve(centre, n) if centre is not None else [],
            "units": out_units, "outside": outside(out_units)}


def outside(units: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The shown units outside the 95% limits, with the side and the widest limit they cross."""
    return [{"care_unit": u["care_unit"], "position": u["position"]} for u in units
            if not u["suppressed"] and u["position"] not in (None, "inside")]


def time_to_check(con: Any, period: str | None, min_cell: int) -> dict[str, Any]:
    """Median and IQR (hours from the episode's start) to the first Mg check and to Mg repletion, overall,
    per audit period and per severity, with the share never checked (repleted)."""
    groupings = ("overall", *((period,) if period else ()), "severity")
    marts = rows(con, "SELECT * FROM mart_audit_times ORDER BY measure, grouping, group_value")
    order = {"mild": 0, "moderate": 1, "severe": 2}
    out = []
    for measure in ("mg_check", "mg_repletion"):
        for grouping in groupings:
            chosen = [m for m in marts if m["measure"] == measure and m["grouping"] == grouping]
            chosen.sort(key=lambda m: (order.get(m["group_value"], 9), m["group_value"]))
            out += [_time_row(m, min_cell) for m in chosen]
    return {"period": period, "unit": "hours from the episode's start (negative: before it)", "rows": out}


def _time_row(m: dict[str, Any], min_cell: int) -> dict[str, Any]:
    small = is_small_cell(m["without_time"], m["episodes"], min_cell)
    row = {"measure": m["measure"], "grouping": m["grouping"], "group": m["group_value"],
           "episodes": m["episodes"], "with_time": m["with_time"], "never": m["without_time"],
           "never_share": m["without_time"] / m["episodes"] if m["episodes"] else None,
           "q1_hours": _hours(m["q1_seconds"]), "median_hours": _hours(m["median_seconds"]),
           "q3_hours": _hours(m["q3_seconds"]), "suppressed": small}
    if small:
        row.update({k: None for k in TIME_KEYS})
    return row


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / SECONDS_PER_HOUR


def reflex(con: Any, config: Config, min_cell: int, window: dict[str, Any]) -> dict[str, Any]:
    """The reflex-testing simulator (pipelines/audit.py reflex_simulation) with its assumption, the
    prevalence it uses (withheld when small) and the published effect of reflex testing."""
    marts = rows(con, "SELECT * FROM mart_audit_reflex ORDER BY k_value_mmol_l")
    months = stats.months_between(window.get("first_collected_on"), window.get("last_collected_on"))
    prevalence = stats.severity_prevalence(marts)
    shown_prevalence = []
    for p in prevalence.values():
        small = is_small_cell(p["numerator"], p["denominator"], min_cell)
        shown_prevalence.append({**p, **({k: None for k in PROPORTION_KEYS} if small else {}), "suppressed": small})
    rules = []
    for r in stats.reflex_simulation(marts, reflex_thresholds(config), months):
        used = [s for s, u in r.pop("untested_by_severity").items() if u]
        small = is_small_cell(0, r["extra_mg_tests"], min_cell) or is_small_cell(0, r["untested_episodes"], min_cell)
        unsure = small or any(p["suppressed"] for p in shown_prevalence if p["severity"] in used)
        r.update({"severities_used": used, "suppressed": small, "detections_suppressed": unsure})
        if small:
            r.update({k: None for k in RULE_COUNT_KEYS})
        if unsure:
            r.update({k: None for k in RULE_ESTIMATE_KEYS})
        rules.append(r)
    return {"assumption": REFLEX_ASSUMPTION, "months_of_data": months,
            "extra_tests": "low K results below the threshold without a Mg result of the same patient within "
                           "the same-draw window",
            "prevalence_among_tested": shown_prevalence, "rules": rules, "reference": dict(stats.REFLEX_REFERENCE)}


def reflex_thresholds(config: Config) -> tuple[float, ...]:
    """The simulator's candidate thresholds: [audit] reflex_k_thresholds_mmol_l, or when blank the
    run's hypokalemia, moderate and severe thresholds (3.5, 3.0, 2.5 mmol/L by default)."""
    t = config.thresholds
    return config.audit.reflex_k_thresholds_mmol_l or (
        t.hypokalemia_mmol_l, t.moderate_hypokalemia_mmol_l, t.severe_hypokalemia_mmol_l)


def worklist(con: Any, overall: dict[str, Any] | None, min_cell: int) -> dict[str, Any]:
    """Where the restricted review worklist is and how many rows it has (never a row of it). The count
    is withheld when small, or when it minus the unchecked episodes (published by the overall row)
    would give a small count of low-Mg episodes not repleted."""
    n = rows(con, "SELECT count(*) AS n FROM mart_audit_worklist")[0]["n"]
    unchecked = (overall["episodes"] - overall["mg_checked"]) if overall else 0
    small = is_small_cell(0, n, min_cell) or is_small_cell(0, n - unchecked, min_cell)
    return {**WORKLIST_FILES, "rows": None if small else n, "suppressed": small}


# ---- complementary suppression of the additions -------------------------------------------------

@dataclass
class OwnSum:
    """total = the sum of parts, where only the total (an addition) may be hidden to fix a derivation."""

    total: tuple[str, tuple[str, ...]]
    parts: list[tuple[str, tuple[str, ...]]]


def finish(document: dict[str, Any], raw: dict[str, Any], config: Config, min_cell: int) -> dict[str, Any]:
    """Hide further cells of the additions until no hidden count can be derived from what is shown
    (also across the v1 cells they repeat), then redraw the control chart on the shown periods."""
    audit = document.get("audit") or {}
    if "spc" not in audit:
        return document
    if min_cell > 0:
        state = State(cells(document, raw), min_cell)
        mine = _cells(document, raw, state)
        groups = _groups(document, state)
        _fixed_point(state, groups, mine)
        for cell_id in mine:
            if state.cells[cell_id].hidden:
                _null(state.cells[cell_id])
    _redraw(document, raw, config, min_cell)
    return document


def _cells(doc: dict[str, Any], raw: dict[str, Any], state: State) -> set[str]:
    """The additions' cells (weight 0: hidden before anything else), added to `state`."""
    a, r = doc["audit"], raw["audit"]
    mine: list[Cell] = []
    for i, (row, rr) in enumerate(zip(a["spc"]["points"], r["spc"]["points"])):
        mine.append(Cell(f"spc[{i}]", row, SPC_POINT_KEYS, _proportion(rr["mg_checked"], rr["episodes"])))
    base_n = sum(p["episodes"] for p in r["spc"]["points"] if p["period"] in set(r["spc"]["baseline_periods"]))
    base_x = sum(p["mg_checked"] for p in r["spc"]["points"] if p["period"] in set(r["spc"]["baseline_periods"]))
    mine.append(Cell("spc.centre", a["spc"], ("centre", "sigma_z"), _proportion(base_x, base_n),
                     flag="centre_suppressed"))
    raw_units = {u["care_unit"]: u for u in r["funnel"]["units"]}
    for i, row in enumerate(a["funnel"]["units"]):
        ru = raw_units[row["care_unit"]]
        mine.append(Cell(f"funnel.units[{i}]", row, UNIT_KEYS, _proportion(ru["mg_checked"], ru["episodes"])))
    for i, (row, rr) in enumerate(zip(a["time_to_check"]["rows"], r["time_to_check"]["rows"])):
        mine.append(Cell(f"time[{i}]", row, TIME_KEYS, _proportion(rr["never"], rr["episodes"])))
    for i, (row, rr) in enumerate(zip(a["reflex_simulation"]["prevalence_among_tested"],
                                      r["reflex_simulation"]["prevalence_among_tested"])):
        mine.append(Cell(f"prevalence[{i}]", row, PROPORTION_KEYS, _proportion(rr["numerator"], rr["denominator"])))
    for i, (row, rr) in enumerate(zip(a["reflex_simulation"]["rules"], r["reflex_simulation"]["rules"])):
        mine.append(Cell(f"rule[{i}]", row, RULE_COUNT_KEYS + RULE_ESTIMATE_KEYS,
                         {"e": rr["extra_mg_tests"], "u": rr["untested_episodes"]}))
        mine.append(Cell(f"rule[{i}].expected", row, RULE_ESTIMATE_KEYS, {}, flag="detections_suppressed"))
    for cell in mine:
        cell.weight, cell.order = 0, len(state.cells)
        cell.hidden = bool(cell.row.get(cell.flag))
        state.cells[cell.id] = cell
    return {c.id for c in mine}


def _index(rows_: list[dict[str, Any]], key: str) -> dict[Any, int]:
    return {r[key]: i for i, r in enumerate(rows_)}


def _groups(doc: dict[str, Any], state: State) -> list[Any]:
    """How the additions relate to each other and to the v1 cells they repeat or add up."""
    a = doc["audit"]
    spc_, period = a["spc"], a["spc"]["period"]
    months = _index(a.get("by_month") or [], "month")
    severities = _index(a.get("by_severity") or [], "severity")
    units = _index(a.get("by_care_unit") or [], "care_unit")
    points = _index(spc_["points"], "period")
    out: list[Any] = []
    for label, i in points.items():
        parts = [f"audit.by_month[{j}]" for m, j in months.items() if period and stats.period_label(m, period) == label]
        if period == "month":
            out += [Depends(f"spc[{i}]", parts)] if parts else []
        elif parts:
            out.append(OwnSum((f"spc[{i}]", ORDERED), [(p, V1_AUDIT) for p in parts]))
    if "audit.overall" in state.cells:
        out.append(Sum(("audit.overall", V1_AUDIT), [(f"spc[{i}]", ORDERED) for i in points.values()]))
        out.append(Depends("spc.centre", ["audit.overall"]))
    baseline = set(spc_["baseline_periods"])
    if baseline != {label for label, i in points.items() if spc_["points"][i]["episodes"] != 0}:
        # a baseline short of every period: its centre would add the baseline's totals to the
        # document (with every period in it, the centre is the overall row's rate)
        out.append(OwnSum(("spc.centre", ORDERED), [(f"spc[{i}]", ORDERED) for label, i in points.items()
                                                     if label in baseline]))
    for i, u in enumerate(a["funnel"]["units"]):
        if u["care_unit"] in units:
            out.append(Depends(f"funnel.units[{i}]", [f"audit.by_care_unit[{units[u['care_unit']]}]"]))
    out += _time_groups(a, period, points, severities, state)
    out += _reflex_groups(a, severities, state)
    return out


def _time_groups(a: dict[str, Any], period: str | None, points: dict[str, int], severities: dict[str, int],
                 state: State) -> list[Any]:
    out: list[Any] = []
    rows_ = a["time_to_check"]["rows"]
    for measure in ("mg_check", "mg_repletion"):
        total = next((f"time[{i}]" for i, r in enumerate(rows_) if r["measure"] == measure
                      and r["grouping"] == "overall"), None)
        for grouping in (period, "severity"):
            parts = [(f"time[{i}]", PROPORTION) for i, r in enumerate(rows_)
                     if r["measure"] == measure and r["grouping"] == grouping]
            if total and parts:
                out.append(Sum((total, PROPORTION), parts))
        for i, r in enumerate(rows_):
            if r["measure"] != measure:
                continue
            inputs = []
            if measure == "mg_check" and r["grouping"] == "overall":
                inputs = ["audit.overall"]
            elif measure == "mg_check" and r["grouping"] == "severity" and r["group"] in severities:
                inputs = [f"audit.by_severity[{severities[r['group']]}]"]
            elif measure == "mg_check" and r["grouping"] == period and r["group"] in points:
                inputs = [f"spc[{points[r['group']]}]"]
            elif measure == "mg_repletion" and r["grouping"] == "overall":
                inputs = ["audit.overall.repleted"]
            inputs = [c for c in inputs if c in state.cells]
            if inputs:
                out.append(Depends(f"time[{i}]", inputs))
    return out


def _reflex_groups(a: dict[str, Any], severities: dict[str, int], state: State) -> list[Any]:
    out: list[Any] = []
    sim = a["reflex_simulation"]
    prevalence = _index(sim["prevalence_among_tested"], "severity")
    for s, i in prevalence.items():
        if s in severities:
            out.append(Depends(f"prevalence[{i}]", [f"audit.by_severity[{severities[s]}]"]))
    ordered = sorted(range(len(sim["rules"])), key=lambda i: sim["rules"][i]["k_below_mmol_l"])
    if len(ordered) > 1:
        out.append(Chain([(f"rule[{i}]", ("e", "u")) for i in ordered]))
    for i, rule in enumerate(sim["rules"]):
        # the counts repeat the overall and severity rows' unchecked episodes; the expected detections
        # also give the prevalence of each severity used back
        inputs = [f"audit.by_severity[{severities[s]}]" for s in rule["severities_used"] if s in severities]
        inputs += ["audit.overall"] if "audit.overall" in state.cells else []
        out.append(Depends(f"rule[{i}]", inputs))
        out.append(Depends(f"rule[{i}].expected", [f"rule[{i}]", *(f"prevalence[{prevalence[s]}]"
                                                                   for s in rule["severities_used"] if s in prevalence)]))
    return out


def _check_own_sum(group: OwnSum, state: State) -> str | None:
    total = state.cells[group.total[0]]
    if total.hidden or total.zero:
        return None
    parts = [(state.cells[p], measures) for p, measures in group.parts]
    unshown = [p for p, _ in parts if p.hidden and not p.zero]
    if not unshown:
        return None
    residual = [total.values[group.total[1][k]] - sum(p.values[m[k]] for p, m in parts if not p.hidden)
                for k in range(len(group.total[1]))]
    if len(unshown) == 1 or any(state.small(v) for v in residual):
        return total.id
    return None


def _fixed_point(state: State, groups: list[Any], mine: set[str]) -> None:
    """Hide cells of the additions until no group finds a derivation. A fix that would hide a v1
    cell hides the group's shown additions instead (the v1 document is already safe on its own)."""
    changed = True
    while changed:
        changed = False
        for group in groups:
            victim = _check_own_sum(group, state) if isinstance(group, OwnSum) else check(group, state)
            if victim is None:
                continue
            if victim in mine:
                state.hide(victim, f"derivable ({type(group).__name__})")
                changed = True
                continue
            for cell_id in _members(group):
                if cell_id in mine and not state.cells[cell_id].hidden and not state.cells[cell_id].zero:
                    state.hide(cell_id, f"derivable ({type(group).__name__}, v1 cell kept)")
                    changed = True


def _members(group: Any) -> list[str]:
    if isinstance(group, Sum):
        return [group.total[0], *(p[0] for p in group.parts)]
    if isinstance(group, Chain):
        return [m[0] for m in group.members]
    if isinstance(group, Depends):
        return [group.cell, *group.inputs]
    if isinstance(group, OwnSum):
        return [group.total[0], *(p[0] for p in group.parts)]
    return list(group.members)


def _null(cell: Cell) -> None:
    for key in cell.keys:
        if key in cell.row:
            cell.row[key] = None
    if cell.flag:
        cell.row[cell.flag] = True


def _redraw(doc: dict[str, Any], raw: dict[str, Any], config: Config, min_cell: int) -> None:
    """The control chart on the periods left shown: limits, sigma_z and rules from those only."""
    a = doc["audit"]
    period = a["spc"]["period"]
    if period is None:
        return
    monthly = {m["month"]: (m["episodes"], m["mg_checked"]) for m in raw["audit"]["by_month"]}
    hidden = {p["period"] for p in a["spc"]["points"] if p.get("suppressed")}
    centre_hidden = a["spc"].get("centre_suppressed")
    redrawn = spc(monthly, period, config, min_cell, hidden)
    if centre_hidden:
        for p in redrawn["points"]:
            p.update({"centre": None, "lcl": None, "ucl": None, "outside_limits": None, "run_of_8": None,
                      "trend_of_6": None})
        redrawn.update({"centre": None, "sigma_z": None, "centre_suppressed": True, "signals": [],
                        "chart_reason": "limits withheld: the centre line would give a withheld count away"})
    a["spc"] = redrawn
