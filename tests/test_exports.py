"""results.csv and results.parquet repeat results.json row for row, suppression included; the
sensitivity grid of both directions on a case counted by hand; manifest.json's provenance. Every
expected number was worked out by hand from the rows of the test."""
from __future__ import annotations

import copy
import csv
import hashlib
import shlex
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from builder import lab, make_db
from pipelines.analyse import build_results
from pipelines.config import Config, Privacy
from pipelines.exports import COLUMNS, sensitivity_stratum, tidy_rows, write_exports
from pipelines.paths import PROJECT_ROOT, SQL_DIR
from pipelines.run_spec import RunSpec
from pipelines.stats import wilson_interval
from pipelines.steps import Run, command_line, git_commit, manifest, sql_sha256
from pipelines.suppression import leaks, suppress

NUMBERS = ("window_hours", "estimate", "ci_low", "ci_high", "reference_value", "p_value")
COUNTS = ("numerator", "denominator")


def ward(with_mg: int, low_mg: int, untested: int) -> list[dict]:
    """Low potassium for every patient; magnesium in the same tube for `with_mg` of them, low for `low_mg`."""
    rows = []
    for i in range(with_mg):
        p = f"mg_{i}"
        rows += [lab(p, "2024-03-01 08:00", "K", "3.0", "mmol/L", specimen_id=f"s{i}"),
                 lab(p, "2024-03-01 08:00", "MG", "1.5" if i < low_mg else "2.0", "mg/dL", specimen_id=f"s{i}")]
    rows += [lab(f"untested_{i}", "2024-03-01 08:00", "K", "3.0", "mmol/L") for i in range(untested)]
    return rows


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A default run (min_cell_size 11) with shown and suppressed cells, and its two exports."""
    folder = tmp_path_factory.mktemp("exports")
    config = Config()
    results = build_results(make_db(folder, labs=ward(30, 12, 5), config=config), config)
    paths = write_exports(results, folder)
    with open(folder / "results.csv", newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f))
    return results, paths, lines


def parsed(line: list[str]) -> dict:
    """A csv line back into typed values: empty is null, true/false booleans, numbers as numbers."""
    row = dict(zip(COLUMNS, line))
    out = {}
    for key, text in row.items():
        if text == "":
            out[key] = None
        elif key == "suppressed":
            out[key] = {"true": True, "false": False}[text]
        elif key in COUNTS:
            out[key] = int(text)
        elif key in NUMBERS:
            out[key] = float(text)
        else:
            out[key] = text
    return out


def expected_rows(results: dict) -> list[dict]:
    """What results.json says, section by section, written out here without pipelines.exports."""
    out = []

    def add(section, **values):
        out.append({c: values.get(c) for c in COLUMNS} | {"section": section,
                                                          "suppressed": bool(values.get("suppressed"))})

    for r in results["cooccurrence"]:
        base = {k: r[k] for k in ("abnormality", "direction", "window", "window_hours", "level", "numerator",
                                  "denominator", "ci_low", "ci_high", "suppressed")} | {"estimate": r["prevalence"]}
        for ref in r["references"] or [{"set": None, "value": None, "p_value": None}]:
            add("cooccurrence", **base, reference_set=ref["set"], reference_value=ref["value"], p_value=ref["p_value"])
    for r in results["cooccurrence"]:
        if r["direction"] == "hypomg_given_abnormality":
            add("mg_tested", **{k: r[k] for k in ("abnormality", "direction", "window", "window_hours", "level")},
                estimate=r["mg_tested_fraction"], suppressed=r["mg_tested_suppressed"])
    for r in results["prevalence_ratios"]:
        add("prevalence_ratio", **{k: r[k] for k in ("abnormality", "window", "window_hours", "level", "ci_low",
                                                     "ci_high", "suppressed")},
            direction="abnormality_given_hypomg_vs_normomg", estimate=r["ratio"])
    for r in results["sensitivity"]:
        add("sensitivity", **{k: r[k] for k in ("abnormality", "direction", "window", "window_hours", "numerator",
                                                "denominator", "ci_low", "ci_high", "suppressed")},
            level="result", stratum=sensitivity_stratum(r), estimate=r["prevalence"])
    return out


def test_the_csv_has_the_documented_columns(exported):
    _, paths, lines = exported
    assert [p.name for p in paths] == ["results.csv", "results.parquet", "table_one.csv"]
    assert tuple(lines[0]) == COLUMNS == (
        "section", "abnormality", "direction", "window", "window_hours", "level", "stratum", "numerator",
        "denominator", "estimate", "ci_low", "ci_high", "reference_set", "reference_value", "p_value", "suppressed")


def test_csv_equals_results_json_row_for_row_with_its_suppression(exported):
    results, _, lines = exported
    rows = [parsed(line) for line in lines[1:]]
    expected = expected_rows(results)
    assert rows[:len(expected)] == expected
    # the rest: audit and exposures, in results.json's order (the audit charts' sections follow them)
    assert [r["section"] for r in rows[len(expected):] if r["section"] in ("audit", "exposure")] == (
        ["audit"] * (3 + sum(len(results["audit"][k]) for k in ("by_month", "by_severity", "by_care_unit")))
        + ["exposure"] * 2 * len(results["exposures"]))
    # the cooccurrence row of the hand-made ward: 12/30 shown, with both reference sets of its direction
    shown = [r for r in rows if r["section"] == "cooccurrence" and r["abnormality"] == "hypokalemia"
             and r["direction"] == "hypomg_given_abnormality" and r["window"] == "same_draw" and r["level"] == "result"]
    assert [(r["numerator"], r["denominator"], r["reference_set"]) for r in shown] == [
        (12, 30, "article"), (12, 30, "whang_1984")]
    # its mg_tested_fraction is withheld (35 - 30 = 5 untested), and says so
    tested = next(r for r in rows if r["section"] == "mg_tested" and r["abnormality"] == "hypokalemia"
                  and r["window"] == "same_draw" and r["level"] == "result")
    assert (tested["estimate"], tested["suppressed"]) == (None, True)
    # a suppressed row: null counts, estimate and interval, suppressed true
    hidden = [r for r in rows if r["suppressed"] and r["section"] != "mg_tested"]
    assert hidden and all(r[k] is None for r in hidden for k in (*COUNTS, "estimate", "ci_low", "ci_high", "p_value"))


def test_parquet_equals_csv(exported):
    _, paths, lines = exported
    table = pq.read_table(paths[1])
    assert tuple(table.column_names) == COLUMNS
    assert [str(t) for t in table.schema.types] == [
        "string", "string", "string", "string", "double", "string", "string", "int64", "int64", "double", "double",
        "double", "string", "double", "double", "bool"]
    assert table.to_pylist() == [parsed(line) for line in lines[1:]]


def test_tidy_rows_repeat_the_document_and_add_nothing():
    """The exports read only the document: a row without references appears once, with nulls."""
    results = {"cooccurrence": [], "prevalence_ratios": [], "audit": {}, "exposures": [], "sensitivity": [
        {"abnormality": "hypocalcemia", "direction": "hypomg_given_abnormality", "mg_threshold_mg_dl": 1.6,
         "window": "48h", "window_hours": 48.0, "hypocalcemia_definition": "ionized", "numerator": None,
         "denominator": None, "prevalence": None, "ci_low": None, "ci_high": None, "suppressed": True}]}
    assert tidy_rows(results) == [{
        "section": "sensitivity", "abnormality": "hypocalcemia", "direction": "hypomg_given_abnormality",
        "window": "48h", "window_hours": 48.0, "level": "result",
        "stratum": "mg_threshold_mg_dl=1.6; hypocalcemia_definition=ionized", "numerator": None, "denominator": None,
        "estimate": None, "ci_low": None, "ci_high": None, "reference_set": None, "reference_value": None,
        "p_value": None, "suppressed": True}]


# ---- the sensitivity grid in both directions ----------------------------------------------------

# Low potassium (3.0) at 08:00 for p1, p2, p3, p4, p6; normal (4.0) for p5. Magnesium (mg/dL):
#   p1 1.55 same tube; p2 1.65 12 h after; p3 1.75 30 min after; p4 none; p5 1.45 same tube;
#   p6 1.55 10 h before its potassium.
BOTH_WAYS = [
    lab("p1", "2024-03-01 08:00", "K", "3.0", "mmol/L", specimen_id="s1"),
    lab("p1", "2024-03-01 08:00", "MG", "1.55", "mg/dL", specimen_id="s1"),
    lab("p2", "2024-03-01 08:00", "K", "3.0", "mmol/L"), lab("p2", "2024-03-01 20:00", "MG", "1.65", "mg/dL"),
    lab("p3", "2024-03-01 08:00", "K", "3.0", "mmol/L"), lab("p3", "2024-03-01 08:30", "MG", "1.75", "mg/dL"),
    lab("p4", "2024-03-01 08:00", "K", "3.0", "mmol/L"),
    lab("p5", "2024-03-01 08:00", "K", "4.0", "mmol/L", specimen_id="s5"),
    lab("p5", "2024-03-01 08:00", "MG", "1.45", "mg/dL", specimen_id="s5"),
    lab("p6", "2024-03-01 18:00", "K", "3.0", "mmol/L"), lab("p6", "2024-03-01 08:00", "MG", "1.55", "mg/dL"),
]
# (threshold, window) -> (numerator, denominator), hypokalemia, result level
GIVEN_HYPOMG = {
    # index: Mg below the threshold; denominator: K in the window; numerator: K low
    (1.5, "same_draw"): (0, 1), (1.5, "24h"): (0, 1),      # p5 (normal K)
    (1.6, "same_draw"): (1, 2), (1.6, "24h"): (2, 3),      # + p1, p6 (K 10 h later)
    (1.7, "same_draw"): (1, 2), (1.7, "24h"): (3, 4),      # + p2 (K 12 h before)
    (1.8, "same_draw"): (2, 3), (1.8, "24h"): (4, 5),      # + p3 (K 30 min before)
}
GIVEN_HYPOKALEMIA = {
    # index: the 5 low K; denominator: Mg in the window (p1, p3 in the draw; p2, p6 too in 24 h)
    (1.5, "same_draw"): (0, 2), (1.5, "24h"): (0, 4),      # no Mg below 1.5
    (1.6, "same_draw"): (1, 2), (1.6, "24h"): (2, 4),      # p1; p1, p6
    (1.7, "same_draw"): (1, 2), (1.7, "24h"): (3, 4),      # + p2 (24 h)
    (1.8, "same_draw"): (2, 2), (1.8, "24h"): (4, 4),      # + p3
}


def test_sensitivity_grid_of_both_directions_by_hand(tmp_path):
    config = Config(privacy=Privacy(min_cell_size=0))
    results = build_results(make_db(tmp_path, labs=BOTH_WAYS, config=config), config)
    for direction, expected in (("abnormality_given_hypomg", GIVEN_HYPOMG),
                                ("hypomg_given_abnormality", GIVEN_HYPOKALEMIA)):
        grid = {(r["mg_threshold_mg_dl"], r["window"]): r for r in results["sensitivity"]
                if r["direction"] == direction and r["abnormality"] == "hypokalemia"}
        assert {k: (r["numerator"], r["denominator"]) for k, r in grid.items()} == expected, direction
        for (n, d), r in zip(expected.values(), (grid[k] for k in expected)):
            assert (r["ci_low"], r["ci_high"]) == wilson_interval(n, d)
            assert r["window_hours"] == {"same_draw": 1.0, "24h": 24.0}[r["window"]]
        # the configured threshold (1.7 mg/dL) publishes the co-occurrence row of the direction
        for window in ("same_draw", "24h"):
            cooc = next(r for r in results["cooccurrence"] if r["direction"] == direction and r["level"] == "result"
                        and r["abnormality"] == "hypokalemia" and r["window"] == window)
            assert (cooc["numerator"], cooc["denominator"]) == expected[(1.7, window)]
    # nothing else measured: hyponatremia cells are zero in both directions
    assert all((r["numerator"], r["denominator"]) == (0, 0) for r in results["sensitivity"]
               if r["abnormality"] == "hyponatremia")


def reverse(threshold: float, n: int, d: int, window: str = "24h") -> dict:
    return {"abnormality": "hypokalemia", "direction": "hypomg_given_abnormality", "mg_threshold_mg_dl": threshold,
            "window": window, "window_hours": 24.0, "hypocalcemia_definition": None, "numerator": n, "denominator": d,
            "prevalence": n / d, "ci_low": 0.1, "ci_high": 0.9, "suppressed": False}


def test_the_reverse_grid_is_suppressed_as_a_nested_chain_beside_the_headline_row():
    """Given low K the denominator stays across thresholds and the numerator grows: 1.5 and 1.6
    differ by 3 low-Mg results, so the smaller goes; 1.6 to 1.7 (which publishes the co-occurrence
    row's counts) differ by 17, which is not small."""
    parameters = {"thresholds": {"hypomagnesemia_mg_dl": 1.7}, "analysis": {"hypocalcemia_definition": "total"}}
    cooc = {"abnormality": "hypokalemia", "direction": "hypomg_given_abnormality", "window": "24h",
            "window_hours": 24.0, "level": "result", "numerator": 50, "denominator": 100, "prevalence": 0.5,
            "ci_low": 0.4, "ci_high": 0.6, "mg_tested_fraction": 0.8, "mg_tested_suppressed": False,
            "references": [], "suppressed": False}
    doc = {"parameters": parameters, "cooccurrence": [cooc],
           "sensitivity": [reverse(1.5, 30, 100), reverse(1.6, 33, 100), reverse(1.7, 50, 100)]}
    out = suppress(doc, 11)
    assert [r["suppressed"] for r in out["sensitivity"]] == [True, False, False]
    assert out["cooccurrence"][0]["numerator"] == 50
    assert leaks(out, doc, 11) == []
    # the other way round: a hidden 1.7 cell hides the co-occurrence row, whose mg_tested_fraction
    # is then withheld too, and says so
    doc["sensitivity"][2]["suppressed"] = True
    raw = copy.deepcopy(doc)
    raw["sensitivity"][2]["suppressed"] = False
    out = suppress(doc, 11, raw=raw)
    row = out["cooccurrence"][0]
    assert (row["suppressed"], row["numerator"], row["mg_tested_fraction"], row["mg_tested_suppressed"]) == (
        True, None, None, True)


# ---- provenance ---------------------------------------------------------------------------------

def test_manifest_provenance(tmp_path):
    (tmp_path / "hypomag.toml").write_text("[privacy]\nmin_cell_size = 5\n")
    spec = RunSpec(input_dir=tmp_path / "input", config_path=tmp_path / "hypomag.toml", db_path=tmp_path / "db",
                   out_dir=tmp_path / "out")
    run = Run.start(spec)
    run.con = make_db(tmp_path, labs=ward(30, 12, 15), config=run.config)
    provenance = manifest(run, "2024-03-02T00:00:00+00:00")["provenance"]
    assert list(provenance) == ["hypomag_version", "git_commit", "sql_sha256", "command_line", "config_sha256"]
    assert provenance["config_sha256"] == hashlib.sha256((tmp_path / "hypomag.toml").read_bytes()).hexdigest()
    assert provenance["sql_sha256"] == sql_sha256(SQL_DIR)
    assert isinstance(provenance["command_line"], str) and provenance["command_line"]
    assert provenance["hypomag_version"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    in_checkout = head.returncode == 0 and Path(top.stdout.strip()).resolve() == PROJECT_ROOT.resolve()
    assert provenance["git_commit"] == (head.stdout.strip() if in_checkout else None)
    run.con.close()


def test_no_parameters_file_and_no_git_give_nulls(tmp_path):
    spec = RunSpec(input_dir=tmp_path / "input", db_path=tmp_path / "db", out_dir=tmp_path / "out")
    run = Run.start(spec)
    run.con = make_db(tmp_path, labs=ward(30, 12, 15), config=run.config)
    assert manifest(run, "2024-03-02T00:00:00+00:00")["provenance"]["config_sha256"] is None
    assert git_commit(tmp_path) is None  # not a git work tree: null, no error
    run.con.close()


def test_the_sql_hash_follows_the_models_and_seeds_not_the_folder(tmp_path):
    folder = tmp_path / "sql"
    shutil.copytree(SQL_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    assert sql_sha256(folder) == sql_sha256(SQL_DIR)
    seed = folder / "seeds" / "cooccurrence_windows.csv"
    seed.write_text(seed.read_text().replace("24h", "day"))
    changed = sql_sha256(folder)
    assert changed != sql_sha256(SQL_DIR)
    (folder / "marts" / "mart_audit.sql").rename(folder / "marts" / "mart_audit_renamed.sql")
    assert sql_sha256(folder) != changed


def test_the_command_line_withholds_secrets():
    line = command_line(["/opt/venv/bin/hypomag", "run", "--input", "my inputs", "--api-key", "abc", "--token=xyz",
                         "--config", "https://user:pw@example.org/c.toml"])
    assert shlex.split(line) == ["hypomag", "run", "--input", "my inputs", "--api-key", "***", "--token=***",
                                 "--config", "https://***@example.org/c.toml"]
