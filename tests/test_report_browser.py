"""The report in a real headless browser (Debian's chromium driven by Playwright): it opens from
disk with no console errors and no network request, every chart is drawn with data, the summary
equals results.json, printing keeps every section, a phone (390 px) never scrolls sideways and no
chart label is cut at 390 or 1366 px, and a full-page screenshot is kept for CI."""
from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a headless browser on the demo run of `hypomag demo`
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHARTS = ["chart-forest", "chart-sensitivity", "chart-mg-distribution", "chart-audit-trend", "chart-audit-funnel",
          "chart-audit-severity", "chart-exposures"]
# Every visible SVG text of a chart (ticks, legend, annotations, cell text) lies inside its chart's box.
OVERFLOWING_TEXT = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap(div => {
  const box = div.getBoundingClientRect();
  return Array.from(div.querySelectorAll('svg text'))
    .filter(t => t.textContent.trim() && t.getClientRects().length)
    .map(t => { const r = t.getBoundingClientRect();
      return {chart: div.id, text: t.textContent, left: r.left - box.left, right: box.right - r.right,
              top: r.top - box.top, bottom: box.bottom - r.bottom}; })
    .filter(o => Math.min(o.left, o.right, o.top, o.bottom) < -1);
})"""
SECTIONS = ["summary", "cooccurrence", "sensitivity", "distribution", "audit", "exposures", "attrition",
            "data-quality", "methods", "provenance"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install -y chromium); .ci/run does"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def opened(browser, demo_run):
    out, _ = demo_run
    report = out / "demo" / "report.html"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.as_uri(), wait_until="load")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 7")
    results = json.loads((out / "demo" / "results.json").read_text())
    yield page, errors, requests, results, report
    page.close()


@pytest.fixture(scope="module", params=[390, 1366], ids=["phone-390", "laptop-1366"])
def sized(request, browser, demo_run):
    """The report at a phone's and a laptop's width, charts drawn."""
    out, _ = demo_run
    page = browser.new_page(viewport={"width": request.param, "height": 844})
    page.goto((out / "demo" / "report.html").as_uri(), wait_until="load")
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= {len(CHARTS)}")
    yield page, request.param
    page.close()


def test_no_sideways_page_scroll(sized):
    page, width = sized
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.evaluate("Array.from(document.querySelectorAll('table')).every(t => t.parentElement.matches('.table-wrap'))")


def test_no_chart_label_is_cut(sized):
    page, width = sized
    assert page.evaluate(OVERFLOWING_TEXT) == [], f"at {width} px"


def test_no_console_errors_and_no_network_requests(opened):
    page, errors, requests, _, report = opened
    assert errors == []
    assert [u for u in requests if not (u == report.as_uri() or u.startswith(("data:", "blob:")))] == []


def test_every_chart_is_drawn_with_data(opened):
    page, *_ = opened
    drawn = page.evaluate("Object.fromEntries(Array.from(document.querySelectorAll('.js-plotly-plot'))"
                          ".map(d => [d.id, d.data.length]))")
    assert set(CHARTS) <= set(drawn) and all(drawn[c] >= 1 for c in CHARTS)
    svg_marks = page.evaluate("document.querySelectorAll('#chart-forest .point').length")
    assert svg_marks > 0


def test_summary_numbers_equal_results_json(opened):
    page, _, _, results, _ = opened
    for row in results["cooccurrence"]:
        if row["direction"] == "hypomg_given_abnormality" and row["window"] == "24h" and row["level"] == "result":
            shown = page.get_attribute(f".card[data-abnormality='{row['abnormality']}'] .v", "data-value")
            assert shown == ("" if row["prevalence"] is None else str(row["prevalence"]))
            text = page.inner_text(f".card[data-abnormality='{row['abnormality']}'] .v")
            if row["suppressed"]:
                assert text == "<11"
            else:
                assert text.startswith(f"{100 * row['prevalence']:.1f}%")
    rate = results["audit"]["overall"]["rate"]
    assert page.get_attribute(".card[data-measure='mg_check_rate'] .v", "data-value") == ("" if rate is None else str(rate))
    assert f"{results['counts']['patients']:,} patients" in page.inner_text("#summary")


def test_no_patient_identifiers_in_the_page(opened):
    from plotly.offline import get_plotlyjs

    page, *_, report = opened
    # everything in the file but the plotly.js library itself (whose minified names look like "P2")
    from pipelines.seeds import read_seed

    text = report.read_text().replace(get_plotlyjs(), "")
    assert len(text) < 1_000_000
    for row in read_seed("testing_rate_references"):  # "Endocrine Abstracts 2021;77:P193" is no patient
        text = text.replace(html.escape(row["citation"]), "")
    ids = {line.split(",")[0] for line in (Path(__file__).resolve().parent.parent / "data_samples" / "labs.csv")
           .read_text().splitlines()[1:]} - {"", '""'}
    assert not [p for p in ids if re.search(rf"\b{re.escape(p)}\b", text)]


def test_print_keeps_every_section_and_screenshot_for_ci(opened):
    page, *_ = opened
    for section in SECTIONS:
        assert page.is_visible(f"section#{section}"), section
    page.emulate_media(media="print")
    pdf = page.pdf(format="A4", print_background=True)
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert pages >= len(SECTIONS)  # every section starts on a new page
    page.emulate_media(media="screen")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.screenshot(path=str(ARTIFACTS / "report-first-screen.png"))
    assert (ARTIFACTS / "report.png").stat().st_size > 50_000


def test_report_stays_small_with_100_months_of_history(demo_run, tmp_path):
    """Aggregates only: 100 months of audit history add rows, not megabytes."""
    from pipelines.reports.build import write_report

    out, _ = demo_run
    results = json.loads((out / "demo" / "results.json").read_text())
    manifest = json.loads((out / "demo" / "manifest.json").read_text())
    validation = json.loads((out / "demo" / "validation.json").read_text())
    results["audit"]["by_month"] = [
        {"month": f"{2018 + m // 12}-{m % 12 + 1:02d}", "episodes": 200 + m, "mg_checked": 120 + m, "rate": 0.6,
         "ci_low": 0.55, "ci_high": 0.65, "suppressed": False} for m in range(100)]
    path = tmp_path / "report.html"
    write_report(path, results, manifest, validation)
    page = path.read_text()
    assert path.stat().st_size < 10_000_000
    assert page.count("2026-04") >= 1 and page.count("plotly.js v") == 1
