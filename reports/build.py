"""Build report.html: self-contained (plotly.js embedded once), aggregate figures only.

Everything shown comes from results.json, manifest.json, validation.json and two aggregate
tables (attrition, quarantine reason counts); no row-level data reaches this module.
"""
from __future__ import annotations

import html
from pathlib import Path
from string import Template
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from pipelines.seeds import read_seed

TEMPLATE = Path(__file__).with_name("template.html")
# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = {"observed": "#0072B2", "article": "#D55E00", "whang_1984": "#009E73", "liamis": "#CC79A7"}
SYMBOLS = {"article": "diamond-open", "whang_1984": "square-open", "liamis": "triangle-up-open"}
ABNORMALITIES = ("hypokalemia", "hyponatremia", "hypophosphatemia", "hypocalcemia")

WHANG_NOTE = (
    "Whang et al. 1984 (Arch Intern Med 1984;144:1794) measured the frequency of <b>hypomagnesemia "
    "among patients already found to have</b> each abnormality, so the clinical review's figures "
    "(42/23/22/20%) are compared in the direction <code>hypomg_given_abnormality</code>. Only the "
    "review's 42% (hypokalemia) matches Whang's abstract, whose figures are 42% hypokalemia, 29% "
    "hypophosphatemia, 27% hyponatremia and 22% hypocalcemia."
)


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def p_text(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def cell(row: dict[str, Any], key: str, min_cell: int) -> str:
    if row.get("suppressed"):
        return f"&lt;{min_cell}"
    return esc(row.get(key))


def table(headers: list[str], body: list[list[str]], numeric_from: int = 1) -> str:
    head = "".join(f"<th scope='col'>{h}</th>" for h in headers)
    rows = []
    for r in body:
        cells = "".join(
            f"<td class='num'>{v}</td>" if i >= numeric_from else f"<td>{v}</td>" for i, v in enumerate(r)
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def interval(row: dict[str, Any], min_cell: int) -> str:
    if row.get("suppressed"):
        return f"&lt;{min_cell}"
    if row.get("prevalence") is None:
        return "no index results"
    return f"{pct(row['prevalence'])} ({pct(row['ci_low'])}&ndash;{pct(row['ci_high'])})"


def forest_figure(cooc: list[dict[str, Any]]) -> go.Figure:
    """Observed prevalence (result level) with Wilson CI, beside the reference sets of its direction."""
    rows = [r for r in cooc if r["level"] == "result" and r["direction"] != "abnormality_given_normomg"]
    labels = [f"{r['abnormality']} | {r['direction'].replace('_', ' ')} | {r['window']}" for r in rows]
    fig = go.Figure()
    shown = [r for r in rows if not r["suppressed"] and r["prevalence"] is not None]
    fig.add_trace(go.Scatter(
        x=[r["prevalence"] for r in shown],
        y=[labels[rows.index(r)] for r in shown],
        error_x={"type": "data", "symmetric": False,
                 "array": [r["ci_high"] - r["prevalence"] for r in shown],
                 "arrayminus": [r["prevalence"] - r["ci_low"] for r in shown]},
        mode="markers", name="observed (Wilson 95% CI)",
        marker={"color": PALETTE["observed"], "size": 9, "symbol": "circle"},
    ))
    for ref_set in ("article", "whang_1984", "liamis"):
        points = [(ref["value"], labels[i]) for i, r in enumerate(rows) for ref in r["references"] if ref["set"] == ref_set]
        if points:
            fig.add_trace(go.Scatter(
                x=[p[0] for p in points], y=[p[1] for p in points], mode="markers", name=f"reference: {ref_set}",
                marker={"color": PALETTE[ref_set], "size": 11, "symbol": SYMBOLS[ref_set], "line": {"width": 2}},
            ))
    fig.update_layout(
        title="Observed prevalence vs published figures (result level)",
        xaxis={"title": "prevalence (fraction of index results)", "range": [0, 1], "tickformat": ".0%"},
        yaxis={"autorange": "reversed", "automargin": True},
        height=max(400, 26 * len(rows) + 160), margin={"l": 10, "r": 10, "t": 60, "b": 50},
        legend={"orientation": "h", "y": -0.08},
    )
    return fig


def figure_html(fig: go.Figure, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config={"displaylogo": False})


def write_report(
    path: Path,
    results: dict[str, Any],
    manifest: dict[str, Any],
    validation: dict[str, Any],
    attrition: list[dict[str, Any]],
    quarantine: list[dict[str, Any]],
) -> None:
    params = results["parameters"]
    min_cell = params["privacy"]["min_cell_size"]
    shown_min = max(min_cell, 1)
    cooc = results["cooccurrence"]
    counts = results["counts"]

    headline = {r["abnormality"]: r for r in cooc if r["direction"] == "hypomg_given_abnormality"
                and r["window"] == "24h" and r["level"] == "result"}
    cards = [
        f"<div class='card'><div>{esc(a)}: hypomagnesemia among low results</div>"
        f"<div class='v'>{interval(headline[a], shown_min)}</div>"
        f"<div>article {pct(next(x['value'] for x in headline[a]['references'] if x['set'] == 'article'))}"
        f"; Mg tested in {pct(headline[a]['mg_tested_fraction'])}</div></div>"
        for a in ABNORMALITIES
    ]
    cards.append(
        f"<div class='card'><div>data</div><div class='v'>{counts['patients']:,} patients</div>"
        f"<div>{counts['mg_results']:,} Mg results, {counts['hypomg_results']:,} low</div></div>"
    )

    summary_rows = [[esc(a), interval(headline[a], shown_min), cell(headline[a], "numerator", shown_min),
                     cell(headline[a], "denominator", shown_min), pct(headline[a]["mg_tested_fraction"]),
                     ", ".join(f"{x['set']} {pct(x['value'])}" for x in headline[a]["references"])]
                    for a in ABNORMALITIES]

    cooc_rows = [[esc(r["abnormality"]), esc(r["direction"]), esc(r["window"]), esc(r["level"]),
                  cell(r, "numerator", shown_min), cell(r, "denominator", shown_min), interval(r, shown_min),
                  pct(r["mg_tested_fraction"]),
                  "; ".join(f"{x['set']} {pct(x['value'])} (p={p_text(x['p_value'])})" for x in r["references"])]
                 for r in cooc]
    ratio_rows = [[esc(r["abnormality"]), esc(r["window"]), esc(r["level"]),
                   f"&lt;{shown_min}" if r["suppressed"] else ("" if r["ratio"] is None else f"{r['ratio']:.2f}"),
                   "" if r["ci_low"] is None else f"{r['ci_low']:.2f}&ndash;{r['ci_high']:.2f}"]
                  for r in results["prevalence_ratios"]]
    sens_rows = [[esc(r["abnormality"]), esc(r["hypocalcemia_definition"] or ""), esc(r["mg_threshold_mg_dl"]),
                  esc(r["window"]), cell(r, "numerator", shown_min), cell(r, "denominator", shown_min),
                  interval(r, shown_min)] for r in results["sensitivity"]]
    attrition_rows = [[esc(a["step"]), f"{a['row_count']:,}", f"{a['patient_count']:,}"] for a in attrition]
    accounting_rows = [[esc(i["table"]), esc(Path(i["path"]).name), f"{i['rows_read']:,}", f"{i['rows_loaded']:,}",
                        f"{i['rows_out_of_scope']:,}", f"{i['rows_quarantined']:,}"] for i in manifest["inputs"]]
    quarantine_rows = [[esc(q["input_table"]), esc(q["reason"]), f"{q['n']:,}"] for q in quarantine]
    param_rows = [[esc(f"{section}.{key}"), esc(value)] for section, values in params.items()
                  if isinstance(values, dict) for key, value in values.items()]
    refs = sorted({(r["reference_set"], r["citation"]) for r in read_seed("reference_sets")})
    references_list = "<ul>" + "".join(f"<li><b>{esc(s)}</b>: {esc(c)}</li>" for s, c in refs) + (
        "<li>MIMIC-IV demo (when used as input): Johnson A, et al. MIMIC-IV Clinical Database Demo v2.2, "
        "PhysioNet, ODbL 1.0.</li></ul>")
    versions = manifest["versions"]
    provenance_rows = [[esc(i["table"]), esc(i["path"]), f"<code>{esc(i['sha256'])}</code>"] for i in manifest["inputs"]]
    provenance_rows += [[esc(k), esc(v), ""] for k, v in versions.items()]
    provenance_rows += [["started", esc(manifest["started_at"]), ""], ["finished", esc(manifest["finished_at"]), ""]]

    suites = validation.get("suites", [])
    failed = [e for s in suites for e in s["expectations"] if not e["success"]]
    validation_rows = [
        [esc(s["suite"]), esc(e["description"]),
         "pass" if e["success"] else ("FAIL (blocking)" if e["blocking"] else "warning"),
         "" if e["unexpected_count"] is None else f"{e['unexpected_count']:,}",
         esc("; ".join(str(x) for x in e.get("examples") or []))]
        for s in suites for e in s["expectations"]
    ]
    banner = ""
    if failed:
        banner = ("<div class='banner'><b>Data-quality warnings:</b> " + esc(len(failed)) +
                  " expectation(s) did not pass; see the data-quality section.</div>")

    methods = (
        "<p>Values are converted to SI units with the analysis plan's exact factors; thresholds quoted in "
        "mg/dL are converted by the same floating-point multiplication, and every comparison is strict, so a "
        "value reported exactly at a threshold is not abnormal. A partner analyte is <i>measured</i> if a valid "
        "result of the same patient lies in the window, and <i>abnormal</i> if one of those is abnormal. "
        f"Windows: same draw = same specimen or within &plusmn;{esc(params['windows']['same_draw_hours'])} h; "
        f"24 h = within &plusmn;{esc(params['windows']['cooccurrence_hours'])} h (both inclusive). Hypocalcemia "
        f"definition: {esc(params['analysis']['hypocalcemia_definition'])}. Intervals: Wilson score 95%; "
        "p-values: exact two-sided binomial test against each reference; prevalence ratios: Katz log 95% interval.</p>"
    )
    page = Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        plotlyjs=get_plotlyjs(),
        finished_at=esc(manifest["finished_at"]),
        source=esc(manifest["source"]),
        version=esc(versions["hypomag"]),
        min_cell=shown_min,
        min_cell_minus_one=shown_min - 1,
        banner=banner,
        cards="".join(cards),
        summary_table=table(["abnormality", "hypomagnesemia (95% CI)", "n low Mg", "n with Mg measured",
                             "Mg tested", "references"], summary_rows),
        whang_note=WHANG_NOTE,
        forest=figure_html(forest_figure(cooc), "forest"),
        cooccurrence_table=table(["abnormality", "direction", "window", "level", "numerator", "denominator",
                                  "prevalence (95% CI)", "Mg tested", "references (p)"], cooc_rows, numeric_from=4),
        ratio_table=table(["abnormality", "window", "level", "ratio", "95% CI"], ratio_rows, numeric_from=3),
        sensitivity_table=table(["abnormality", "Ca definition", "Mg threshold (mg/dL)", "window", "numerator",
                                 "denominator", "prevalence (95% CI)"], sens_rows, numeric_from=4),
        attrition_table=table(["step", "rows", "patients"], attrition_rows),
        accounting_table=table(["table", "file", "read", "loaded", "out of scope", "quarantined"], accounting_rows,
                               numeric_from=2),
        quarantine_table=table(["table", "reason", "rows"], quarantine_rows, numeric_from=2),
        validation_table=table(["suite", "expectation", "result", "unexpected", "examples"], validation_rows,
                               numeric_from=3),
        methods=methods,
        parameters_table=table(["parameter", "value"], param_rows),
        references_list=references_list,
        provenance_table=table(["item", "value", "sha256"], provenance_rows, numeric_from=3),
    )
    path.write_text(page, encoding="utf-8")
