"""Build report.html and the history page: one self-contained file each (plotly.js embedded once).

The page is the view model (reports/view.py: plain data from results.json, manifest.json and
validation.json) rendered by Jinja2 templates with autoescaping (reports/base.html, shared by
template.html and history.html), with the charts of reports/figures.py. No row-level data
reaches this module, and every number in the page can be quoted from results.json.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from pipelines.reports import figures
from pipelines.reports.view import history_view, report_view

TEMPLATES = Path(__file__).parent


def environment() -> Environment:
    """Jinja2 with HTML autoescaping: every value from the data is escaped unless marked safe here."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      extensions=["jinja2.ext.do"])
    env.globals["palette"] = figures.OKABE_ITO
    return env


class Charts:
    """Figures are drawn after the page's text: plotly.js (about 4.9 MB) and one JSON block of
    figures are placed at the end of the body, so the text paints before the charts load."""

    def __init__(self) -> None:
        self.figures: dict[str, str] = {}

    def add(self, fig: go.Figure, div_id: str, title: str, caption: str) -> dict[str, Any]:
        self.figures[div_id] = fig.to_json()
        return {"id": div_id, "title": title, "caption": caption, "height": fig.layout.height or 450}

    def script(self) -> Markup:
        """The figures as one inline script (`</` escaped so no data can close the script element)."""
        body = ",".join(f"{json.dumps(k)}:{v}" for k, v in self.figures.items()).replace("</", "<\\/")
        return Markup(
            "<script type='text/javascript'>(function(){var figs={" + body + "};"
            "var config={displaylogo:false,responsive:true};"
            "Object.keys(figs).forEach(function(id){var f=figs[id];"
            "Plotly.newPlot(id,f.data,f.layout,config);});})();</script>"
        )


def render(template: str, collection: Charts, **context: Any) -> str:
    """One page of the shared base template, with plotly.js and the figures embedded."""
    script = Markup(get_plotlyjs().replace("</script", "<\\/script"))
    return environment().get_template(template).render(plotlyjs=script, chart_script=collection.script(), **context)


def report_charts(view: dict[str, Any]) -> dict[str, Any]:
    """Every chart of the report, with its HTML title and caption, built from the view model."""
    t, small, charts = view["t"], view["fmt"]["small"], Charts()
    audit, method = view["audit"], view["epi"].get("method_short", "Wilson")
    out = {
        "forest": charts.add(figures.forest_figure(view["forest"], small, method), "chart-forest",
                             "Observed prevalence vs published figures (result level)",
                             f"Dots: observed prevalence with its {method} 95% "
                             "interval; hollow markers: the published "
                             f"figures that measured the same direction; {small}: withheld. Look for references "
                             "outside the interval."),
        "sensitivity": [charts.add(figures.sensitivity_figure(g, f"every cell is withheld ({small})"),
                                   "chart-sensitivity" if i == 0 else f"chart-sensitivity-{g['direction']}",
                                   f"Sensitivity grid: {g['label']}, by window and Mg threshold",
                                   f"Each cell: {g['label']} with the column's Mg threshold (mg/dL) and window; "
                                   f"{small}: withheld. Look for rows whose shade changes with the threshold.")
                        for i, g in enumerate(view["sensitivity"])],
        "distribution": charts.add(figures.distribution_figure(view["distribution"], small,
                                                               f"every bin is withheld ({small})"),
                                   "chart-mg-distribution", "Magnesium results (canonical units)",
                                   "Magnesium results by value; dashed line: the hypomagnesemia threshold, dotted: "
                                   f"upper normal; crosses: bins withheld ({small})."),
        "audit_trend": charts.add(figures.audit_trend_figure(
            audit["months"], small, f"Every month is withheld ({small} episodes or checks):<br>"
                                    "see the overall rate in the summary", method),
            "chart-audit-trend", f"Magnesium checked within {t['mg_check']} of a hypokalemia episode's start, by month",
            f"Share of hypokalemia episodes with magnesium measured within {t['mg_check']} of the start, per month, "
            f"with its 95% band; {small}: month withheld. Look for months below the rest."),
        "funnel": charts.add(figures.funnel_figure(audit["funnel"]), "chart-audit-funnel",
                             "From hypokalemia episode to magnesium repletion (episodes)",
                             "How many episodes reach each step; repletion is counted among low-Mg episodes; "
                             f"{small}: withheld."),
        "severity": charts.add(figures.severity_figure(
            audit["severities"], audit["testing_refs"], small, f"every severity is withheld ({small})"),
            "chart-audit-severity", "Mg checked by episode severity (lowest K), with published testing rates",
            f"Testing rate by severity (severe K < {t['severe']}, moderate < {t['moderate']}, mild < {t['hypokalemia']} "
            f"mmol/L), with published testing rates as horizontal lines (populations differ: see the table); "
            f"{small}: withheld."),
        "exposures": charts.add(figures.exposure_figure(view["exposures"]["points"], small,
                                                        view["exposures"]["empty_message"]),
                                "chart-exposures", "Hypomagnesemia among Mg results, exposed vs not, per drug class",
                                "Share of magnesium results below the threshold while an order of the class was "
                                f"active vs not; {small}: class withheld."),
    }
    out.update(figures.audit_charts(charts.add, view))  # control chart and funnel plot (reports/audit.html)
    out.update(figures.epi_charts(charts.add, view))  # the sensitivity sweep (reports/epi.html)
    return {"charts": out, "chart_collection": charts}


def write_report(path: Path, results: dict[str, Any], manifest: dict[str, Any], validation: dict[str, Any]) -> None:
    """report.html from the three documents of a run."""
    view = report_view(results, manifest, validation)
    built = report_charts(view)
    page = render("template.html", built["chart_collection"], v=view, charts=built["charts"],
                  page_title="hypomag report")
    path.write_text(page, encoding="utf-8")


def history_page(runs: list[tuple[str, dict[str, Any]]], manifests: dict[str, dict[str, Any]] | None = None,
                 failed: list[dict[str, Any]] | None = None, plotly_src: str | None = None) -> str:
    """The history page (index.html) of published runs, oldest first in `runs`, with the failed runs'
    records (pipelines/history.py) and each run's manifest (rejected files, new data).

    `plotly_src`: the page loads plotly.js from that file beside it (written once per folder of
    reports) instead of embedding it; without it the page is self-contained like a report.
    """
    view, charts = history_view(runs, manifests or {}, failed or []), Charts()
    trend = charts.add(figures.history_figure(view["runs"], view["series"]), "history-trend",
                       "Headline rates across published runs",
                       "Flagged: a headline rate outside the previous run's 95% interval.")
    return render("history.html", charts, v=view, trend=trend, page_title="hypomag runs", plotly_src=plotly_src)
