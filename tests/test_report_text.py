"""The report states what the run did: a run with non-default windows, thresholds and minimum cell
size is rendered and its TEXT (tags stripped) is scanned for those values and for the defaults they
replaced; a data set small enough that every kind of cell is withheld shows "<N" everywhere and no
"n/a", "()" or "(p=)" fragments; the history page shares the templates. No browser needed."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from builder import lab, make_db
from pipelines.analyse import build_results
from pipelines.config import Audit, Config, Privacy, Thresholds, Windows
from pipelines.reports.build import history_page, report_charts, write_report
from pipelines.reports.view import report_view

# Every hour setting differs from 24, so no "24 h" can be a legitimate default left in the page.
NON_DEFAULT = Config(
    windows=Windows(same_draw_hours=2.0, cooccurrence_hours=48.0),
    audit=Audit(episode_gap_hours=60.0, mg_check_hours=12.0, refractory_after_hours=36.0, exposure_default_hours=6.0),
    thresholds=replace(Thresholds(), hypokalemia_mmol_l=3.4),
    privacy=Privacy(min_cell_size=5),
)
MANIFEST = {"source": "generic", "inputs": [], "versions": {"hypomag": "test"},
            "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:01:00+00:00"}
VALIDATION = {"suites": []}
FRAGMENTS = ("n/a", "(p=)", "None", "nan%")


class Text(HTMLParser):
    """The page as a reader sees it: text outside <script>/<style>, and each table's cells."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.tables: list[list[list[str]]] = []
        self._skip = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "br":
            self.parts.append(" ")
            if self._cell is not None:
                self._cell.append(" ")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag in ("p", "div", "li", "td", "th", "h1", "h2", "h3", "figcaption", "summary"):
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)
            if self._cell is not None:
                self._cell.append(data)

    @property
    def text(self) -> str:
        return "".join(self.parts)


def rendered(path: Path) -> Text:
    parser = Text()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def strings(value) -> str:
    """Every string of a decoded figure (Plotly's JSON escapes "<" as \\u003c), joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(strings(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(strings(v) for v in value)
    return ""


def figure_text(built: dict, name: str | None = None) -> str:
    figures = built["chart_collection"].figures
    return " ".join(strings(json.loads(f)) for n, f in figures.items() if name in (None, n))


def when(day: int, hours: float = 0.0) -> str:
    return (datetime(2024, 1, 1) + timedelta(days=day, hours=hours)).strftime("%Y-%m-%d %H:%M:%S")


def cohort(patients: int) -> list[dict]:
    """Each patient: K (every other one low), Mg an hour later (every third low), Na, phosphate,
    calcium and albumin of the same draw, spread over a few months."""
    rows = []
    for i in range(patients):
        p, day = f"p{i:03d}", (i * 11) % 120
        rows += [lab(p, when(day), "K", "3.1" if i % 2 else "4.2", "mmol/L"),
                 lab(p, when(day, 1), "MG", "1.4" if i % 3 == 0 else "2.0", "mg/dL"),
                 lab(p, when(day), "NA", "131" if i % 4 == 0 else "140", "mmol/L"),
                 lab(p, when(day), "PHOS", "2.1" if i % 5 == 0 else "3.5", "mg/dL"),
                 lab(p, when(day), "CA", "8.1" if i % 2 == 0 else "9.2", "mg/dL"),
                 lab(p, when(day), "ALB", "3.1", "g/dL")]
    return rows


def render(tmp_path: Path, config: Config, patients: int) -> tuple[dict, Path]:
    results = json.loads(json.dumps(build_results(make_db(tmp_path, labs=cohort(patients), config=config), config)))
    path = tmp_path / "report.html"
    write_report(path, results, {**MANIFEST, "parameters": results["parameters"]}, VALIDATION)
    return results, path


@pytest.fixture(scope="module")
def non_default(tmp_path_factory):
    return render(tmp_path_factory.mktemp("non-default"), NON_DEFAULT, patients=60)


@pytest.fixture(scope="module")
def all_small(tmp_path_factory):
    return render(tmp_path_factory.mktemp("all-small"), Config(), patients=6)


def test_non_default_run_states_its_own_windows_and_thresholds(non_default):
    _, path = non_default
    text = " ".join(rendered(path).text.split())
    for stated in ("±48 h", "±2 h", "±12 h", "36 h later", "≤ 60 h apart", "for 6 h after its start",
                   "K < 3.4 mmol/L", "mild 3 to < 3.4 mmol/L", "<5", "Cells of 1–4 are suppressed"):
        assert stated in text, stated
    for default in ("24 h", "±24", "24h", "3.5 mmol/L", "<11", "1–10"):
        assert default not in text, default


def test_non_default_charts_state_the_same_values(non_default):
    results, _ = non_default
    view = report_view(results, MANIFEST, VALIDATION)
    built = report_charts(view)
    figures = figure_text(built)
    titles = " ".join(c["title"] + " " + c["caption"] for c in built["charts"].values() if isinstance(c, dict))
    assert "±12 h" in titles and "±24" not in titles and "±24" not in figures
    assert "±48 h" in figures and "24h" not in figures and "<11" not in figures


def test_every_withheld_cell_shows_the_marker_and_no_fragment(all_small):
    results, path = all_small
    page = rendered(path)
    text = page.text
    for fragment in FRAGMENTS:
        assert fragment not in text, fragment
    assert not re.search(r"\(\s*\)", text)
    assert results["audit"]["overall"]["suppressed"] and "Mg checked in hypokalemia\n<11" in text
    cooc_table = next(t for t in page.tables if t[0][:4] == ["abnormality", "direction", "window", "level"])
    rows = sorted(results["cooccurrence"], key=lambda r: (r["direction"], r["abnormality"]))
    suppressed = [r for r in rows if r["suppressed"]]
    assert suppressed
    shown_small = [c for c in cooc_table[1:] if c[4] == c[5] == c[6] == "<11"]
    assert len(shown_small) == len(suppressed)
    for table in page.tables:
        for row in table[1:]:
            assert all(cell not in ("n/a", "()", "None") for cell in row), row


def test_withheld_chart_points_and_steps_show_the_marker(all_small):
    results, _ = all_small
    view = report_view(results, MANIFEST, VALIDATION)
    funnel = view["audit"]["funnel"]
    assert all(step["text"] == "<11" for step in funnel if step["value"] is None)
    assert any(step["value"] is None for step in funnel)
    built = report_charts(view)
    trend = json.loads(built["chart_collection"].figures["chart-audit-trend"])
    assert any("Every month is withheld (<11" in a["text"] for a in trend["layout"]["annotations"])
    for name in ("chart-forest", "chart-audit-severity", "chart-audit-funnel", "chart-sensitivity"):
        assert "<11" in figure_text(built, name), name
    assert not any(f in figure_text(built) for f in FRAGMENTS)


def test_summary_cards_never_say_n_a(all_small):
    results, _ = all_small
    cards = report_view(results, MANIFEST, VALIDATION)["cards"]
    assert all("n/a" not in c["detail"] and "n/a" not in c["value"] for c in cards)
    headline = [c for c in cards if "data-abnormality" in c["attrs"]]
    assert headline and all(c["detail"].endswith("Mg tested in <11") for c in headline if c["value"] == "<11")


def test_values_from_the_data_are_escaped(non_default, tmp_path):
    results, _ = non_default
    results = json.loads(json.dumps(results))
    results["quarantine_reasons"] = [{"input_table": "labs", "reason": "<script>alert(1)</script>", "rows": 12,
                                      "suppressed": False}]
    path = tmp_path / "report.html"
    write_report(path, results, MANIFEST, VALIDATION)
    page = path.read_text(encoding="utf-8")
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def test_history_page_uses_the_report_styles_and_one_plotly(non_default):
    results, _ = non_default
    page = history_page([("2026-01-01", results), ("2026-01-02", {**results, "history_flags": [
        {"measure": "low Mg among hypokalemia", "rate": 0.5, "previous_ci_low": 0.1, "previous_ci_high": 0.2}]})])
    assert page.count("plotly.js v") == 1 and "Content-Security-Policy" in page and ".table-wrap" in page
    assert "2026-01-02/report.html" in page and "outside 10.0&ndash;20.0%" in page



def test_charts_name_the_configured_interval_method(tmp_path):
    from pipelines.config import Statistics

    config = Config(privacy=Privacy(min_cell_size=0), statistics=Statistics("clopper-pearson"))
    results = json.loads(json.dumps(build_results(make_db(tmp_path, labs=cohort(30), config=config), config)))
    built = report_charts(report_view(results, {**MANIFEST, "parameters": results["parameters"]}, VALIDATION))
    assert "observed (Clopper-Pearson 95% CI)" in figure_text(built, "chart-forest")
    assert "Wilson" not in figure_text(built, "chart-forest")
    assert "Clopper-Pearson 95%" in built["charts"]["forest"]["caption"]
