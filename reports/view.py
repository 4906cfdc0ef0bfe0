"""The report's view model: results.json + manifest.json + validation.json in, plain dicts and strings out.

Nothing here draws or writes: every function takes plain dicts and returns plain dicts, lists and
strings, so the report's words and numbers can be tested without a browser. Every number, window
and threshold the page states is read from `results["parameters"]` (or from the rows' own window
names and hours), never written here as a literal. A withheld value is always shown the same
way: "<N", with N the run's `privacy.min_cell_size`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.seeds import read_seed

ABNORMALITIES = ("hypokalemia", "hyponatremia", "hypophosphatemia", "hypocalcemia")
HEADLINE_DIRECTION = "hypomg_given_abnormality"
DEFAULT_SENSITIVITY_DIRECTION = "abnormality_given_hypomg"
SAME_DRAW = "same_draw"
SHORT_NAME = {"hypokalemia": "K", "hyponatremia": "Na", "hypophosphatemia": "phosphate", "hypocalcemia": "Ca"}
DIRECTION_LABEL = {
    "hypomg_given_abnormality": "low Mg among low X",
    "abnormality_given_hypomg": "low X among low Mg",
    "abnormality_given_normomg": "low X among normal Mg",
}
UNIT_FACTOR_ANALYTES = (("MG", "Mg"), ("PHOS", "phosphate"), ("CA", "calcium"), ("ALB", "albumin"))
UNIT_LABEL = {"mg/dl": "mg/dL", "meq/l": "mEq/L", "g/dl": "g/dL", "mmol/l": "mmol/L", "g/l": "g/L"}
MIMIC_CITATION = ("Johnson A, Bulgarelli L, Pollard T, Horng S, Celi LA, Mark R. MIMIC-IV Clinical Database "
                  "Demo v2.2, PhysioNet (ODbL 1.0).")


# ---- formatting ---------------------------------------------------------------------------------

def hours(value: float | None) -> str:
    """A duration in hours as the report writes it: "24 h", "12.5 h"."""
    return "" if value is None else f"{float(value):g} h"


def pct(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{100 * value:.{digits}f}%"


def num(value: Any) -> str:
    return "" if value is None else f"{value:,}"


def plain(value: Any) -> str:
    """A parameter value as written in the config file (floats without trailing zeros)."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(v) for v in value)
    return "" if value is None else str(value)


class Fmt:
    """Formats counts and rates with the run's one small-cell marker, "<N"."""

    def __init__(self, min_cell_size: int):
        self.min_cell = max(int(min_cell_size), 1)
        self.small = f"<{self.min_cell}"

    def count(self, row: dict[str, Any], key: str) -> str:
        """A count of a row: the marker when the row (or just this value) is withheld."""
        if row.get("suppressed") or row.get(key) is None:
            return self.small
        return num(row[key])

    def rate(self, row: dict[str, Any], rate_key: str = "prevalence", none: str = "no index results",
             suppressed_key: str = "suppressed") -> str:
        """"54.1% (46.3–61.6%)", the marker when withheld, `none` when there is nothing to count."""
        if row.get(suppressed_key):
            return self.small
        value = row.get(rate_key)
        if value is None:
            return none
        prefix = rate_key[: -len("rate")] if rate_key.endswith("rate") else ""
        low, high = row.get(f"{prefix}ci_low"), row.get(f"{prefix}ci_high")
        if low is None or high is None:
            return pct(value)
        return f"{pct(value)} ({pct(low)}–{pct(high)})"

    def tested(self, row: dict[str, Any]) -> str:
        """The share of index results with Mg measured: it applies to the headline direction only."""
        if row.get("direction") != HEADLINE_DIRECTION:
            return ""
        if row.get("mg_tested_suppressed") or row.get("suppressed") or row.get("mg_tested_fraction") is None:
            return self.small
        return pct(row["mg_tested_fraction"])

    def ratio(self, row: dict[str, Any]) -> tuple[str, str]:
        """(ratio, interval) of a prevalence-ratio row."""
        if row.get("suppressed"):
            return self.small, self.small
        if row.get("ratio") is None:
            return "not estimable", ""
        interval = "" if row.get("ci_low") is None else f"{row['ci_low']:.2f}–{row['ci_high']:.2f}"
        return f"{row['ratio']:.2f}", interval

    def references(self, row: dict[str, Any], digits: int = 1, with_p: bool = True) -> str:
        """"article 42.0% (p=0.0123); whang_1984 …": no p-value part when none was computed."""
        parts = []
        for ref in row.get("references") or []:
            text = f"{ref['set']} {pct(ref['value'], digits)}"
            if with_p and ref.get("p_value") is not None:
                text += f" (p={ref['p_value']:.3g})"
            parts.append(text)
        return "; ".join(parts)


# ---- windows and parameters ---------------------------------------------------------------------

def row_window_hours(row: dict[str, Any], params: dict[str, Any]) -> float:
    """A row's window width in hours: its own `window_hours` when present, else the configured one."""
    if row.get("window_hours") is not None:
        return float(row["window_hours"])
    windows = params["windows"]
    return float(windows["same_draw_hours"] if row["window"] == SAME_DRAW else windows["cooccurrence_hours"])


def window_label(row: dict[str, Any], params: dict[str, Any]) -> str:
    """"same draw (±1 h)" or "±24 h": the hours the run used, whatever the window's stored name."""
    width = hours(row_window_hours(row, params))
    return f"same draw (±{width})" if row["window"] == SAME_DRAW else f"±{width}"


def is_cooccurrence_window(row: dict[str, Any]) -> bool:
    return row["window"] != SAME_DRAW


def headline_rows(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Low Mg among each abnormality, co-occurrence window, result level: the review's comparison."""
    return {r["abnormality"]: r for r in results["cooccurrence"]
            if r["direction"] == HEADLINE_DIRECTION and is_cooccurrence_window(r) and r["level"] == "result"}


def terms(params: dict[str, Any], fmt: Fmt) -> dict[str, str]:
    """The run's windows and thresholds as the prose states them."""
    t, w, a, au = params["thresholds"], params["windows"], params["analysis"], params["audit"]
    return {
        "window": f"±{hours(w['cooccurrence_hours'])}",
        "same_draw": f"±{hours(w['same_draw_hours'])}",
        "mg_check": f"±{hours(au['mg_check_hours'])}",
        "mg_check_hours": hours(au["mg_check_hours"]),
        "refractory": hours(au["refractory_after_hours"]),
        "episode_gap": hours(au["episode_gap_hours"]),
        "exposure_default": hours(au["exposure_default_hours"]),
        "severe": plain(t["severe_hypokalemia_mmol_l"]),
        "moderate": plain(t["moderate_hypokalemia_mmol_l"]),
        "hypokalemia": plain(t["hypokalemia_mmol_l"]),
        "hypomg": plain(t["hypomagnesemia_mg_dl"]),
        "normomg_upper": plain(t["normomagnesemia_upper_mg_dl"]),
        "hyponatremia": plain(t["hyponatremia_mmol_l"]),
        "hypophosphatemia": plain(t["hypophosphatemia_mg_dl"]),
        "hypocalcemia": plain(t["hypocalcemia_mg_dl"]),
        "ionized": plain(t["ionized_hypocalcemia_mmol_l"]),
        "ca_definition": str(a["hypocalcemia_definition"]),
        "ca_per_g_l": plain(a["calcium_correction_per_g_l"]),
        "albumin_ref": plain(a["albumin_reference_g_l"]),
        "min_cell": str(fmt.min_cell),
        "min_cell_minus_one": str(fmt.min_cell - 1),
        "small": fmt.small,
    }


def severity_label(severity: str, params: dict[str, Any]) -> str:
    """"severe (K < 2.5)" with the run's cut-offs."""
    t = params["thresholds"]
    bounds = {"severe": f"K < {plain(t['severe_hypokalemia_mmol_l'])}",
              "moderate": f"K {plain(t['severe_hypokalemia_mmol_l'])}–<{plain(t['moderate_hypokalemia_mmol_l'])}",
              "mild": f"K {plain(t['moderate_hypokalemia_mmol_l'])}–<{plain(t['hypokalemia_mmol_l'])}"}
    return f"{severity} ({bounds[severity]})" if severity in bounds else severity


def unit_factors() -> list[str]:
    """"Mg mg/dL × 0.4114", … from the unit_factors seed the run used."""
    by_analyte: dict[str, list[str]] = {}
    for row in read_seed("unit_factors"):
        if float(row["factor"]) != 1.0:
            unit = UNIT_LABEL.get(row["unit"], row["unit"])
            by_analyte.setdefault(row["analyte"], []).append(f"{unit} × {plain(float(row['factor']))}")
    return [f"{name} {', '.join(by_analyte[code])}" for code, name in UNIT_FACTOR_ANALYTES if code in by_analyte]


# ---- tables -------------------------------------------------------------------------------------

def table(headers: list[str], rows: list[list[Any]], numeric_from: int = 1, caption: str = "",
          code_columns: tuple[int, ...] = ()) -> dict[str, Any]:
    """A table as data: cells are strings or {"text", "sub", "mark"} dicts; the template lays it out."""
    return {"headers": headers, "rows": rows, "numeric_from": numeric_from, "caption": caption,
            "code_columns": list(code_columns)}


def cooccurrence_table(results: dict[str, Any], fmt: Fmt) -> dict[str, Any]:
    params = results["parameters"]
    rows = sorted(results["cooccurrence"], key=lambda r: (r["direction"], r["abnormality"],
                                                         row_window_hours(r, params), r["level"]))
    body = [[r["abnormality"], DIRECTION_LABEL.get(r["direction"], r["direction"]), window_label(r, params), r["level"],
             fmt.count(r, "numerator"), fmt.count(r, "denominator"), fmt.rate(r), fmt.tested(r), fmt.references(r)]
            for r in rows]
    return table(["abnormality", "direction", "window", "level", "numerator", "denominator", "prevalence (95% CI)",
                  "Mg tested", "references (p)"], body, numeric_from=4)


def ratio_table(results: dict[str, Any], fmt: Fmt) -> dict[str, Any]:
    params = results["parameters"]
    body = [[r["abnormality"], window_label(r, params), r["level"], *fmt.ratio(r)] for r in results["prevalence_ratios"]]
    return table(["abnormality", "window", "level", "ratio", "95% CI"], body, numeric_from=3)


def rate_rows(rows: list[dict[str, Any]], first: str, fmt: Fmt, label=None) -> list[list[str]]:
    label = label or (lambda v: v)
    return [[label(r[first]), fmt.count(r, "episodes"), fmt.count(r, "mg_checked"), fmt.rate(r, "rate", "no episodes")]
            for r in rows]


# ---- summary ------------------------------------------------------------------------------------

def cards(results: dict[str, Any], fmt: Fmt) -> list[dict[str, Any]]:
    """The summary cards: each headline rate, the Mg-check rate and the data's size."""
    heads, overall = headline_rows(results), results["audit"]["overall"]
    out = []
    for a in ABNORMALITIES:
        row = heads.get(a)
        if row is None:
            continue
        article = next((x["value"] for x in row.get("references") or [] if x["set"] == "article"), None)
        detail = [f"article {pct(article, 0)}"] if article is not None else []
        detail.append(f"Mg tested in {fmt.tested(row)}")
        out.append({"key": f"low Mg among {a}", "attrs": {"data-abnormality": a},
                    "value": fmt.rate(row), "data_value": "" if row.get("prevalence") is None else str(row["prevalence"]),
                    "detail": " · ".join(detail)})
    out.append({"key": "Mg checked in hypokalemia", "attrs": {"data-measure": "mg_check_rate"},
                "value": fmt.rate(overall, "rate", "no episodes"),
                "data_value": "" if overall.get("rate") is None else str(overall["rate"]),
                "detail": f"{fmt.count(overall, 'mg_checked')} of {fmt.count(overall, 'episodes')} episodes"})
    counts, span = results["counts"], results.get("data_window") or {}
    mg, low = fmt.count(counts, "mg_results"), fmt.count(counts, "hypomg_results")
    out.append({"key": "data", "attrs": {}, "value": f"{fmt.count(counts, 'patients')} patients", "data_value": None,
                "detail": f"{mg} Mg results ({low} low) · {span.get('first_collected_on') or ''} to "
                          f"{span.get('last_collected_on') or ''}"})
    return out


def summary_table(results: dict[str, Any], fmt: Fmt) -> dict[str, Any]:
    heads = headline_rows(results)
    body = [[a, fmt.rate(heads[a]), fmt.count(heads[a], "numerator"), fmt.count(heads[a], "denominator"),
             fmt.tested(heads[a]), fmt.references(heads[a], digits=0, with_p=False)]
            for a in ABNORMALITIES if a in heads]
    return table(["abnormality", "low Mg (95% CI)", "n low Mg", "n with Mg measured", "Mg tested", "references"], body)


def article_figures(results: dict[str, Any], reference_set: str = "article") -> str:
    """"42/23/22/20%": a reference set's headline figures, in the order of ABNORMALITIES."""
    heads = headline_rows(results)
    values = [next((x["value"] for x in heads[a].get("references") or [] if x["set"] == reference_set), None)
              for a in ABNORMALITIES if a in heads]
    values = [v for v in values if v is not None]
    return "/".join(f"{100 * v:.0f}" for v in values) + "%" if values else ""


def reference_list(results: dict[str, Any], reference_set: str) -> str:
    """"42% hypokalemia, 29% hypophosphatemia, …", largest first, from the run's reference rows."""
    pairs = [(x["value"], r["abnormality"]) for r in headline_rows(results).values()
             for x in r.get("references") or [] if x["set"] == reference_set]
    return ", ".join(f"{pct(v, 0)} {a}" for v, a in sorted(pairs, key=lambda p: -p[0]))


# ---- sensitivity --------------------------------------------------------------------------------

def sensitivity_grids(results: dict[str, Any], fmt: Fmt) -> list[dict[str, Any]]:
    """One grid per direction: rows abnormality (calcium definition), columns window x Mg threshold."""
    params = results["parameters"]
    default = {"threshold": params["thresholds"]["hypomagnesemia_mg_dl"],
               "definition": params["analysis"]["hypocalcemia_definition"]}
    by_direction: dict[str, list[dict[str, Any]]] = {}
    for r in results["sensitivity"]:
        by_direction.setdefault(r.get("direction") or DEFAULT_SENSITIVITY_DIRECTION, []).append(r)
    order = [d for d in (DEFAULT_SENSITIVITY_DIRECTION, HEADLINE_DIRECTION) if d in by_direction]
    order += sorted(set(by_direction) - set(order))
    return [_grid(direction, by_direction[direction], params, default, fmt) for direction in order]


def _grid(direction: str, rows: list[dict[str, Any]], params: dict[str, Any], default: dict[str, Any],
          fmt: Fmt) -> dict[str, Any]:
    row_keys = sorted({(r["abnormality"], r.get("hypocalcemia_definition") or "") for r in rows},
                      key=lambda k: (ABNORMALITIES.index(k[0]) if k[0] in ABNORMALITIES else 99, k[1]))
    col_keys = sorted({(row_window_hours(r, params), r["window"], r["mg_threshold_mg_dl"]) for r in rows},
                      key=lambda c: (c[1] != SAME_DRAW, c[0], c[2]))
    cell = {((r["abnormality"], r.get("hypocalcemia_definition") or ""),
             (row_window_hours(r, params), r["window"], r["mg_threshold_mg_dl"])): r for r in rows}
    columns = [f"{window_label({'window': w, 'window_hours': h}, params)} · Mg<{plain(t)}" for h, w, t in col_keys]
    short_columns = [f"{'same draw' if w == SAME_DRAW else '±' + hours(h)}, Mg<{plain(t)}" for h, w, t in col_keys]
    labels = [f"{a} ({d})" if d else a for a, d in row_keys]
    short_labels = [f"low {SHORT_NAME.get(a, a)}" + (f" ({d})" if d else "") for a, d in row_keys]
    z, text, hover, body = [], [], [], []
    for rk, label in zip(row_keys, labels):
        zr, tr, hr, br = [], [], [], [label]
        for ck, column in zip(col_keys, columns):
            r = cell.get((rk, ck))
            shown = r is not None and not r.get("suppressed") and r.get("prevalence") is not None
            zr.append(r["prevalence"] if shown else None)
            tr.append(f"{100 * r['prevalence']:.0f}%" if shown else (fmt.small if r is not None and r.get("suppressed")
                                                                      else ""))
            value = fmt.rate(r) if r is not None else "not computed"
            counts = f"{fmt.count(r, 'numerator')} / {fmt.count(r, 'denominator')}" if r is not None else ""
            hr.append(f"{label}<br>{column}<br>{value}" + (f"<br>{counts}" if counts else ""))
            is_default = (r is not None and ck[1] != SAME_DRAW and ck[2] == default["threshold"]
                          and rk[1] in ("", default["definition"]))
            br.append({"text": value, "sub": counts, "mark": is_default})
        z.append(zr), text.append(tr), hover.append(hr), body.append(br)
    label = DIRECTION_LABEL.get(direction, direction)
    return {"direction": direction, "label": label, "x": short_columns, "y": short_labels, "z": z, "text": text,
            "hover": hover, "all_suppressed": all(v is None for zr in z for v in zr),
            "table": table(["abnormality"] + columns, body)}


# ---- audit --------------------------------------------------------------------------------------

def audit_view(results: dict[str, Any], fmt: Fmt) -> dict[str, Any]:
    """The audit section's numbers, tables and chart data."""
    params, audit = results["parameters"], results["audit"]
    overall = audit["overall"]
    refractory_hidden, repleted_hidden = overall.get("refractory_suppressed"), overall.get("repleted_suppressed")

    def shown(key: str, hidden: bool) -> str:
        return fmt.small if hidden or overall.get(key) is None else num(overall[key])

    funnel = [("hypokalemia episodes", "episodes", overall.get("suppressed")),
              (f"Mg checked ({terms(params, fmt)['mg_check']} of start)", "mg_checked", overall.get("suppressed")),
              ("low Mg found", "low_mg_episodes", repleted_hidden),
              ("Mg repleted", "mg_repleted", repleted_hidden)]
    return {
        "refractory": {"episodes": shown("refractory_episodes", refractory_hidden),
                       "checked": shown("refractory_mg_checked", refractory_hidden),
                       "rate": fmt.rate(overall, "refractory_checked_rate", "no refractory episodes",
                                        "refractory_suppressed")},
        "repleted": {"repleted": shown("mg_repleted", repleted_hidden), "low": shown("low_mg_episodes", repleted_hidden),
                     "rate": fmt.rate(overall, "repleted_rate", "no low-Mg episodes", "repleted_suppressed")},
        "funnel": [{"label": label, "value": None if hidden or overall.get(key) is None else overall[key],
                    "text": shown(key, hidden)} for label, key, hidden in funnel],
        "months": _rate_points(audit["by_month"], "month", fmt),
        "severities": _rate_points(audit["by_severity"], "severity", fmt,
                                   lambda s: severity_label(s, params)),
        "month_table": table(["month", "episodes", "Mg checked", "rate (95% CI)"],
                             rate_rows(audit["by_month"], "month", fmt)),
        "severity_table": table(["severity (lowest K, mmol/L)", "episodes", "Mg checked", "rate (95% CI)"],
                                rate_rows(audit["by_severity"], "severity", fmt, lambda s: severity_label(s, params))),
        "unit_table": table(["care unit", "episodes", "Mg checked", "rate (95% CI)"],
                            rate_rows(audit["by_care_unit"], "care_unit", fmt)) if audit["by_care_unit"] else None,
        "testing_refs": [{"name": t["reference"], "rate": t["rate"], "label": f"{t['reference']}: {pct(t['rate'], 0)}"}
                         for t in results.get("testing_rate_references") or []],
        "testing_table": table(["reference", "population", "rate", "source"],
                               [[t["reference"], t["population"], pct(t["rate"]), t["citation"]]
                                for t in results.get("testing_rate_references") or []], numeric_from=2),
    }


def _rate_points(rows: list[dict[str, Any]], key: str, fmt: Fmt, label=None) -> list[dict[str, Any]]:
    """Chart points of rate rows: shown ones carry the rate, withheld ones only the marker."""
    label = label or (lambda v: v)
    out = []
    for r in rows:
        shown = not r.get("suppressed") and r.get("rate") is not None
        out.append({"label": label(r[key]), "rate": r["rate"] if shown else None,
                    "ci_low": r.get("ci_low") if shown else None, "ci_high": r.get("ci_high") if shown else None,
                    "text": pct(r["rate"], 0) if shown else fmt.small if r.get("suppressed") else "none",
                    "hover": f"{label(r[key])}<br>{fmt.rate(r, 'rate', 'no episodes')}<br>"
                             f"{fmt.count(r, 'mg_checked')} of {fmt.count(r, 'episodes')} episodes"})
    return out


# ---- audit charts: period, control chart, funnel plot, times, simulator, worklist ----------------

CHART_NAMES = {"p": "p-chart", "laney_p_prime": "Laney p\u2032 chart"}
RULE_LABELS = {"outside_limits": "a point outside the limits", "run_of_8": "8 points in a row on one side",
               "trend_of_6": "6 points in a row rising or falling"}
POSITION_LABELS = {"inside": "inside", "above_95": "above 95%", "below_95": "below 95%",
                   "above_99_8": "above 99.8%", "below_99_8": "below 99.8%"}
MEASURE_LABELS = {"mg_check": "first Mg check", "mg_repletion": "Mg repletion (low-Mg episodes)"}


def audit_charts_view(results: dict[str, Any], fmt: Fmt) -> dict[str, Any]:
    """The quality team's audit (results.json audit.period, spc, funnel, time_to_check,
    reflex_simulation, worklist) as words, tables and chart data; empty parts say why."""
    audit = results["audit"]
    if "spc" not in audit:
        return {"present": False}
    return {"present": True, "period": period_text(audit["period"]), "spc": spc_view(audit["spc"], fmt),
            "funnel": unit_funnel_view(audit["funnel"], fmt), "times": time_table(audit["time_to_check"], fmt),
            "reflex": reflex_view(audit["reflex_simulation"], results["parameters"], fmt),
            "worklist": worklist_text(audit["worklist"], fmt)}


def period_text(period: dict[str, Any]) -> str:
    """"Audit period: quarter, the finest period at which ..." or why there is none."""
    if period["period"] is None:
        return f"No audit period: {period['reason']}."
    return f"Audit period: {period['period']}, {period['reason']}."


def spc_view(spc: dict[str, Any], fmt: Fmt) -> dict[str, Any]:
    """Control-chart points (withheld ones as markers only), limits, rules and the words around them."""
    points = []
    for p in spc["points"]:
        shown = not p.get("suppressed") and p.get("rate") is not None
        flags = [RULE_LABELS[k] for k in RULE_LABELS if p.get(k)]
        hover = (f"{p['period']}<br>{pct(p['rate'])} of {num(p['episodes'])} episodes"
                 + (f"<br>limits {pct(p['lcl'])}–{pct(p['ucl'])}" if p.get("lcl") is not None else "")
                 + "".join(f"<br>signal: {f}" for f in flags)) if shown else (
            f"{p['period']}<br>{fmt.small if p.get('suppressed') else 'no episodes'}")
        points.append({"label": p["period"], "rate": p["rate"] if shown else None, "lcl": p.get("lcl"),
                       "ucl": p.get("ucl"), "centre": p.get("centre"), "signal": bool(flags), "withheld":
                       bool(p.get("suppressed")), "baseline": p.get("in_baseline"), "hover": hover})
    name = CHART_NAMES.get(spc.get("chart") or "", "control chart")
    if spc["period"] is None:
        empty = "No control chart: see the audit period above."
    elif not any(p["rate"] is not None for p in points):
        empty = f"Every period is withheld ({fmt.small} episodes or checks)."
    else:
        empty = ""
    baseline = ("limits from every period" if not (spc.get("baseline_start") or spc.get("baseline_end")) else
                f"limits frozen on the baseline {spc.get('baseline_start') or 'start'} to "
                f"{spc.get('baseline_end') or 'end'} ({len(spc['baseline_periods'])} periods)")
    signals = [f"{RULE_LABELS[s['rule']]} ({s['direction']}): {', '.join(s['periods'])}" for s in spc["signals"]]
    return {"name": name, "period": spc["period"], "reason": spc.get("chart_reason") or "", "baseline": baseline,
            "centre": pct(spc.get("centre")) if spc.get("centre") is not None else fmt.small
            if spc.get("centre_suppressed") else "", "points": points, "signals": signals, "empty": empty}


def unit_funnel_view(funnel: dict[str, Any], fmt: Fmt) -> dict[str, Any]:
    """Funnel-plot data (shown units only; limits on their own grid) and the unit table sorted by rate."""
    shown = [u for u in funnel["units"] if not u["suppressed"] and u["rate"] is not None]
    rows = [[u["care_unit"], fmt.count(u, "episodes"), fmt.count(u, "mg_checked"), fmt.rate(u, "rate", "no episodes"),
             POSITION_LABELS.get(u["position"], "") if not u["suppressed"] else fmt.small] for u in funnel["units"]]
    outside = [f"{o['care_unit']} ({POSITION_LABELS[o['position']]})" for o in funnel["outside"]]
    if funnel["centre"] is None:
        empty = f"No funnel limits: the overall rate is withheld ({fmt.small})." if funnel.get("centre_suppressed") \
            else "No funnel plot: no episodes."
    elif not funnel["units"]:
        empty = "No funnel plot: the input has no care unit."
    else:
        empty = ""
    return {"centre": funnel["centre"], "curve": funnel["curve"],
            "points": [{"label": u["care_unit"], "n": u["episodes"], "rate": u["rate"],
                        "outside": u["position"] not in (None, "inside"),
                        "hover": f"{u['care_unit']}<br>{fmt.rate(u, 'rate')}<br>{num(u['mg_checked'])} of "
                                 f"{num(u['episodes'])} episodes<br>{POSITION_LABELS.get(u['position'], '')}"}
                       for u in shown],
            "withheld": sum(1 for u in funnel["units"] if u["suppressed"]),
            "outside": outside, "empty": empty,
            "table": table(["care unit", "episodes", "Mg checked", "rate (95% CI)", "against the funnel"], rows)}


def _hours_text(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} h"


def time_table(times: dict[str, Any], fmt: Fmt) -> dict[str, Any]:
    """Median (IQR) hours to the first Mg check and to repletion, with the share never checked."""
    rows = []
    for r in times["rows"]:
        group = "all episodes" if r["grouping"] == "overall" else f"{r['grouping']} {r['group']}"
        if r["suppressed"]:
            rows.append([MEASURE_LABELS[r["measure"]], group, fmt.small, fmt.small, fmt.small])
            continue
        iqr = (f"{_hours_text(r['median_hours'])} ({_hours_text(r['q1_hours'])} to {_hours_text(r['q3_hours'])})"
               if r["median_hours"] is not None else "none")
        rows.append([MEASURE_LABELS[r["measure"]], group, num(r["episodes"]), iqr,
                     f"{num(r['never'])} ({pct(r['never_share'])})"])
    return table(["measure", "group", "episodes", "median (IQR) from start", "never"], rows, numeric_from=2)


def reflex_view(sim: dict[str, Any], params: dict[str, Any], fmt: Fmt) -> dict[str, Any]:
    """The simulator's table, its assumption and the published effect of reflex testing."""
    rows = []
    for r in sim["rules"]:
        rule = f"Mg with every K < {plain(r['k_below_mmol_l'])} mmol/L"
        if r["suppressed"]:
            rows.append([rule, fmt.small, fmt.small, fmt.small, fmt.small])
            continue
        if r.get("detections_suppressed"):
            expected = per_detection = fmt.small
        elif r["expected_hypomg_detections"] is None:
            expected = "not estimable (no tested episodes of " + ", ".join(r["severities_without_tested_episodes"]) + ")"
            per_detection = ""
        else:
            expected = f"{r['expected_hypomg_detections']:.1f} ({r['expected_ci_low']:.1f}–{r['expected_ci_high']:.1f})"
            per_detection = "" if r["tests_per_detection"] is None else f"{r['tests_per_detection']:.1f}"
        per_month = "" if r["extra_mg_tests_per_month"] is None else _per_month(r["extra_mg_tests_per_month"])
        rows.append([rule, per_month, num(r["untested_episodes"]), expected, per_detection])
    ref = sim["reference"]
    reference = (f"Jones & Twomey 2009 (K \u2264 {plain(ref['k_at_most_mmol_l'])} mmol/L): Mg measured "
                 f"{pct(ref['mg_measured_before'])} \u2192 {pct(ref['mg_measured_with_reflex'])}, hypomagnesemia "
                 f"detected in {pct(ref['hypomg_detected_before'])} \u2192 {pct(ref['hypomg_detected_with_reflex'])} of "
                 f"episodes, {plain(ref['tests_per_detection_with_reflex'])} tests per detection with reflex testing.")
    return {"table": table(["candidate rule", "extra Mg tests per month", "untested episodes",
                            "expected low-Mg detections (95% CI)", "tests per detection"], rows),
            "assumption": sim["assumption"], "reference": reference, "citation": ref["citation"],
            "months": sim["months_of_data"]}


def _per_month(value: float) -> str:
    """1.5, 12.0; below one a month with two significant digits (0.045)."""
    return f"{value:.1f}" if value >= 1 or value == 0 else f"{value:.2g}"


def worklist_text(worklist: dict[str, Any], fmt: Fmt) -> str:
    """Where the review worklist is and how many rows it has: never a row of it."""
    count = fmt.small if worklist["suppressed"] else num(worklist["rows"])
    return (f"Review worklist (restricted, owner-only): {worklist['csv']} and {worklist['xlsx']} ({count} rows): "
            "the episodes without a magnesium check, then those with low magnesium not repleted.")


# ---- the other sections -------------------------------------------------------------------------

def pair_label(row: dict[str, Any]) -> str:
    """"low Mg among low K": the direction of a row with its abnormality named."""
    x = SHORT_NAME.get(row["abnormality"], row["abnormality"])
    return {"hypomg_given_abnormality": f"low Mg among low {x}", "abnormality_given_hypomg": f"low {x} among low Mg",
            "abnormality_given_normomg": f"low {x} among normal Mg"}.get(row["direction"], row["direction"])


def forest_rows(results: dict[str, Any], fmt: Fmt) -> list[dict[str, Any]]:
    """Result-level rows of the directions that have published figures, each with its references."""
    params = results["parameters"]
    rows = [r for r in results["cooccurrence"] if r["level"] == "result" and r["direction"] != "abnormality_given_normomg"]
    out = []
    for r in rows:
        label = f"{pair_label(r)}<br>{window_label(r, params)}"
        shown = not r.get("suppressed") and r.get("prevalence") is not None
        out.append({"label": label, "value": r["prevalence"] if shown else None,
                    "ci_low": r.get("ci_low") if shown else None, "ci_high": r.get("ci_high") if shown else None,
                    "marker": "" if shown else (fmt.small if r.get("suppressed") else "none"),
                    "hover": f"{label}<br>{fmt.rate(r)}<br>{fmt.count(r, 'numerator')} of {fmt.count(r, 'denominator')}",
                    "references": [{"set": x["set"], "value": x["value"],
                                    "hover": f"{label}<br>{x['set']}: {pct(x['value'])}"}
                                   for x in r.get("references") or []]})
    return out


def distribution_view(results: dict[str, Any], fmt: Fmt) -> dict[str, Any]:
    dist, canon = results["mg_distribution"], results["parameters"]["canonical_thresholds"]
    bins = [{"mid": (b["from_mmol_l"] + b["to_mmol_l"]) / 2, "results": b["results"],
             "hover": f"{b['from_mmol_l']:g}–{b['to_mmol_l']:g} mmol/L: {fmt.count(b, 'results')} results"}
            for b in dist["bins"] if not b.get("suppressed") and b.get("results") is not None]
    withheld = [{"mid": (b["from_mmol_l"] + b["to_mmol_l"]) / 2,
                 "hover": f"{b['from_mmol_l']:g}–{b['to_mmol_l']:g} mmol/L: {fmt.small} results"}
                for b in dist["bins"] if b.get("suppressed")]
    return {"bins": bins, "withheld": withheld, "width": dist["bin_width_mmol_l"],
            "width_text": f"{dist['bin_width_mmol_l']:g} mmol/L",
            "lines": [{"x": canon["hypomagnesemia_mmol_l"], "dash": "dash",
                       "label": f"hypomagnesemia threshold {canon['hypomagnesemia_mmol_l']:.4g} mmol/L"},
                      {"x": canon["normomagnesemia_upper_mmol_l"], "dash": "dot",
                       "label": f"upper normal {canon['normomagnesemia_upper_mmol_l']:.4g} mmol/L"}]}


def exposure_view(results: dict[str, Any], fmt: Fmt) -> dict[str, Any]:
    points = []
    for e in results["exposures"]:
        shown = not e.get("suppressed") and e.get("exposed_mg_results") and e.get("unexposed_mg_results")
        exposed = e["exposed_hypomg"] / e["exposed_mg_results"] if shown else None
        unexposed = e["unexposed_hypomg"] / e["unexposed_mg_results"] if shown else None
        points.append({
            "label": e["class"], "exposed": exposed, "unexposed": unexposed,
            "marker": "" if shown else (fmt.small if e.get("suppressed") else "no exposed results"),
            "hover_exposed": f"{e['class']}, exposed: {pct(exposed) if shown else fmt.small if e.get('suppressed') else 'none'}"
                             f" ({fmt.count(e, 'exposed_hypomg')} of {fmt.count(e, 'exposed_mg_results')})",
            "hover_unexposed": f"{e['class']}, not exposed: {pct(unexposed) if shown else fmt.small if e.get('suppressed') else 'none'}"
                               f" ({fmt.count(e, 'unexposed_hypomg')} of {fmt.count(e, 'unexposed_mg_results')})"})
    rows = [[e["class"], fmt.count(e, "exposed_hypomg"), fmt.count(e, "exposed_mg_results"),
             fmt.count(e, "unexposed_hypomg"), fmt.count(e, "unexposed_mg_results")] for e in results["exposures"]]
    withheld = sum(1 for p in points if p["marker"] == fmt.small)
    empty = (f"every class is withheld ({fmt.small})" if withheld == len(points) else
             f"No class to compare: {withheld} withheld ({fmt.small}),<br>"
             f"{len(points) - withheld} without both exposed and unexposed Mg results")
    return {"points": points, "empty_message": empty,
            "table": table(["class", "low Mg (exposed)", "Mg results (exposed)", "low Mg (not exposed)",
                            "Mg results (not exposed)"], rows)}


def validation_view(validation: dict[str, Any]) -> dict[str, Any]:
    suites = validation.get("suites", [])
    failed = [e for s in suites for e in s["expectations"] if not e["success"]]
    rows = [[s["suite"], e["description"], "pass" if e["success"] else ("FAIL (blocking)" if e["blocking"] else "warning"),
             num(e.get("unexpected_count")), "; ".join(str(x) for x in e.get("examples") or [])]
            for s in suites for e in s["expectations"]]
    return {"failed": [e["description"] for e in failed],
            "table": table(["suite", "expectation", "result", "unexpected", "examples"], rows, numeric_from=3)}


PROVENANCE_LAST = ("started_at", "finished_at")


def provenance_table(manifest: dict[str, Any]) -> dict[str, Any]:
    """Input files with their sha256, then every other fact the manifest records about the run."""
    rows = [[i["table"], i["path"], i.get("sha256") or ""] for i in manifest.get("inputs", [])]
    for key, value in manifest.items():
        if isinstance(value, dict) and key not in ("parameters", "time_source"):
            rows += [[f"{key}.{k}" if key != "versions" else k, plain(v), ""]
                     for k, v in value.items() if not isinstance(v, (dict, list)) and "sha256" not in k]
            rows += [[f"{key}.{k}", "", plain(v)] for k, v in value.items() if "sha256" in k and isinstance(v, str)]
        elif isinstance(value, (str, int, float, bool)) and key not in PROVENANCE_LAST:
            rows.append([key, "", plain(value)] if "sha256" in key else [key, plain(value), ""])
        elif isinstance(value, list) and key != "inputs" and all(isinstance(x, str) for x in value):
            rows.append([key, " ".join(value), ""])
    rows += [["started", manifest.get("started_at") or "", ""], ["finished", manifest.get("finished_at") or "", ""]]
    return table(["item", "value", "sha256"], rows, numeric_from=3, code_columns=(2,))


def accounting_tables(results: dict[str, Any], manifest: dict[str, Any], fmt: Fmt) -> dict[str, Any]:
    attrition = [[a["step"], fmt.count(a, "rows"), fmt.count(a, "patients")] for a in results["attrition"]]
    accounting = [[i["table"], Path(i["path"]).name] + [fmt.small if i.get(k) is None else num(i[k]) for k in (
                   "rows_read", "rows_loaded", "rows_out_of_scope", "rows_quarantined")] for i in manifest.get("inputs", [])]
    quarantine = [[q["input_table"], q["reason"], fmt.count(q, "rows")] for q in results["quarantine_reasons"]]
    return {"attrition": table(["step", "rows", "patients"], attrition),
            "accounting": table(["table", "file", "read", "loaded", "out of scope", "quarantined"], accounting,
                                numeric_from=2),
            "quarantine": table(["table", "reason", "rows"], quarantine, numeric_from=2)}


def references(results: dict[str, Any]) -> list[dict[str, str]]:
    refs = sorted({(r["reference_set"], r["citation"]) for r in read_seed("reference_sets")})
    out = [{"name": s, "citation": c} for s, c in refs]
    out += [{"name": t["reference"], "citation": t["citation"]} for t in results.get("testing_rate_references") or []]
    return out + [{"name": "", "citation": f"When run on the MIMIC-IV demo: {MIMIC_CITATION}"}]


def parameter_table(params: dict[str, Any]) -> dict[str, Any]:
    rows = [[f"{section}.{key}", plain(value)] for section, values in params.items() if isinstance(values, dict)
            for key, value in values.items()]
    return table(["parameter", "value"], rows)


# ---- the whole page -----------------------------------------------------------------------------

def report_view(results: dict[str, Any], manifest: dict[str, Any], validation: dict[str, Any]) -> dict[str, Any]:
    """Everything the report template states, as plain data."""
    params = results["parameters"]
    fmt = Fmt(params["privacy"]["min_cell_size"])
    return {
        "fmt": {"small": fmt.small, "min_cell": fmt.min_cell, "on": params["privacy"]["min_cell_size"] > 0},
        "t": terms(params, fmt),
        "run": {"finished_at": manifest.get("finished_at") or "", "source": manifest.get("source") or "",
                "version": (manifest.get("versions") or {}).get("hypomag", "")},
        "validation": validation_view(validation),
        "cards": cards(results, fmt),
        "summary_table": summary_table(results, fmt),
        "article_figures": article_figures(results),
        "whang_figures": reference_list(results, "whang_1984"),
        "forest": forest_rows(results, fmt),
        "cooccurrence_table": cooccurrence_table(results, fmt),
        "ratio_table": ratio_table(results, fmt),
        "sensitivity": sensitivity_grids(results, fmt),
        "distribution": distribution_view(results, fmt),
        "audit": audit_view(results, fmt),
        "audit_charts": audit_charts_view(results, fmt),
        "exposures": exposure_view(results, fmt),
        **accounting_tables(results, manifest, fmt),
        "unit_factors": unit_factors(),
        "parameters_table": parameter_table(params),
        "references": references(results),
        "provenance_table": provenance_table(manifest),
        "epi": epi_view(results, fmt),
    }


def history_view(runs: list[tuple[str, dict[str, Any]]], manifests: dict[str, dict[str, Any]] | None = None,
                 failed: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The history page: one row per run, published or failed (newest first), the headline series of
    the published ones, and "no new data since ..." when the latest published run loaded no file."""
    manifests, failed = manifests or {}, failed or []
    series: dict[str, list[float | None]] = {}
    names = [name for name, _ in runs]
    for i, (_, res) in enumerate(runs):
        for measure, value in history_headline(res).items():
            series.setdefault(measure, [None] * len(runs))[i] = value
    rows = [_published_row(name, res, manifests.get(name) or {}) for name, res in runs]
    rows += [_failed_row(record) for record in failed]
    rows.sort(key=lambda r: r["name"], reverse=True)
    return {"runs": names, "series": series, "rows": rows, "stale": _stale_note(runs, manifests)}


def _published_row(name: str, res: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    counts = res.get("counts") or {}
    flags = [{"measure": f["measure"], "rate": f"{100 * f['rate']:.1f}", "low": f"{100 * f['previous_ci_low']:.1f}",
              "high": f"{100 * f['previous_ci_high']:.1f}"} for f in res.get("history_flags") or []]
    min_cell = ((res.get("parameters") or {}).get("privacy") or {}).get("min_cell_size", 0)
    small = f"<{max(int(min_cell), 1)}"
    rejected = [r["reason"] for r in manifest.get("rejected_inputs") or []]
    return {"name": name, "failed": False, "report": f"{name}/report.html", "validation": f"{name}/validation.json",
            "outcome": "published; rejected: " + "; ".join(rejected) if rejected else "published",
            "lab_rows_read": small if counts.get("lab_rows_read") is None else num(counts["lab_rows_read"]),
            "mg_results": small if counts.get("mg_results") is None else num(counts["mg_results"]),
            "flags": flags}


def _failed_row(record: dict[str, Any]) -> dict[str, Any]:
    name = record["name"]
    return {"name": name, "failed": True, "report": None, "validation": f"failed/{name}/validation.json",
            "outcome": f"failed: {record.get('reason') or 'no reason recorded'}", "lab_rows_read": "",
            "mg_results": "", "flags": []}


def _stale_note(runs: list[tuple[str, dict[str, Any]]], manifests: dict[str, dict[str, Any]]) -> str:
    """"No new data since <time>" when the latest published run loaded no new file, else ""."""
    if not runs:
        return ""
    feed = (manifests.get(runs[-1][0]) or {}).get("feed") or {}
    if feed.get("new_files", 1) or not feed.get("last_loaded_at"):
        return ""
    hours_since = feed.get("hours_since_last_data")
    ago = f" ({hours_since:.0f} h before the latest run)" if isinstance(hours_since, (int, float)) else ""
    return f"No new data since {feed['last_loaded_at']}{ago}."


def history_headline(results: dict[str, Any]) -> dict[str, float | None]:
    """The headline rates of one run (co-occurrence window, result level) and its Mg-check rate."""
    out: dict[str, float | None] = {}
    for row in results.get("cooccurrence") or []:
        if (row["direction"] == HEADLINE_DIRECTION and is_cooccurrence_window(row) and row["level"] == "result"
                and row["abnormality"] in ABNORMALITIES):
            out[f"low Mg among {row['abnormality']}"] = row.get("prevalence")
    out["Mg checked in hypokalemia"] = ((results.get("audit") or {}).get("overall") or {}).get("rate")
    return out


# ---- epidemiology (reports/epi.html; results.json `statistics`, `clustered`, `strata`, `table_one`) ----

def epi_view(results: dict[str, Any], fmt: Fmt) -> dict[str, Any]:
    """The epidemiology section: interval method, clustered beside naive intervals, table 1, strata,
    and the methods paragraph. Empty (`present` false) for a results document without these keys."""
    stats_ = results.get("statistics")
    if not stats_:
        return {"present": False}
    params = results["parameters"]
    return {
        "present": True,
        "method": stats_["interval_label"],
        "method_short": stats_["interval_label"].split()[0],  # "Wilson", "Clopper-Pearson", ...
        "clustered_table": clustered_table(results, fmt),
        "table_one": table_one_table(results.get("table_one") or {}, fmt),
        "demographics": (results.get("table_one") or {}).get("demographics") or "",
        "strata_table": strata_table(results, fmt),
        "audit_years": table(["year", "episodes", "Mg checked", "rate (95% CI)"],
                             rate_rows((results.get("strata") or {}).get("audit_by_year") or [], "year", fmt)),
        "methods": methods_paragraph(results, params),
        "standardised_table": standardised_table(results, fmt),
        "adjusted_table": adjusted_table(results, fmt),
        "demographics_text": demographics_text(results.get("demographics") or {}, fmt),
        "sweep": sweep_view(results, fmt),
    }


def sweep_view(results: dict[str, Any], fmt: Fmt) -> dict[str, Any]:
    """The sweep as a compact table (rows: abnormality, direction, threshold; columns: windows) and the
    chart's series (the run's thresholds across the windows)."""
    sweep = results.get("sweep") or {}
    hours = sweep.get("windows_hours") or []
    lines: dict[tuple, dict[float, dict[str, Any]]] = {}
    for r in sweep.get("rows") or []:
        lines.setdefault((r["abnormality"], r["direction"], r["threshold_key"], r["threshold"]), {})[r["window_hours"]] = r
    run = {(k, v) for k, v in ((f, results["parameters"]["thresholds"].get(f)) for f in
                                {key for _, _, key, _ in lines})}
    body, series = [], []
    for (abnormality, direction, key, value), cells in lines.items():
        label = f"{abnormality}, {DIRECTION_LABEL.get(direction, direction)}"
        body.append([label, f"{key.rsplit('_', 2)[0].replace('_', ' ')} < {value:g} {_key_unit(key)}"
                     + (" (run's)" if (key, value) in run else ""),
                     *(_sweep_cell(cells.get(h), fmt) for h in hours)])
        if (key, value) in run:
            series.append({"name": label, "x": hours,
                           "y": [None if cells.get(h) is None or cells[h]["suppressed"] else cells[h]["prevalence"]
                                 for h in hours]})
    return {"table": table(["abnormality, direction", "threshold", *(f"±{h:g} h" for h in hours)], body,
                           numeric_from=2), "series": series, "present": bool(body)}


def _key_unit(key: str) -> str:
    return {"mmol_l": "mmol/L", "mg_dl": "mg/dL"}.get("_".join(key.rsplit("_", 2)[1:]), "")


def _sweep_cell(r: dict[str, Any] | None, fmt: Fmt) -> str:
    if r is None:
        return ""
    if r["suppressed"]:
        return fmt.small
    return "no index results" if r["prevalence"] is None else f"{pct(r['prevalence'])} ({r['numerator']}/{r['denominator']})"


def standardised_table(results: dict[str, Any], fmt: Fmt) -> dict[str, Any]:
    """Crude beside age-sex standardised prevalence, co-occurrence window, result level."""
    strata = results.get("strata") or {}
    body = []
    for r in strata.get("standardised") or []:
        if not is_cooccurrence_window(r) or r["level"] != "result":
            continue
        if r["suppressed"]:
            body.append([r["abnormality"], DIRECTION_LABEL.get(r["direction"], r["direction"]), fmt.small, fmt.small, ""])
            continue
        value = "no demographics" if r["standardised"] is None else (
            f"{pct(r['standardised'])} ({_interval(r['ci_low'], r['ci_high'])})")
        covered = "" if r["weight_covered"] is None else pct(r["weight_covered"], 0)
        body.append([r["abnormality"], DIRECTION_LABEL.get(r["direction"], r["direction"]),
                     "" if r["crude"] is None else pct(r["crude"]), value, covered])
    return table(["abnormality", "direction", "crude", f"age-sex standardised (95% CI), standard: "
                  f"{strata.get('standard_population', '')}", "standard covered"], body, numeric_from=2)


def adjusted_table(results: dict[str, Any], fmt: Fmt) -> dict[str, Any]:
    """Crude and adjusted prevalence ratios (hypo- vs normomagnesemia), patient level."""
    body = []
    for r in results.get("adjusted_ratios") or []:
        if r["suppressed"]:
            body.append([r["abnormality"], fmt.small, fmt.small, fmt.small, fmt.small, ""])
            continue
        crude = "not estimable" if r["crude_ratio"] is None else (
            f"{r['crude_ratio']:.2f}" + ("" if r["crude_ci_low"] is None else
                                         f" ({r['crude_ci_low']:.2f}–{r['crude_ci_high']:.2f})"))
        adjusted = (r["note"] or "not estimable") if r["adjusted_ratio"] is None else (
            f"{r['adjusted_ratio']:.2f} ({r['adjusted_ci_low']:.2f}–{r['adjusted_ci_high']:.2f})")
        body.append([r["abnormality"], f"{num(r['exposed_events'])}/{num(r['exposed'])}",
                     f"{num(r['unexposed_events'])}/{num(r['unexposed'])}", crude, adjusted,
                     ", ".join(r["covariates"]) or "none varied"])
    return table(["abnormality", "hypomagnesemia: events/patients", "normomagnesemia: events/patients",
                  "crude ratio (95% CI)", "adjusted ratio (95% CI)", "adjusted for"], body, numeric_from=1)


def demographics_text(d: dict[str, Any], fmt: Fmt) -> str:
    """One sentence of the patients table's row accounting."""
    if not d.get("patients_table"):
        return "No patients table was read: age and sex strata are `unknown` and nothing is standardised."
    def n(v: Any) -> str:
        return fmt.small if v is None else num(v)
    reasons = "; ".join(f"{r['reason']} {n(r['rows'])}" for r in d.get("quarantine_reasons") or [])
    return (f"Patients table: {n(d['rows_read'])} rows read, {n(d['rows_loaded'])} loaded, "
            f"{n(d['rows_quarantined'])} quarantined{f' ({reasons})' if reasons else ''}; "
            f"{n(d['lab_patients_with_demographics'])} patients of the lab results have demographics, "
            f"{n(d['lab_patients_without_demographics'])} do not.")


def _interval(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f"{pct(low)}–{pct(high)}"


def clustered_table(results: dict[str, Any], fmt: Fmt) -> dict[str, Any]:
    """Each result-level row: prevalence, naive and patient-clustered intervals, design effect, results
    per patient, and each reference's naive and clustered p-values."""
    params = results["parameters"]
    body = []
    for r in results.get("clustered") or []:
        if r["suppressed"]:
            body.append([r["abnormality"], DIRECTION_LABEL.get(r["direction"], r["direction"]), window_label(r, params),
                         fmt.small, fmt.small, fmt.small, fmt.small, fmt.small, ""])
            continue
        deff = "" if r["design_effect"] is None else f"{r['design_effect']:.2f}"
        per_patient = (fmt.small if r["patients_suppressed"] else
                       "" if r["results_per_patient"] is None else f"{r['results_per_patient']:.2f}")
        refs = "; ".join(f"{ref['set']}: {ref['p_value']:.3g} / {ref['clustered_p_value']:.3g}"
                         for ref in r["references"] if ref["p_value"] is not None and ref["clustered_p_value"] is not None)
        body.append([r["abnormality"], DIRECTION_LABEL.get(r["direction"], r["direction"]), window_label(r, params),
                     "no index results" if r["prevalence"] is None else pct(r["prevalence"]),
                     _interval(r["naive_ci_low"], r["naive_ci_high"]),
                     _interval(r["clustered_ci_low"], r["clustered_ci_high"]), deff, per_patient, refs])
    return table(["abnormality", "direction", "window", "prevalence", "naive 95% CI", "patient-clustered 95% CI",
                  "design effect", "results per patient", "p: naive / clustered"], body, numeric_from=3)


def table_one_table(t: dict[str, Any], fmt: Fmt) -> dict[str, Any]:
    """Table 1: one line per characteristic, one column per magnesium group."""
    groups = t.get("groups") or []
    body = []
    for r in t.get("rows") or []:
        label = r["characteristic"] + (f": {r['category']}" if r["category"] else "")
        body.append([label, r["statistic"], *(_table_one_cell(r, g, fmt) for g in groups)])
    return table(["characteristic", "statistic", *groups], body, numeric_from=2)


def _table_one_cell(r: dict[str, Any], group: str, fmt: Fmt) -> str:
    value, percent = r.get(group), r.get(f"{group}_percent")
    if r.get(f"{group}_suppressed") or value is None:
        return fmt.small
    if isinstance(value, float):
        return f"{value:.2f}"
    denominator = r.get(f"{group}_denominator")
    text = num(value) + (f" / {num(denominator)}" if denominator is not None else "")
    return text + ("" if percent is None else f" ({percent:.1f}%)")


def strata_table(results: dict[str, Any], fmt: Fmt) -> dict[str, Any]:
    """Strata of the co-occurrence window's rows (both levels); every window is in results.json."""
    params = results["parameters"]
    rows_ = [r for r in (results.get("strata") or {}).get("cooccurrence") or [] if is_cooccurrence_window(r)]
    body = [[r["abnormality"], DIRECTION_LABEL.get(r["direction"], r["direction"]), r["level"],
             f"{r['stratum']} = {r['value']}", fmt.count(r, "numerator"), fmt.count(r, "denominator"), fmt.rate(r)]
            for r in rows_]
    return table(["abnormality", "direction", "level", "stratum", "numerator", "denominator", "prevalence (95% CI)"],
                 body, numeric_from=4, caption=f"Co-occurrence window {window_label(rows_[0], params)}" if rows_ else "")


def methods_paragraph(results: dict[str, Any], params: dict[str, Any]) -> str:
    """A methods paragraph generated from the run's parameters, citing docs/definitions.md."""
    t, w, a = params["thresholds"], params["windows"], params["analysis"]
    s = results["statistics"]
    return (
        f"Laboratory results were converted to SI units and classified with strict thresholds: hypomagnesemia "
        f"Mg < {plain(t['hypomagnesemia_mg_dl'])} mg/dL, hypokalemia K < {plain(t['hypokalemia_mmol_l'])} mmol/L, "
        f"hyponatremia Na < {plain(t['hyponatremia_mmol_l'])} mmol/L, hypophosphatemia < "
        f"{plain(t['hypophosphatemia_mg_dl'])} mg/dL and hypocalcemia ({a['hypocalcemia_definition']} calcium) "
        f"< {plain(t['hypocalcemia_mg_dl'])} mg/dL (hypomag definitions, sections 2-3). A partner analyte counted "
        f"as measured when a result of the same patient lay within ±{plain(w['cooccurrence_hours'])} h of the index "
        f"result (same draw: the same specimen or within ±{plain(w['same_draw_hours'])} h), and as abnormal when one "
        f"of those results was abnormal (section 4). Prevalences are reported per index result and per patient "
        f"(each patient once, by the earliest index result with the partner measured), with {s['interval_label']} "
        f"95% confidence intervals. Because patients contribute repeated results, result-level intervals were "
        f"also computed with patients as clusters: a robust (sandwich) variance of the ratio estimator gave the "
        f"design effect, and the {s['interval_label']} interval was recomputed at the effective sample size "
        f"(results divided by the design effect, at least 1; Korn and Graubard 1998); comparisons with published "
        f"figures used the exact binomial test and, clustered, a Rao-Scott corrected score test (section 8). "
        f"Prevalence ratios of each abnormality for hypo- versus normomagnesemia were estimated at patient level "
        f"by modified Poisson regression with robust errors, adjusted for age, sex and the drug classes exposed "
        f"at the result, beside the crude ratio; prevalences were also standardised directly to the "
        f"{(results.get('strata') or {}).get('standard_population', 'pooled')} age-sex population, stratified by "
        f"calendar year, care unit, age band and sex, and recomputed over windows of "
        f"{', '.join(f'{h:g}' for h in (results.get('sweep') or {}).get('windows_hours') or [])} h and a range of "
        f"thresholds (sections 4 and 8). "
        f"Cells with counts of 1 to {max(int(params['privacy']['min_cell_size']) - 1, 0)} were suppressed, with "
        f"complementary suppression (section 7)."
    )
