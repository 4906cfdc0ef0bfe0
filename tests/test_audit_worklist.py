"""The review worklist (restricted/worklist.csv and .xlsx) and the audit additions of results.json on
hand-made episodes: exact rows in review order, owner-only files, the count named in results.json,
and complementary suppression that never changes a v1 cell."""
from __future__ import annotations

import csv
import datetime as dt
import stat

from builder import lab, make_db, med
from pipelines.analyse import build_results
from pipelines.config import Audit, Config, Privacy
from pipelines.worklist import write_worklist

BASE = dt.datetime(2024, 3, 10, 8, 0)


def at(hours: float = 0) -> str:
    return (BASE + dt.timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M:%S")


def low_k(p, hours=0, value="3.0", **extra):
    return lab(p, at(hours), "K", value, "mmol/L", **extra)


def mg(p, hours, value="2.0"):
    return lab(p, at(hours), "MG", value, "mg/dL")


LABS = [
    low_k("a_unchecked"),
    low_k("b_checked_normal"), mg("b_checked_normal", 1),
    low_k("c_low_mg_not_repleted", value="2.4"), mg("c_low_mg_not_repleted", 1, "1.5"),
    low_k("d_low_mg_repleted"), mg("d_low_mg_repleted", 1, "1.5"),
    # Mg 30 h after the start: not a check (+/- 24 h), but the first Mg of the span (end + 24 h = 44 h)
    low_k("e_late_mg"), low_k("e_late_mg", 20), mg("e_late_mg", 30),
    low_k("f_kcl", value="2.8", encounter_id="E1"),
    # unchecked and low Mg not repleted: listed once, as unchecked
    low_k("g_unchecked_low_later"), low_k("g_unchecked_low_later", 10), mg("g_unchecked_low_later", 30, "1.5"),
]
MEDS = [med("d_low_mg_repleted", at(2), "Magnesium Sulfate"), med("f_kcl", at(1), "Potassium Chloride")]
HEADER = ["reason", "patient_id", "episode_number", "encounter_id", "care_unit", "episode_start", "episode_end",
          "lowest_k_mmol_l", "severity", "k_supplement_given", "hours_to_first_mg"]


def test_worklist_rows_order_and_owner_only_files(tmp_path):
    con = make_db(tmp_path, labs=LABS, meds=MEDS)
    restricted = tmp_path / "restricted"
    restricted.mkdir(mode=0o700)
    assert write_worklist(con, restricted) == 5
    with open(restricted / "worklist.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    start = "2024-03-10 08:00:00"
    assert rows == [
        HEADER,
        ["no_mg_check", "a_unchecked", "1", "", "", start, start, "3.0", "mild", "false", ""],
        ["no_mg_check", "e_late_mg", "1", "", "", start, "2024-03-11 04:00:00", "3.0", "mild", "false", "30.0"],
        ["no_mg_check", "f_kcl", "1", "E1", "", start, start, "2.8", "moderate", "true", ""],
        ["no_mg_check", "g_unchecked_low_later", "1", "", "", start, "2024-03-10 18:00:00", "3.0", "mild", "false",
         "30.0"],
        ["low_mg_not_repleted", "c_low_mg_not_repleted", "1", "", "", start, start, "2.4", "severe", "false", "1.0"],
    ]
    for name in ("worklist.csv", "worklist.xlsx"):
        assert stat.S_IMODE((restricted / name).stat().st_mode) == 0o600
    from openpyxl import load_workbook

    sheet = load_workbook(restricted / "worklist.xlsx", read_only=True)["worklist"]
    cells = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert cells[0] == HEADER
    assert [r[1] for r in cells[1:]] == [r[1] for r in rows[1:]]
    assert cells[2][5] == BASE and cells[2][10] == 30.0 and cells[3][9] is True


def test_results_name_the_worklist_by_path_and_count_only(tmp_path):
    off = Config(privacy=Privacy(min_cell_size=0))
    results = build_results(make_db(tmp_path, labs=LABS, meds=MEDS, config=off), off)
    assert results["audit"]["worklist"] == {"csv": "restricted/worklist.csv", "xlsx": "restricted/worklist.xlsx",
                                            "rows": 5, "suppressed": False}
    default = build_results(make_db(tmp_path / "default", labs=LABS, meds=MEDS), Config())
    assert default["audit"]["worklist"]["rows"] is None and default["audit"]["worklist"]["suppressed"]
    # time to check by hand: first Mg at +1 (b, c, d), +30 (e, g); a and f never -> median 1 h, 2 of 7 never
    overall = next(r for r in results["audit"]["time_to_check"]["rows"]
                   if r["measure"] == "mg_check" and r["grouping"] == "overall")
    assert (overall["episodes"], overall["with_time"], overall["never"]) == (7, 5, 2)
    assert (overall["q1_hours"], overall["median_hours"], overall["q3_hours"]) == (1.0, 1.0, 30.0)
    repletion = next(r for r in results["audit"]["time_to_check"]["rows"]
                     if r["measure"] == "mg_repletion" and r["grouping"] == "overall")
    assert (repletion["episodes"], repletion["with_time"], repletion["median_hours"]) == (3, 1, 2.0)


def month_episodes(month: int, episodes: int, checked: int) -> list[dict]:
    out = []
    for i in range(episodes):
        p = f"m{month:02d}_{i:02d}"
        when = dt.datetime(2024, month, 1 + i % 27, 8, 0)
        out.append(lab(p, when.strftime("%Y-%m-%d %H:%M:%S"), "K", "3.1", "mmol/L"))
        if i < checked:
            out.append(lab(p, (when + dt.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"), "MG", "2.0", "mg/dL"))
    return out


def test_quarters_never_give_a_withheld_month_away_and_v1_cells_stay(tmp_path):
    # Jan 32/20, Feb 5/3 (small), Mar 32/20, Apr 26/15. The v1 pass withholds Feb, then Apr (the
    # smallest shown month) so that overall minus the shown months is not Feb alone. By quarter,
    # Q1 = Jan + Feb + Mar would give Feb away (Q1 minus the shown Jan and Mar) and Q2 is Apr itself:
    # both points are withheld, while every v1 cell stays as the v1 pass left it.
    labs = month_episodes(1, 32, 20) + month_episodes(2, 5, 3) + month_episodes(3, 32, 20) + month_episodes(4, 26, 15)
    config = Config(audit=Audit(period="quarter"))
    con = make_db(tmp_path, labs=labs, config=config)
    results = build_results(con, config)
    audit = results["audit"]
    assert [(m["month"], m["suppressed"]) for m in audit["by_month"]] == [
        ("2024-01", False), ("2024-02", True), ("2024-03", False), ("2024-04", True)]
    assert [(p["period"], p["suppressed"], p["episodes"]) for p in audit["spc"]["points"]] == [
        ("2024-Q1", True, None), ("2024-Q2", True, None)]
    assert audit["spc"]["signals"] == []
    # the centre is the overall rate (every period is in the baseline): 58/95, shown with the overall row
    assert audit["overall"]["episodes"] == 95 and audit["spc"]["centre"] == 58 / 95
    month_config = Config(audit=Audit(period="month"))
    by_month = build_results(make_db(tmp_path / "month", labs=labs, config=month_config), month_config)["audit"]
    assert [p["suppressed"] for p in by_month["spc"]["points"]] == [False, True, False, True]
    assert [p["episodes"] for p in by_month["spc"]["points"]] == [32, None, 32, None]
    # the limits exist for shown months only: a limit at a withheld month's n would give n away
    assert by_month["spc"]["points"][1]["ucl"] is None and by_month["spc"]["points"][0]["ucl"] is not None


def test_reflex_simulator_on_episodes_withholds_only_what_a_small_prevalence_gives_away(tmp_path):
    # 20 mild episodes untested, 15 tested in the same draw, 2 of them low Mg: prevalence 2/15 (a
    # small cell). K < 3.5: 20 extra tests in the one month of data, 20 untested episodes,
    # 20 x 2/15 = 2.67 expected detections, 7.5 tests per detection. Nothing lies below 3.0.
    labs = [low_k(f"untested_{i:02d}", value="3.2") for i in range(20)]
    for i in range(15):
        labs += [low_k(f"tested_{i:02d}", value="3.2"), mg(f"tested_{i:02d}", 0, "1.5" if i < 2 else "2.0")]
    off = Config(privacy=Privacy(min_cell_size=0))
    rules = build_results(make_db(tmp_path, labs=labs, config=off), off)["audit"]["reflex_simulation"]["rules"]
    first = rules[0]
    assert (first["k_below_mmol_l"], first["extra_mg_tests"], first["extra_mg_tests_per_month"],
            first["untested_episodes"]) == (3.5, 20, 20.0, 20)
    assert first["expected_hypomg_detections"] == 20 * 2 / 15 and first["tests_per_detection"] == 7.5
    assert [(r["k_below_mmol_l"], r["extra_mg_tests"], r["untested_episodes"]) for r in rules[1:]] == [
        (3.0, 0, 0), (2.5, 0, 0)]
    shown = build_results(make_db(tmp_path / "default", labs=labs), Config())["audit"]["reflex_simulation"]
    first = shown["rules"][0]
    assert (first["suppressed"], first["extra_mg_tests"], first["untested_episodes"]) == (False, 20, 20)
    assert first["detections_suppressed"] and first["expected_hypomg_detections"] is None
    assert shown["prevalence_among_tested"][0]["suppressed"] is True


def test_the_xlsx_written_by_a_child_process_equals_the_one_written_in_process(tmp_path):
    """A run writes the .xlsx in a child process (worklist.start_writing) while it computes its statistics:
    the same sheet as write_worklist's; a disk error in the child is an OSError naming the file; a
    failed run can stop the child."""
    import zipfile

    import pytest

    from pipelines.worklist import start_writing

    con = make_db(tmp_path, labs=LABS, meds=MEDS)
    here, child = tmp_path / "here", tmp_path / "child"
    here.mkdir()
    child.mkdir()
    assert write_worklist(con, here) == 5
    assert start_writing(con, child).wait() == 5
    assert (child / "worklist.csv").read_bytes() == (here / "worklist.csv").read_bytes()
    sheets = [zipfile.ZipFile(folder / "worklist.xlsx").read("xl/worksheets/sheet1.xml") for folder in (here, child)]
    assert sheets[0] == sheets[1] and b"g_unchecked_low_later" in sheets[0]
    assert stat.S_IMODE((child / "worklist.xlsx").stat().st_mode) == 0o600
    assert stat.S_IMODE((child / "worklist.csv").stat().st_mode) == 0o600
    broken = tmp_path / "broken"
    (broken / "worklist.xlsx").mkdir(parents=True)  # a folder where the file should go
    with pytest.raises(OSError) as failed:  # a disk or permission problem: exit 2 for the run, not 70
        start_writing(con, broken).wait()
    assert failed.value.filename and failed.value.filename.endswith("worklist.xlsx")
    cancelled = tmp_path / "cancelled"
    cancelled.mkdir()
    writing = start_writing(con, cancelled)
    writing.cancel()  # a failed run stops the child and reaps it
    assert writing._child.returncode is not None
