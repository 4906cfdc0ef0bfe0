"""Build report.html: one self-contained file (plotly.js embedded once), aggregate figures only.

Everything shown comes from results.json, manifest.json and validation.json, so every number
and every chart's data can be quoted from results.json without reading pixels; no row-level
data reaches this module. Charts use the Okabe-Ito palette (safe for colour-vision
deficiencies) and differ by marker shape or bar pattern as well as colour.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from string import Template
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from pipelines.seeds import read_seed

TEMPLATE = Path(__file__).with_name("template.html")
OKABE_ITO = {"blue": "#0072B2", "vermillion": "#D55E00", "green": "#009E73", "purple": "#CC79A7",
             "orange": "#E69F00", "sky": "#56B4E9", "grey": "#555555"}
REFERENCE_STYLE = {"article": ("#D55E00", "diamond-open"), "whang_1984": ("#009E73", "square-open"),
                   "liamis": ("#CC79A7", "triangle-up-open")}
ABNORMALITIES = ("hypokalemia", "hyponatremia", "hypophosphatemia", "hypocalcemia")
DIRECTION_LABEL = {
    "hypomg_given_abnormality": "low Mg among low X",
    "abnormality_given_hypomg": "low X among low Mg",
    "abnormality_given_normomg": "low X among normal Mg",
}
WHANG_NOTE = (
    "Whang et al. 1984 (Arch Intern Med 1984;144:1794) measured the frequency of <b>hypomagnesemia "
    "among patients already found to have</b> each abnormality, so the clinical review's figures "
    "(42/23/22/20%) are compared in the direction <i>low Mg among low X</i> "
    "(<code>hypomg_given_abnormality</code>). Only the review's 42% (hypokalemia) matches Whang's "
    "abstract, whose figures are 42% hypokalemia, 29% hypophosphatemia, 27% hyponatremia and 22% "
    "hypocalcemia. Because magnesium is tested selectively, the share of index results with magnesium "
    "measured is shown beside every such figure."
)
FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 13}


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def pct(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{100 * value:.{digits}f}%"


def num(value: Any) -> str:
    return "" if value is None else f"{value:,}"


class Page:
    """What the template fills in, plus the small-cell marker ("<11")."""

    def __init__(self, results: dict[str, Any]):
        self.results = results
        self.min_cell = max(results["parameters"]["privacy"]["min_cell_size"], 1)
        self.small = f"&lt;{self.min_cell}"

    def count(self, row: dict[str, Any], key: str) -> str:
        return self.small if row.get("suppressed") else num(row.get(key))

    def total(self, counts: dict[str, Any], key: str) -> str:
        """A `counts` value; null there means suppressed (the block has no flag of its own)."""
        return self.small if counts.get(key) is None else num(counts[key])

    def interval(self, row: dict[str, Any], rate_key: str = "prevalence") -> str:
        if row.get("suppressed"):
            return self.small
        if row.get(rate_key) is None:
            return "no index results"
        low = row.get("ci_low", row.get(rate_key.replace("rate", "ci_low")))
        high = row.get("ci_high", row.get(rate_key.replace("rate", "ci_high")))
        return f"{pct(row[rate_key])} ({pct(low)}&ndash;{pct(high)})"


def table(headers: list[str], body: list[list[str]], numeric_from: int = 1, caption: str = "") -> str:
    head = "".join(f"<th scope='col'>{h}</th>" for h in headers)
    rows = "".join(
        "<tr>" + "".join(f"<td class='num'>{v}</td>" if i >= numeric_from else f"<td>{v}</td>"
                         for i, v in enumerate(r)) + "</tr>"
        for r in body
    )
    cap = f"<caption>{caption}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


class Charts:
    """Figures are drawn after the page's text: plotly.js (about 4.9 MB) and one JSON block of
    figures are placed at the end of the body, so the summary paints before the charts load."""

    def __init__(self) -> None:
        self.figures: dict[str, str] = {}

    def add(self, fig: go.Figure, div_id: str, caption: str) -> str:
        fig.update_layout(font=FONT, template="plotly_white", margin={"l": 10, "r": 10, "t": 60, "b": 60})
        self.figures[div_id] = fig.to_json()
        height = fig.layout.height or 450
        return (f"<figure class='chart' data-chart='{div_id}'><div id='{div_id}' class='hm-chart' "
                f"style='min-height:{height}px' role='img' aria-label='{esc(fig.layout.title.text)}'></div>"
                f"<figcaption>{caption}</figcaption></figure>")

    def script(self) -> str:
        body = ",".join(f"{json.dumps(k)}:{v}" for k, v in self.figures.items()).replace("</", "<\\/")
        return (
            "<script type='text/javascript'>(function(){var figs={" + body + "};"
            "var config={displaylogo:false,responsive:true};"
            "Object.keys(figs).forEach(function(id){var f=figs[id];"
            "Plotly.newPlot(id,f.data,f.layout,config);});})();</script>"
        )


# ---- charts -------------------------------------------------------------------------------------

def forest_figure(cooc: list[dict[str, Any]]) -> go.Figure:
    """Observed prevalence (result level) with Wilson CI beside every reference set of its direction."""
    rows = [r for r in cooc if r["level"] == "result" and r["direction"] != "abnormality_given_normomg"]
    label = {id(r): f"{r['abnormality']} · {DIRECTION_LABEL[r['direction']]} · {r['window']}" for r in rows}
    shown = [r for r in rows if not r["suppressed"] and r["prevalence"] is not None]
    fig = go.Figure(go.Scatter(
        x=[r["prevalence"] for r in shown], y=[label[id(r)] for r in shown], mode="markers",
        name="observed (Wilson 95% CI)", marker={"color": OKABE_ITO["blue"], "size": 10, "symbol": "circle"},
        error_x={"type": "data", "symmetric": False, "array": [r["ci_high"] - r["prevalence"] for r in shown],
                 "arrayminus": [r["prevalence"] - r["ci_low"] for r in shown], "color": OKABE_ITO["blue"]},
    ))
    for ref_set, (color, symbol) in REFERENCE_STYLE.items():
        points = [(ref["value"], label[id(r)]) for r in rows for ref in r["references"] if ref["set"] == ref_set]
        if points:
            fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="markers",
                                     name=f"reference: {ref_set}",
                                     marker={"color": color, "size": 12, "symbol": symbol, "line": {"width": 2}}))
    fig.update_layout(
        title="Observed prevalence vs published figures (result level)",
        xaxis={"title": "prevalence (% of index results)", "range": [0, 1], "tickformat": ".0%"},
        yaxis={"autorange": "reversed", "automargin": True, "categoryorder": "array",
               "categoryarray": [label[id(r)] for r in rows]},
        height=max(420, 24 * len(rows) + 180), legend={"orientation": "h", "y": -0.12},
    )
    return fig


def sensitivity_figure(sens: list[dict[str, Any]], min_cell: int) -> go.Figure:
    """Heat map: abnormality (and calcium definition) x Mg threshold and window."""
    row_keys = sorted({(r["abnormality"], r["hypocalcemia_definition"] or "") for r in sens})
    col_keys = sorted({(r["mg_threshold_mg_dl"], r["window"]) for r in sens}, key=lambda c: (c[1] != "same_draw", c[0]))
    cell = {((r["abnormality"], r["hypocalcemia_definition"] or ""), (r["mg_threshold_mg_dl"], r["window"])): r
            for r in sens}
    z, text = [], []
    for rk in row_keys:
        zr, tr = [], []
        for ck in col_keys:
            r = cell.get((rk, ck))
            value = None if r is None or r["suppressed"] else r["prevalence"]
            zr.append(value)
            tr.append(f"&lt;{min_cell}" if r and r["suppressed"] else ("n/a" if value is None else f"{100 * value:.0f}%"))
        z.append(zr)
        text.append(tr)
    fig = go.Figure(go.Heatmap(
        z=z, text=text, texttemplate="%{text}", colorscale="Cividis", zmin=0, zmax=1,
        x=[f"{w} · Mg<{t:g} mg/dL" for t, w in col_keys],
        y=[f"{a} ({d})" if d else a for a, d in row_keys],
        colorbar={"title": "prevalence", "tickformat": ".0%"},
        hovertemplate="%{y}<br>%{x}<br>prevalence %{text}<extra></extra>",
    ))
    fig.update_layout(title="Sensitivity grid: low X among low Mg, by Mg threshold and window",
                      xaxis={"title": "window · magnesium threshold"}, yaxis={"title": "abnormality (Ca definition)",
                                                                              "automargin": True},
                      height=120 + 40 * len(row_keys))
    return fig


def distribution_figure(dist: dict[str, Any], params: dict[str, Any]) -> go.Figure:
    bins = [b for b in dist["bins"] if not b["suppressed"]]
    fig = go.Figure(go.Bar(
        x=[(b["from_mmol_l"] + b["to_mmol_l"]) / 2 for b in bins], y=[b["results"] for b in bins],
        width=dist["bin_width_mmol_l"], marker={"color": OKABE_ITO["sky"], "line": {"color": OKABE_ITO["grey"], "width": 1}},
        name="magnesium results",
    ))
    canon = params["canonical_thresholds"]
    for value, name, dash in ((canon["hypomagnesemia_mmol_l"], "hypomagnesemia threshold", "dash"),
                              (canon["normomagnesemia_upper_mmol_l"], "upper normal", "dot")):
        fig.add_vline(x=value, line={"color": OKABE_ITO["vermillion"], "dash": dash, "width": 2},
                      annotation_text=f"{name} {value:.4g} mmol/L", annotation_position="top")
    fig.update_layout(title="Magnesium results (canonical units)", xaxis={"title": "magnesium (mmol/L)"},
                      yaxis={"title": "results (bins of 0.05 mmol/L)"}, height=380, showlegend=False, bargap=0)
    return fig


def audit_trend_figure(by_month: list[dict[str, Any]]) -> go.Figure:
    shown = [m for m in by_month if not m["suppressed"] and m["rate"] is not None]
    months = [m["month"] for m in shown]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=months + months[::-1], y=[m["ci_high"] for m in shown] + [m["ci_low"] for m in shown][::-1],
                             fill="toself", fillcolor="rgba(0,114,178,0.18)", line={"width": 0}, hoverinfo="skip",
                             name="Wilson 95% CI"))
    fig.add_trace(go.Scatter(x=months, y=[m["rate"] for m in shown], mode="lines+markers", name="Mg checked",
                             line={"color": OKABE_ITO["blue"], "width": 2}, marker={"symbol": "circle", "size": 8}))
    fig.update_layout(title="Magnesium checked within ±24 h of a hypokalemia episode's start, by month",
                      xaxis={"title": "month of episode start", "type": "category"},
                      yaxis={"title": "episodes with Mg checked (%)", "range": [0, 1], "tickformat": ".0%"},
                      height=380, legend={"orientation": "h", "y": -0.25})
    return fig


def funnel_figure(overall: dict[str, Any], min_cell: int) -> go.Figure:
    stages = [("hypokalemia episodes", overall.get("episodes")), ("Mg checked (±24 h of start)", overall.get("mg_checked")),
              ("low Mg found", overall.get("low_mg_episodes")), ("Mg repleted", overall.get("mg_repleted"))]
    fig = go.Figure(go.Funnel(
        y=[s[0] for s in stages], x=[s[1] or 0 for s in stages],
        text=[f"&lt;{min_cell}" if s[1] is None else f"{s[1]:,}" for s in stages], textinfo="text",
        marker={"color": [OKABE_ITO["blue"], OKABE_ITO["sky"], OKABE_ITO["orange"], OKABE_ITO["green"]]},
    ))
    fig.update_layout(title="From hypokalemia episode to magnesium repletion (episodes)", height=340)
    return fig


def severity_figure(by_severity: list[dict[str, Any]], references: list[dict[str, Any]]) -> go.Figure:
    shown = [s for s in by_severity if not s["suppressed"] and s["rate"] is not None]
    fig = go.Figure(go.Bar(
        x=[s["severity"] for s in shown], y=[s["rate"] for s in shown], name="observed",
        marker={"color": OKABE_ITO["blue"], "pattern": {"shape": "/"}},
        error_y={"type": "data", "symmetric": False, "array": [s["ci_high"] - s["rate"] for s in shown],
                 "arrayminus": [s["rate"] - s["ci_low"] for s in shown]},
        text=[pct(s["rate"], 0) for s in shown], textposition="outside",
    ))
    for ref, dash in zip(references, ("dash", "dot", "dashdot")):
        fig.add_hline(y=ref["rate"], line={"color": OKABE_ITO["vermillion"], "dash": dash},
                      annotation_text=f"{ref['reference']}: {pct(ref['rate'], 0)}", annotation_position="right")
    fig.update_layout(title="Mg checked by episode severity (lowest K), with published testing rates",
                      xaxis={"title": "severity (lowest K: severe < 2.5, moderate < 3.0, mild < 3.5 mmol/L)"},
                      yaxis={"title": "episodes with Mg checked (%)", "range": [0, 1.1], "tickformat": ".0%"},
                      height=380, showlegend=False)
    return fig


def exposure_figure(exposures: list[dict[str, Any]]) -> go.Figure:
    shown = [e for e in exposures if not e["suppressed"] and e["exposed_mg_results"] and e["unexposed_mg_results"]]
    classes = [e["class"] for e in shown]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=classes, y=[e["exposed_hypomg"] / e["exposed_mg_results"] for e in shown], name="exposed",
                         marker={"color": OKABE_ITO["vermillion"], "pattern": {"shape": "x"}}))
    fig.add_trace(go.Bar(x=classes, y=[e["unexposed_hypomg"] / e["unexposed_mg_results"] for e in shown],
                         name="not exposed", marker={"color": OKABE_ITO["blue"], "pattern": {"shape": ""}}))
    fig.update_layout(title="Hypomagnesemia among Mg results, exposed vs not, per drug class",
                      barmode="group", xaxis={"title": "drug class at collection time"},
                      yaxis={"title": "Mg results below threshold (%)", "tickformat": ".0%"}, height=380,
                      legend={"orientation": "h", "y": -0.3})
    return fig


# ---- page ---------------------------------------------------------------------------------------

def write_report(path: Path, results: dict[str, Any], manifest: dict[str, Any], validation: dict[str, Any]) -> None:
    page = Page(results)
    params = results["parameters"]
    cooc, counts, audit = results["cooccurrence"], results["counts"], results["audit"]
    overall = audit["overall"]
    testing_refs = results["testing_rate_references"]

    headline = {r["abnormality"]: r for r in cooc if r["direction"] == "hypomg_given_abnormality"
                and r["window"] == "24h" and r["level"] == "result"}

    def article(a: str) -> str:
        return pct(next(x["value"] for x in headline[a]["references"] if x["set"] == "article"), 0)

    cards = [
        f"<div class='card' data-abnormality='{a}'><div class='k'>low Mg among {esc(a)}</div>"
        f"<div class='v' data-value='{'' if headline[a]['prevalence'] is None else headline[a]['prevalence']}'>"
        f"{page.interval(headline[a])}</div>"
        f"<div>article {article(a)} · Mg tested in {pct(headline[a]['mg_tested_fraction']) or 'n/a'}</div></div>"
        for a in ABNORMALITIES
    ]
    cards.append(
        f"<div class='card' data-measure='mg_check_rate'><div class='k'>Mg checked in hypokalemia</div>"
        f"<div class='v' data-value='{'' if overall['rate'] is None else overall['rate']}'>{page.interval(overall, 'rate')}</div>"
        f"<div>{page.count(overall, 'mg_checked')} of {page.count(overall, 'episodes')} episodes</div></div>"
    )
    window = results["data_window"]
    cards.append(
        f"<div class='card'><div class='k'>data</div><div class='v'>{page.total(counts, 'patients')} patients</div>"
        f"<div>{page.total(counts, 'mg_results')} Mg results ({page.total(counts, 'hypomg_results')} low) · "
        f"{esc(window['first_collected_on'])} to {esc(window['last_collected_on'])}</div></div>"
    )
    summary_rows = [[esc(a), page.interval(headline[a]), page.count(headline[a], "numerator"),
                     page.count(headline[a], "denominator"), pct(headline[a]["mg_tested_fraction"]),
                     ", ".join(f"{x['set']} {pct(x['value'], 0)}" for x in headline[a]["references"])]
                    for a in ABNORMALITIES]

    def p_text(v: float | None) -> str:
        return "" if v is None else f"{v:.3g}"

    cooc_rows = [[esc(r["abnormality"]), esc(DIRECTION_LABEL[r["direction"]]), esc(r["window"]), esc(r["level"]),
                  page.count(r, "numerator"), page.count(r, "denominator"), page.interval(r),
                  pct(r["mg_tested_fraction"]),
                  "; ".join(f"{x['set']} {pct(x['value'], 1)} (p={p_text(x['p_value'])})" for x in r["references"])]
                 for r in sorted(cooc, key=lambda r: (r["direction"], r["abnormality"], r["window"], r["level"]))]
    ratio_rows = [[esc(r["abnormality"]), esc(r["window"]), esc(r["level"]),
                   page.small if r["suppressed"] else ("" if r["ratio"] is None else f"{r['ratio']:.2f}"),
                   "" if r["ci_low"] is None else f"{r['ci_low']:.2f}&ndash;{r['ci_high']:.2f}"]
                  for r in results["prevalence_ratios"]]
    month_rows = [[esc(m["month"]), page.count(m, "episodes"), page.count(m, "mg_checked"), page.interval(m, "rate")]
                  for m in audit["by_month"]]
    severity_rows = [[esc(m["severity"]), page.count(m, "episodes"), page.count(m, "mg_checked"),
                      page.interval(m, "rate")] for m in audit["by_severity"]]
    unit_rows = [[esc(m["care_unit"]), page.count(m, "episodes"), page.count(m, "mg_checked"),
                  page.interval(m, "rate")] for m in audit["by_care_unit"]]
    refractory_text = (
        f"{page.small if overall['refractory_suppressed'] else num(overall['refractory_episodes'])} refractory episodes "
        f"(a potassium supplement started in the episode and potassium still low 24 h later); magnesium checked in "
        f"{page.small if overall['refractory_suppressed'] else num(overall['refractory_mg_checked'])} of them "
        f"({'' if overall['refractory_suppressed'] else pct(overall['refractory_checked_rate'])}). "
        f"Repleted among low-Mg episodes: "
        f"{page.small if overall['repleted_suppressed'] else num(overall['mg_repleted'])} of "
        f"{page.small if overall['repleted_suppressed'] else num(overall['low_mg_episodes'])} "
        f"({'' if overall['repleted_suppressed'] else pct(overall['repleted_rate'])})."
    )
    testing_rows = [[esc(t["reference"]), esc(t["population"]), pct(t["rate"]), esc(t["citation"])] for t in testing_refs]
    exposure_rows = [[esc(e["class"]), page.count(e, "exposed_hypomg"), page.count(e, "exposed_mg_results"),
                      page.count(e, "unexposed_hypomg"), page.count(e, "unexposed_mg_results")]
                     for e in results["exposures"]]
    attrition_rows = [[esc(a["step"]), page.small if a["rows"] is None else num(a["rows"]),
                       page.small if a["patients"] is None else num(a["patients"])] for a in results["attrition"]]
    accounting_rows = [[esc(i["table"]), esc(Path(i["path"]).name)] + [page.total(i, k) for k in (
                        "rows_read", "rows_loaded", "rows_out_of_scope", "rows_quarantined")] for i in manifest["inputs"]]
    quarantine_rows = [[esc(q["input_table"]), esc(q["reason"]), page.count(q, "rows")]
                       for q in results["quarantine_reasons"]]
    param_rows = [[esc(f"{section}.{key}"), esc(value)] for section, values in params.items()
                  if isinstance(values, dict) for key, value in values.items()]
    refs = sorted({(r["reference_set"], r["citation"]) for r in read_seed("reference_sets")})
    references_list = "<ul>" + "".join(f"<li><b>{esc(s)}</b>: {esc(c)}</li>" for s, c in refs) + "".join(
        f"<li><b>{esc(t['reference'])}</b>: {esc(t['citation'])}</li>" for t in testing_refs) + (
        "<li>When run on the MIMIC-IV demo: Johnson A, Bulgarelli L, Pollard T, Horng S, Celi LA, Mark R. "
        "MIMIC-IV Clinical Database Demo v2.2, PhysioNet (ODbL 1.0).</li></ul>")
    versions = manifest["versions"]
    provenance_rows = [[esc(i["table"]), esc(i["path"]), f"<code>{esc(i['sha256'])}</code>"] for i in manifest["inputs"]]
    provenance_rows += [[esc(k), esc(v), ""] for k, v in versions.items()]
    provenance_rows += [["started", esc(manifest["started_at"]), ""], ["finished", esc(manifest["finished_at"]), ""]]

    suites = validation.get("suites", [])
    failed = [e for s in suites for e in s["expectations"] if not e["success"]]
    validation_rows = [[esc(s["suite"]), esc(e["description"]),
                        "pass" if e["success"] else ("FAIL (blocking)" if e["blocking"] else "warning"),
                        num(e["unexpected_count"]), esc("; ".join(str(x) for x in e.get("examples") or []))]
                       for s in suites for e in s["expectations"]]
    banner = ""
    if failed:
        banner = (f"<div class='banner' role='alert'><b>Data-quality warnings:</b> {len(failed)} expectation(s) did not "
                  "pass: " + esc("; ".join(e["description"] for e in failed)) +
                  ". See <a href='#data-quality'>data quality</a>.</div>")
    w, a, t = params["windows"], params["analysis"], params["thresholds"]
    methods = (
        "<p><b>Units.</b> Values are converted to SI units with the analysis plan's exact factors (Mg mg/dL × 0.4114, "
        "mEq/L × 0.5; phosphate mg/dL × 0.3229; calcium mg/dL × 0.2495; albumin g/dL × 10). Thresholds quoted in mg/dL "
        "are converted by the same floating-point multiplication and every comparison is strict, so a value reported "
        f"exactly at a threshold is not abnormal. <b>Definitions.</b> Hypomagnesemia: Mg &lt; {esc(t['hypomagnesemia_mg_dl'])} mg/dL; "
        f"normomagnesemia {esc(t['hypomagnesemia_mg_dl'])}&ndash;{esc(t['normomagnesemia_upper_mg_dl'])} mg/dL; hypokalemia "
        f"K &lt; {esc(t['hypokalemia_mmol_l'])} mmol/L; hyponatremia Na &lt; {esc(t['hyponatremia_mmol_l'])} mmol/L; "
        f"hypophosphatemia &lt; {esc(t['hypophosphatemia_mg_dl'])} mg/dL; hypocalcemia ({esc(a['hypocalcemia_definition'])}) "
        f"total Ca &lt; {esc(t['hypocalcemia_mg_dl'])} mg/dL (corrected: Ca + 0.02 × (40 − albumin g/L) from the same draw; "
        f"ionized: &lt; {esc(t['ionized_hypocalcemia_mmol_l'])} mmol/L).</p>"
        "<p><b>Co-occurrence.</b> A partner analyte is <i>measured</i> if a valid result of the same patient lies in the "
        "window, and <i>abnormal</i> if one of those is abnormal. Windows: <i>same draw</i> = the same specimen, or "
        f"collected within ±{esc(w['same_draw_hours'])} h; <i>24h</i> = within ±{esc(w['cooccurrence_hours'])} h (both "
        "inclusive). Result level counts every index result; patient level counts each patient once, by the earliest index "
        "result with the partner measured.</p>"
        f"<p><b>Audit.</b> Low K results ≤ {esc(params['audit']['episode_gap_hours'])} h apart form an episode; Mg checked = a "
        "Mg result within ±24 h of the episode start; low Mg and repletion are looked for from 24 h before the start to "
        "24 h after the end; refractory = a K supplement started in the episode and K still low ≥ 24 h later.</p>"
        "<p><b>Statistics.</b> Wilson score 95% intervals; exact two-sided binomial test against each reference; Katz log "
        f"95% interval for prevalence ratios. Cells of 1&ndash;{page.min_cell - 1} are suppressed.</p>"
    )
    charts = Charts()
    filled = dict(

        finished_at=esc(manifest["finished_at"]), source=esc(manifest["source"]), version=esc(versions["hypomag"]),
        min_cell=page.min_cell, min_cell_minus_one=page.min_cell - 1, banner=banner, cards="".join(cards),
        summary_table=table(["abnormality", "low Mg (95% CI)", "n low Mg", "n with Mg measured", "Mg tested",
                             "references"], summary_rows),
        whang_note=WHANG_NOTE,
        forest=charts.add(forest_figure(cooc), "chart-forest",
                     "Dots: observed prevalence with its Wilson 95% interval; hollow markers: the published figures that "
                     "measured the same direction. Look for references outside the interval."),
        cooccurrence_table=table(["abnormality", "direction", "window", "level", "numerator", "denominator",
                                  "prevalence (95% CI)", "Mg tested", "references (p)"], cooc_rows, numeric_from=4),
        ratio_table=table(["abnormality", "window", "level", "ratio", "95% CI"], ratio_rows, numeric_from=3),
        sensitivity=charts.add(sensitivity_figure(results["sensitivity"], page.min_cell), "chart-sensitivity",
                          "Each cell: share of low-Mg results (below the column's threshold) with the row's abnormality in "
                          "the window. Look for rows whose shade changes with the threshold."),
        distribution=charts.add(distribution_figure(results["mg_distribution"], params), "chart-mg-distribution",
                           "Magnesium results by value; dashed line: the hypomagnesemia threshold, dotted: upper normal. "
                           "Bins with fewer than the minimum cell size are left out."),
        audit_trend=charts.add(audit_trend_figure(audit["by_month"]), "chart-audit-trend",
                          "Share of hypokalemia episodes with magnesium measured within ±24 h of the start, per month, "
                          "with its 95% band. Look for months below the rest."),
        funnel=charts.add(funnel_figure(overall, page.min_cell), "chart-audit-funnel",
                     "How many episodes reach each step; repletion is counted among low-Mg episodes."),
        severity=charts.add(severity_figure(audit["by_severity"], testing_refs), "chart-audit-severity",
                       "Testing rate by severity, with published testing rates as horizontal lines (populations differ: "
                       "see the table)."),
        refractory_text=refractory_text,
        month_table=table(["month", "episodes", "Mg checked", "rate (95% CI)"], month_rows),
        severity_table=table(["severity", "episodes", "Mg checked", "rate (95% CI)"], severity_rows),
        unit_table=table(["care unit", "episodes", "Mg checked", "rate (95% CI)"], unit_rows) if unit_rows
        else "<p>The input has no care unit.</p>",
        testing_table=table(["reference", "population", "rate", "source"], testing_rows, numeric_from=2),
        exposures=charts.add(exposure_figure(results["exposures"]), "chart-exposures",
                        "Share of magnesium results below the threshold while an order of the class was active vs not. "
                        "Classes with small cells are left out."),
        exposure_table=table(["class", "low Mg (exposed)", "Mg results (exposed)", "low Mg (not exposed)",
                              "Mg results (not exposed)"], exposure_rows),
        attrition_table=table(["step", "rows", "patients"], attrition_rows),
        accounting_table=table(["table", "file", "read", "loaded", "out of scope", "quarantined"], accounting_rows,
                               numeric_from=2),
        quarantine_table=table(["table", "reason", "rows"], quarantine_rows, numeric_from=2),
        validation_table=table(["suite", "expectation", "result", "unexpected", "examples"], validation_rows,
                               numeric_from=3),
        methods=methods, parameters_table=table(["parameter", "value"], param_rows), references_list=references_list,
        provenance_table=table(["item", "value", "sha256"], provenance_rows, numeric_from=3),
    )
    html_text = Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        **filled, plotlyjs=get_plotlyjs(), chart_script=charts.script())
    path.write_text(html_text, encoding="utf-8")
