"""Plotly figure builders: the view model's chart data in, `go.Figure` out.

Charts use the Okabe-Ito palette (safe for colour-vision deficiencies) and differ by marker shape
or bar pattern as well as colour. Titles live in the page (HTML wraps on a phone; an SVG title
does not); labels are short or wrapped so that nothing is cut at 390 px. A withheld point is drawn
as its "<N" marker, and a chart with no point to draw says so inside its own area.
"""
from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

OKABE_ITO = {"blue": "#0072B2", "vermillion": "#D55E00", "green": "#009E73", "purple": "#CC79A7",
             "orange": "#E69F00", "sky": "#56B4E9", "yellow": "#F0E442", "grey": "#555555"}
REFERENCE_STYLE = {"article": ("#D55E00", "diamond-open"), "whang_1984": ("#009E73", "square-open"),
                   "liamis": ("#CC79A7", "triangle-up-open")}
LINE_DASHES = ("dash", "dot", "dashdot", "longdash")
FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12}
BOTTOM_LEGEND = {"orientation": "h", "x": 0, "xanchor": "left", "y": -0.18, "yanchor": "top"}


def base_layout(fig: go.Figure, height: int) -> go.Figure:
    """The layout every chart shares: no SVG title, automatic width, room for labels."""
    fig.update_layout(font=FONT, template="plotly_white", height=height, autosize=True, title=None,
                      margin={"l": 8, "r": 16, "t": 16, "b": 8}, hoverlabel={"align": "left"})
    return fig


def say_empty(fig: go.Figure, message: str) -> go.Figure:
    """A chart with nothing to draw: the reason, inside the chart area, instead of empty axes."""
    fig.update_layout(xaxis={"visible": False}, yaxis={"visible": False}, showlegend=False)
    fig.update_traces(visible=False)
    fig.update_layout(height=min(fig.layout.height or 450, 240))
    fig.add_annotation(text=message, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                       font={"size": 14, "color": OKABE_ITO["grey"]}, align="center")
    return fig


def withheld_marks(fig: go.Figure, x: list[Any], y: list[Any], hover: list[str], small: str,
                   horizontal: bool = False) -> None:
    """The "<N" marker at the baseline of each withheld point."""
    if not x:
        return
    fig.add_trace(go.Scatter(
        x=y if horizontal else x, y=x if horizontal else y, mode="text", text=[small] * len(x),
        textposition="middle right" if horizontal else "top center", name=f"withheld ({small})", cliponaxis=False,
        textfont={"color": OKABE_ITO["grey"]}, hovertext=hover, hoverinfo="text", showlegend=False))


def forest_figure(rows: list[dict[str, Any]], small: str, method: str = "Wilson") -> go.Figure:
    """Observed prevalence (result level) with its 95% interval (`method`) beside every reference set of its
    direction."""
    shown = [r for r in rows if r["value"] is not None]
    fig = go.Figure(go.Scatter(
        x=[r["value"] for r in shown], y=[r["label"] for r in shown], mode="markers",
        name=f"observed ({method} 95% CI)", marker={"color": OKABE_ITO["blue"], "size": 9, "symbol": "circle"},
        error_x={"type": "data", "symmetric": False, "array": [r["ci_high"] - r["value"] for r in shown],
                 "arrayminus": [r["value"] - r["ci_low"] for r in shown], "color": OKABE_ITO["blue"]},
        hovertext=[r["hover"] for r in shown], hoverinfo="text",
    ))
    hidden = [r for r in rows if r["value"] is None]
    withheld_marks(fig, [r["label"] for r in hidden], [0] * len(hidden), [r["hover"] for r in hidden], small,
                   horizontal=True)
    for ref_set, (color, symbol) in REFERENCE_STYLE.items():
        points = [(ref["value"], r["label"], ref["hover"]) for r in rows for ref in r["references"] if ref["set"] == ref_set]
        if points:
            fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="markers",
                                     name=f"reference: {ref_set}", hovertext=[p[2] for p in points], hoverinfo="text",
                                     marker={"color": color, "size": 11, "symbol": symbol, "line": {"width": 2}}))
    base_layout(fig, max(420, 34 * len(rows) + 160))
    fig.update_layout(
        xaxis={"title": "share of index results", "range": [0, 1], "tickformat": ".0%"},
        yaxis={"autorange": "reversed", "automargin": True, "categoryorder": "array",
               "categoryarray": [r["label"] for r in rows], "tickfont": {"size": 11}},
        legend=BOTTOM_LEGEND,
    )
    return fig


def sensitivity_figure(grid: dict[str, Any], empty_message: str) -> go.Figure:
    """Heat map of one direction: abnormality (calcium definition) x window and Mg threshold."""
    fig = go.Figure(go.Heatmap(
        z=grid["z"], text=grid["text"], texttemplate="%{text}", textfont={"size": 10}, colorscale="Cividis",
        zmin=0, zmax=1, x=grid["x"], y=grid["y"], customdata=grid["hover"], hovertemplate="%{customdata}<extra></extra>",
        colorbar={"title": {"text": "prevalence", "side": "top"}, "tickformat": ".0%", "orientation": "h",
                  "x": 0, "xanchor": "left", "y": 1.02, "yanchor": "bottom", "len": 0.6, "thickness": 12},
        xgap=1, ygap=1,
    ))
    base_layout(fig, 260 + 34 * len(grid["y"]))
    fig.update_layout(margin={"t": 70})
    fig.update_layout(xaxis={"tickfont": {"size": 10}, "automargin": True, "tickangle": -90},
                      yaxis={"automargin": True, "autorange": "reversed", "tickfont": {"size": 11}})
    if grid["all_suppressed"]:
        say_empty(fig, empty_message)
    return fig


def distribution_figure(view: dict[str, Any], small: str, empty_message: str) -> go.Figure:
    bins = view["bins"]
    fig = go.Figure(go.Bar(
        x=[b["mid"] for b in bins], y=[b["results"] for b in bins], width=view["width"], name="magnesium results",
        marker={"color": OKABE_ITO["sky"], "line": {"color": OKABE_ITO["grey"], "width": 1}},
        hovertext=[b["hover"] for b in bins], hoverinfo="text",
    ))
    withheld = view["withheld"]
    if withheld:
        fig.add_trace(go.Scatter(x=[b["mid"] for b in withheld], y=[0] * len(withheld), mode="markers",
                                 name=f"bin withheld ({small})", hovertext=[b["hover"] for b in withheld],
                                 hoverinfo="text", marker={"symbol": "x-thin-open", "size": 8,
                                                           "color": OKABE_ITO["grey"], "line": {"width": 2}}))
    for line in view["lines"]:
        fig.add_vline(x=line["x"], line={"color": OKABE_ITO["vermillion"], "dash": line["dash"], "width": 2},
                      showlegend=True, name=line["label"])
    base_layout(fig, 420)
    fig.update_layout(xaxis={"title": "magnesium (mmol/L)"},
                      yaxis={"title": f"results per {view['width_text']}", "automargin": True},
                      bargap=0, legend=BOTTOM_LEGEND)
    if not bins:
        say_empty(fig, empty_message)
    return fig


def audit_trend_figure(months: list[dict[str, Any]], small: str, empty_message: str,
                       method: str = "Wilson") -> go.Figure:
    shown = [m for m in months if m["rate"] is not None]
    x = [m["label"] for m in shown]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x + x[::-1], y=[m["ci_high"] for m in shown] + [m["ci_low"] for m in shown][::-1],
                             fill="toself", fillcolor="rgba(0,114,178,0.18)", line={"width": 0}, hoverinfo="skip",
                             name=f"{method} 95% CI"))
    fig.add_trace(go.Scatter(x=x, y=[m["rate"] for m in shown], mode="lines+markers", name="Mg checked",
                             line={"color": OKABE_ITO["blue"], "width": 2}, marker={"symbol": "circle", "size": 8},
                             hovertext=[m["hover"] for m in shown], hoverinfo="text"))
    hidden = [m for m in months if m["rate"] is None]
    withheld_marks(fig, [m["label"] for m in hidden], [0] * len(hidden), [m["hover"] for m in hidden], small)
    base_layout(fig, 380)
    fig.update_layout(xaxis={"type": "category", "categoryorder": "array", "categoryarray": [m["label"] for m in months],
                             "automargin": True},
                      yaxis={"title": "episodes with Mg checked", "range": [0, 1.05], "tickformat": ".0%"},
                      legend=BOTTOM_LEGEND)
    if not shown:
        say_empty(fig, empty_message)
    return fig


def funnel_figure(stages: list[dict[str, Any]]) -> go.Figure:
    """Episodes reaching each step; a withheld step keeps its bar slot and shows its "<N" beside it."""
    colors = [OKABE_ITO["blue"], OKABE_ITO["sky"], OKABE_ITO["orange"], OKABE_ITO["green"]]
    fig = go.Figure(go.Bar(
        y=[s["label"] for s in stages], x=[s["value"] or 0 for s in stages], orientation="h",
        text=[s["text"] for s in stages], textposition="outside", cliponaxis=False,
        marker={"color": colors[: len(stages)]}, hovertext=[f"{s['label']}: {s['text']}" for s in stages],
        hoverinfo="text",
    ))
    top = max([s["value"] or 0 for s in stages] + [1])
    base_layout(fig, 300)
    fig.update_layout(yaxis={"autorange": "reversed", "automargin": True},
                      xaxis={"title": "episodes", "range": [0, top * 1.25], "automargin": True}, showlegend=False)
    return fig


def severity_figure(points: list[dict[str, Any]], references: list[dict[str, Any]], small: str,
                    empty_message: str) -> go.Figure:
    """Testing rate by severity, with the published testing rates as lines named in the legend."""
    shown = [p for p in points if p["rate"] is not None]
    fig = go.Figure(go.Bar(
        x=[p["label"] for p in shown], y=[p["rate"] for p in shown], name="observed",
        marker={"color": OKABE_ITO["blue"], "pattern": {"shape": "/"}},
        error_y={"type": "data", "symmetric": False, "array": [p["ci_high"] - p["rate"] for p in shown],
                 "arrayminus": [p["rate"] - p["ci_low"] for p in shown]},
        text=[p["text"] for p in shown], textposition="outside", hovertext=[p["hover"] for p in shown],
        hoverinfo="text",
    ))
    hidden = [p for p in points if p["rate"] is None]
    withheld_marks(fig, [p["label"] for p in hidden], [0] * len(hidden), [p["hover"] for p in hidden], small)
    for ref, dash in zip(references, LINE_DASHES):
        fig.add_hline(y=ref["rate"], line={"color": OKABE_ITO["vermillion"], "dash": dash},
                      showlegend=True, name=ref["label"])
    base_layout(fig, 420)
    fig.update_layout(xaxis={"type": "category", "categoryorder": "array", "automargin": True,
                             "categoryarray": [p["label"] for p in points], "range": [-0.5, len(points) - 0.5]},
                      yaxis={"title": "episodes with Mg checked", "range": [0, 1.1], "tickformat": ".0%"},
                      legend=BOTTOM_LEGEND)
    if not shown:
        fig.add_annotation(text=empty_message, xref="paper", yref="paper", x=0.5, y=0.4, showarrow=False,
                           bgcolor="rgba(255,255,255,0.85)",
                           font={"size": 13, "color": OKABE_ITO["grey"]})
    return fig


def exposure_figure(points: list[dict[str, Any]], small: str, empty_message: str) -> go.Figure:
    shown = [p for p in points if p["exposed"] is not None]
    classes = [p["label"] for p in shown]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=classes, y=[p["exposed"] for p in shown], name="exposed",
                         hovertext=[p["hover_exposed"] for p in shown], hoverinfo="text",
                         marker={"color": OKABE_ITO["vermillion"], "pattern": {"shape": "x"}}))
    fig.add_trace(go.Bar(x=classes, y=[p["unexposed"] for p in shown], name="not exposed",
                         hovertext=[p["hover_unexposed"] for p in shown], hoverinfo="text",
                         marker={"color": OKABE_ITO["blue"], "pattern": {"shape": ""}}))
    hidden = [p for p in points if p["exposed"] is None and p["marker"] == small]
    withheld_marks(fig, [p["label"] for p in hidden], [0] * len(hidden), [p["hover_exposed"] for p in hidden], small)
    base_layout(fig, 420)
    fig.update_layout(barmode="group", xaxis={"automargin": True, "categoryorder": "array",
                                              "categoryarray": [p["label"] for p in points]},
                      yaxis={"title": "Mg results below threshold", "tickformat": ".0%", "rangemode": "tozero"},
                      legend=BOTTOM_LEGEND)
    if not shown:
        say_empty(fig, empty_message)
    return fig


def history_figure(runs: list[str], series: dict[str, list[float | None]]) -> go.Figure:
    """The headline rates across published runs."""
    symbols = ["circle", "square", "diamond", "triangle-up", "x"]
    fig = go.Figure()
    for i, (name, values) in enumerate(series.items()):
        fig.add_trace(go.Scatter(x=runs, y=values, name=name, mode="lines+markers",
                                 marker={"symbol": symbols[i % len(symbols)], "size": 8}))
    base_layout(fig, 420)
    fig.update_layout(xaxis={"title": "run", "type": "category", "automargin": True},
                      yaxis={"title": "rate", "tickformat": ".0%", "range": [0, 1]}, legend=BOTTOM_LEGEND)
    return fig


def spc_figure(spc: dict[str, Any], small: str) -> go.Figure:
    """The control chart: rate per period, centre line, per-period limits as steps, signals marked."""
    points = spc["points"]
    labels = [p["label"] for p in points]
    fig = go.Figure()
    limited = [p for p in points if p["ucl"] is not None]
    for key, name in (("ucl", "upper limit (3 sigma)"), ("lcl", "lower limit")):
        fig.add_trace(go.Scatter(x=[p["label"] for p in limited], y=[p[key] for p in limited], mode="lines",
                                 line={"color": OKABE_ITO["grey"], "dash": "dash", "width": 1, "shape": "hvh"},
                                 name=name, hoverinfo="skip", showlegend=key == "ucl"))
    centred = [p for p in points if p["centre"] is not None]
    if centred:
        fig.add_trace(go.Scatter(x=[p["label"] for p in centred], y=[p["centre"] for p in centred], mode="lines",
                                 line={"color": OKABE_ITO["green"], "width": 2}, name="centre", hoverinfo="skip"))
    shown = [p for p in points if p["rate"] is not None]
    fig.add_trace(go.Scatter(x=[p["label"] for p in shown], y=[p["rate"] for p in shown], mode="lines+markers",
                             name="Mg checked", line={"color": OKABE_ITO["blue"], "width": 2},
                             marker={"symbol": "circle", "size": 8}, hovertext=[p["hover"] for p in shown],
                             hoverinfo="text"))
    flagged = [p for p in shown if p["signal"]]
    if flagged:
        fig.add_trace(go.Scatter(x=[p["label"] for p in flagged], y=[p["rate"] for p in flagged], mode="markers",
                                 name="special cause", hovertext=[p["hover"] for p in flagged], hoverinfo="text",
                                 marker={"symbol": "diamond-open", "size": 14, "color": OKABE_ITO["vermillion"],
                                         "line": {"width": 2}}))
    hidden = [p for p in points if p["withheld"]]
    withheld_marks(fig, [p["label"] for p in hidden], [0] * len(hidden), [p["hover"] for p in hidden], small)
    base_layout(fig, 400)
    fig.update_layout(xaxis={"type": "category", "categoryorder": "array", "categoryarray": labels,
                             "automargin": True},
                      yaxis={"title": "episodes with Mg checked", "range": [0, 1.05], "tickformat": ".0%"},
                      legend=BOTTOM_LEGEND)
    if spc["empty"]:
        say_empty(fig, spc["empty"])
    return fig


def unit_funnel_figure(funnel: dict[str, Any], small: str) -> go.Figure:
    """Care units' Mg-check rate against their episodes, with 95% and 99.8% limits around the overall rate."""
    fig = go.Figure()
    curve = funnel["curve"]
    x = [c["episodes"] for c in curve]
    for level, dash, name in (("99_8", "dot", "99.8% limits"), ("95", "dash", "95% limits")):
        for side in ("upper", "lower"):
            fig.add_trace(go.Scatter(x=x, y=[c[f"{side}_{level}"] for c in curve], mode="lines", name=name,
                                     line={"color": OKABE_ITO["grey"], "dash": dash, "width": 1, "shape": "hv"},
                                     hoverinfo="skip", showlegend=side == "upper"))
    if funnel["centre"] is not None and x:
        fig.add_trace(go.Scatter(x=[x[0], x[-1]], y=[funnel["centre"]] * 2, mode="lines", name="overall rate",
                                 line={"color": OKABE_ITO["green"], "width": 2}, hoverinfo="skip"))
    points = funnel["points"]
    fig.add_trace(go.Scatter(x=[p["n"] for p in points], y=[p["rate"] for p in points], mode="markers",
                             name="care unit", hovertext=[p["hover"] for p in points], hoverinfo="text",
                             marker={"size": 10, "color": [OKABE_ITO["vermillion"] if p["outside"] else
                                                           OKABE_ITO["blue"] for p in points],
                                     "symbol": ["diamond" if p["outside"] else "circle" for p in points]}))
    base_layout(fig, 420)
    fig.update_layout(xaxis={"title": "episodes in the unit", "type": "log", "automargin": True},
                      yaxis={"title": "episodes with Mg checked", "range": [0, 1.05], "tickformat": ".0%"},
                      legend=BOTTOM_LEGEND)
    if funnel["empty"]:
        say_empty(fig, funnel["empty"])
    elif not points:
        fig.add_annotation(text=f"every unit is withheld ({small})", xref="paper", yref="paper", x=0.5, y=0.5,
                           showarrow=False, font={"size": 13, "color": OKABE_ITO["grey"]})
    return fig


def audit_charts(add: Any, view: dict[str, Any]) -> dict[str, Any]:
    """The audit's control chart and funnel plot, added through `add` (build.Charts.add); none when
    the results carry no audit charts."""
    audit, small, t = view["audit_charts"], view["fmt"]["small"], view["t"]
    if not audit.get("present"):
        return {}
    spc = audit["spc"]
    return {
        "audit_spc": add(spc_figure(spc, small), "chart-audit-spc",
                         f"Control chart ({spc['name']}) of Mg checked within {t['mg_check']} of an episode's start, "
                         f"by {spc['period']}" if spc["period"] else
                         f"Control chart of Mg checked within {t['mg_check']} of an episode's start",
                         f"Rate per {spc['period'] or 'period'} with its centre line and 3-sigma limits, which "
                         f"narrow as a period's episodes grow; {spc['baseline']}; diamonds: special causes; "
                         f"{small}: period withheld."),
        "audit_unit_funnel": add(unit_funnel_figure(audit["funnel"], small), "chart-audit-unit-funnel",
                                 "Care units against the overall rate (funnel plot)",
                                 "Each unit's Mg-check rate against its episodes (log scale); dashed: 95%, dotted: "
                                 "99.8% limits around the overall rate (exact binomial); a unit outside them "
                                 f"differs by more than chance. Withheld units ({small}) are not drawn."),
    }


def sweep_figure(series: list[dict[str, Any]], small: str) -> go.Figure:
    """The sensitivity sweep at the run's thresholds: prevalence against the window, one line per
    abnormality and direction; a withheld cell is a gap in its line."""
    fig = base_layout(go.Figure(), 420)
    colours = list(OKABE_ITO.values())
    for i, s in enumerate(series):
        fig.add_trace(go.Scatter(x=s["x"], y=s["y"], mode="lines+markers", name=s["name"],
                                 line={"color": colours[i % len(colours)],
                                       "dash": "solid" if "among low Mg" in s["name"] else "dash"},
                                 hovertemplate="±%{x} h: %{y:.1%}<extra>" + s["name"] + "</extra>"))
    fig.update_layout(xaxis={"title": "window, ± hours", "type": "log"}, yaxis={"title": "prevalence",
                      "tickformat": ".0%", "rangemode": "tozero"}, legend=BOTTOM_LEGEND)
    if not any(v is not None for s in series for v in s["y"]):
        return say_empty(fig, f"every cell is withheld ({small})")
    return fig


def epi_charts(add: Any, view: dict[str, Any]) -> dict[str, Any]:
    """The sweep chart (reports/epi.html), added through `add`; none without a sweep."""
    sweep = (view.get("epi") or {}).get("sweep") or {}
    if not sweep.get("present"):
        return {}
    small = view["fmt"]["small"]
    return {"sweep": add(sweep_figure(sweep["series"], small), "chart-sweep",
                         "Sensitivity sweep: prevalence by window at the run's thresholds (result level)",
                         "Each line: one abnormality and direction (solid: abnormality among low Mg; dashed: low "
                         f"Mg among the abnormality), recomputed for each ± window; gaps: withheld ({small}). "
                         "Look for lines that climb steeply: the figure depends on the window.")}
