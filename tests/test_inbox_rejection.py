"""File-level rejection in the nightly inbox (pipelines/inbox.py) and the folder of reports that keeps
every run (pipelines/history.py), on hand-made files whose figures are computed by hand. No Prefect:
the three-night scenario on a real Prefect server is in tests/test_nightly.py."""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from builder import LAB_COLUMNS, MED_COLUMNS, lab, med, write_csv
from pipelines import history, inbox
from pipelines.config import Config, load_config
from pipelines.db import connect, create_parameter_tables
from pipelines.errors import ConfigError, ValidationFailed
from pipelines.flows import _OneLineUserErrors
from pipelines.publish import Store

T = "2024-03-01 08:00"


def good_labs(prefix: str, n: int = 10) -> list[dict]:
    return [lab(f"{prefix}{i}", T, "MG", "2.0", "mg/dL", result_id=f"{prefix}R{i}") for i in range(n)]


def with_bad_values(prefix: str, n: int, bad_rows: set[int]) -> list[dict]:
    """n MG rows; the data rows numbered in bad_rows (1-based) have an unreadable value."""
    return [lab(f"{prefix}{i}", T, "MG", "n/a" if i + 1 in bad_rows else "2.0", "mg/dL", result_id=f"{prefix}R{i}")
            for i in range(n)]


def screen(path: Path, tmp_path: Path, config: Config | None = None) -> inbox.Rejection | None:
    kind = inbox.TABLES[0] if path.name.startswith("labs") else inbox.TABLES[1]
    return inbox.screen_file(path, "0" * 64, kind, config or Config(), tmp_path)


def test_a_file_over_the_quarantine_limit_is_rejected_with_its_figure_and_rows(tmp_path):
    # 3 of 25 in-scope rows unreadable = 12.0% > 5%; the first three quarantined rows are rows 4, 9, 20
    path = write_csv(tmp_path / "labs-2.csv", LAB_COLUMNS, with_bad_values("b", 25, {4, 9, 20}))
    rejection = screen(path, tmp_path)
    assert rejection.check == "labs_quarantine_fraction"
    assert rejection.figure == "12.0% of 25 in-scope rows quarantined; limit 5%"
    assert rejection.example_rows == ["row 4 (non_numeric_value)", "row 9 (non_numeric_value)",
                                      "row 20 (non_numeric_value)"]
    # one bad row in 25 (4.0%) is within the limit; a limit of 1% refuses it
    ok = write_csv(tmp_path / "labs-3.csv", LAB_COLUMNS, with_bad_values("c", 25, {7}))
    assert screen(ok, tmp_path) is None
    strict = Config(validation=Config().validation.__class__(max_quarantine_fraction=0.01))
    assert screen(ok, tmp_path, strict).figure == "4.0% of 25 in-scope rows quarantined; limit 1%"


def test_a_missing_column_and_an_unreadable_time_column_are_file_level(tmp_path):
    renamed = tmp_path / "labs-renamed.csv"
    renamed.write_text("patient_id,collected_at,analyte,result,unit\np1,2024-03-01 08:00,MG,2.0,mg/dL\n")
    rejection = screen(renamed, tmp_path)
    assert rejection.check == "required_column_missing" and "'value'" in rejection.figure
    times = tmp_path / "labs-times.csv"
    times.write_text("patient_id,collected_at,analyte,value,unit\n"
                     "p1,03/01/2024,MG,2.0,mg/dL\np2,03/02/2024,MG,2.1,mg/dL\n")
    rejection = screen(times, tmp_path)
    assert rejection.check == "time_column_unreadable"
    assert rejection.figure == "none of 2 collected_at values is an ISO 8601 date and time"
    assert rejection.example_rows == ["row 1", "row 2"]
    meds = write_csv(tmp_path / "medications-1.csv", MED_COLUMNS, [med("p1", T, "Magnesium Sulfate")])
    assert screen(meds, tmp_path) is None
    assert list(tmp_path.glob("screen-*")) == []  # the scratch databases are removed


def test_rejected_files_are_recorded_by_hash_and_a_corrected_file_loads(tmp_path):
    box = tmp_path / "inbox"
    box.mkdir()
    write_csv(box / "labs-1.csv", LAB_COLUMNS, good_labs("a"))
    write_csv(box / "labs-2.csv", LAB_COLUMNS, with_bad_values("b", 10, {1, 2}))  # 20%
    config = Config()
    con = connect(tmp_path / "db.duckdb", config)
    create_parameter_tables(con, config)
    first = inbox.load_new_files(con, box, config, scratch=tmp_path)
    assert [Path(f.path).name for f in first.loaded] == ["labs-1.csv"]
    assert [(r.name, r.check) for r in first.rejected] == [("labs-2.csv", "labs_quarantine_fraction")]
    assert con.execute("SELECT count(*) FROM raw_labs").fetchone()[0] == 10  # nothing of labs-2 was loaded
    # the same bad content again, under another name: not screened again, not loaded
    (box / "labs-2-again.csv").write_bytes((box / "labs-2.csv").read_bytes())
    again = inbox.load_new_files(con, box, config, scratch=tmp_path)
    assert again.loaded == [] and again.rejected == []
    # corrected: new content, new hash, loads
    write_csv(box / "labs-2.csv", LAB_COLUMNS, good_labs("b"))
    fixed = inbox.load_new_files(con, box, config, scratch=tmp_path)
    assert [Path(f.path).name for f in fixed.loaded] == ["labs-2.csv"] and fixed.rejected == []
    assert con.execute("SELECT count(*) FROM raw_labs").fetchone()[0] == 20
    assert con.execute("SELECT count(*) FROM rejected_files").fetchone()[0] == 1
    con.close()


def test_an_unchanged_extract_is_not_read_again_and_a_rewritten_one_is(tmp_path):
    """The inbox keeps every loaded extract; a night reads again only the files written since their
    sha256 was taken (inbox.stat_key), even when the size and the modification time are kept."""
    box = tmp_path / "inbox"
    box.mkdir()
    path = write_csv(box / "labs-1.csv", LAB_COLUMNS, good_labs("a"))
    real = inbox.sha256_of(path)
    hashed: dict[str, tuple[str, str]] = {}
    assert [digest for _, _, digest in inbox.extracts(box, hashed)] == [real]
    assert hashed == {str(path): (inbox.stat_key(path), real)}
    hashed[str(path)] = (hashed[str(path)][0], "planted")  # what an unchanged file's lookup returns
    assert [digest for _, _, digest in inbox.extracts(box, hashed)] == ["planted"]
    before = os.stat(path)
    time.sleep(0.05)  # file times tick in jiffies: the rewrite must fall in a later one
    path.write_bytes(path.read_bytes().replace(b"a", b"b", 1))  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the modification time set back
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    rewritten = inbox.sha256_of(path)
    assert rewritten != real
    assert [digest for _, _, digest in inbox.extracts(box, hashed)] == [rewritten]
    assert hashed[str(path)][1] == rewritten


def test_moving_a_rejected_file_never_overwrites(tmp_path):
    box = tmp_path / "inbox"
    (box / "rejected").mkdir(parents=True)
    (box / "rejected" / "labs-2.csv").write_text("an earlier rejected file, kept as it is")
    bad = write_csv(box / "labs-2.csv", LAB_COLUMNS, with_bad_values("b", 10, {1, 2}))
    rejection = screen(bad, tmp_path)
    rejection.sha256 = inbox.sha256_of(bad)
    inbox.move_rejected(box, [rejection])
    assert not bad.exists()
    assert (box / "rejected" / "labs-2.csv").read_text() == "an earlier rejected file, kept as it is"
    assert rejection.moved_to == str(box / "rejected" / "labs-2-2.csv")
    reason = (box / "rejected" / "labs-2-2.csv.reason.txt").read_text()
    assert "check: labs_quarantine_fraction" in reason and "20.0% of 10 in-scope rows quarantined; limit 5%" in reason
    assert "row 1 (non_numeric_value); row 2 (non_numeric_value)" in reason and "n/a" not in reason


def test_validate_on_an_inbox_screens_the_new_files_and_loads_nothing(tmp_path):
    box = tmp_path / "inbox"
    box.mkdir()
    write_csv(box / "labs-1.csv", LAB_COLUMNS, good_labs("a"))
    write_csv(box / "labs-2.csv", LAB_COLUMNS, with_bad_values("b", 10, {5}))  # 10%
    db = tmp_path / "nightly.duckdb"
    config = Config()
    con = connect(db, config)
    create_parameter_tables(con, config)
    inbox.create_ledger(con)
    from pipelines.ingest.common import InputFile, record_loaded
    record_loaded(con, [InputFile("raw_labs", str(box / "labs-1.csv"), inbox.sha256_of(box / "labs-1.csv"), 10)])
    con.close()
    before = db.read_bytes()
    verdicts, known = inbox.screen_inbox(box, db, config)
    assert known == 1
    assert [(p.name, r and r.figure) for p, r in verdicts] == [
        ("labs-2.csv", "10.0% of 10 in-scope rows quarantined; limit 5%")]
    assert db.read_bytes() == before and (box / "labs-2.csv").exists() and not (box / "rejected").exists()


def test_run_folders_are_named_by_utc_start_time():
    assert history.run_name("2026-12-01T03:00:00+01:00") == "2026-12-01T020000Z"
    assert history.run_name("2026-12-01T02:00:05+00:00") != history.run_name("2026-12-01T02:00:00+00:00")
    assert history.newest(["2026-12-03T000000Z", "2026-12-01", "2026-12-02T000000Z"], 2) == [
        "2026-12-02T000000Z", "2026-12-03T000000Z"]


def fake_results(rows_read: int) -> dict:
    cooc = [{"abnormality": a, "direction": "hypomg_given_abnormality", "window": "24h", "level": "result",
             "prevalence": 0.3, "ci_low": 0.2, "ci_high": 0.4}
            for a in ("hypokalemia", "hyponatremia", "hypophosphatemia", "hypocalcemia")]
    return {"cooccurrence": cooc, "audit": {"overall": {"rate": 0.5, "ci_low": 0.4, "ci_high": 0.6}},
            "counts": {"lab_rows_read": rows_read, "mg_results": 40}, "parameters": {"privacy": {"min_cell_size": 11}}}


def published_run(out: Path, store: Path, name: str, results: dict, manifest: dict) -> None:
    """A run as a commit leaves it: OUT/<name> -> store/current/dated/<name> -> the run's out folder."""
    folder = store / "runs" / name / "out"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "manifest.json").write_text(json.dumps(manifest))
    dated = store / "runs" / "now" / "dated"
    dated.mkdir(parents=True, exist_ok=True)
    os.symlink(f"../../{name}/out", dated / name)
    if not (store / "current").is_symlink():
        os.symlink("runs/now", store / "current")
    os.symlink(os.path.relpath(store / "current" / "dated" / name, out), out / name)


def test_history_page_lists_failed_and_rejected_runs_and_a_stale_feed(tmp_path):
    out, store = tmp_path / "reports", tmp_path / "db.duckdb.hypomag"
    out.mkdir()
    published_run(out, store, "2026-12-01T020000Z", fake_results(100),
                  {"rejected_inputs": [{"reason": "labs-2.csv: labs_quarantine_fraction: 12.0% of 25 in-scope rows "
                                                  "quarantined; limit 5%"}],
                   "feed": {"new_files": 1, "last_loaded_at": "2026-12-01T02:00:03+00:00"}})
    published_run(out, store, "2026-12-01T020001Z", fake_results(100),
                  {"feed": {"new_files": 0, "last_loaded_at": "2026-12-01T02:00:03+00:00",
                            "hours_since_last_data": 40.0}})
    history.record_failure(out, store, "2026-12-01T020002Z", {"reason": "blocking expectation failed: <b>x</b>"},
                           {"suites": []})
    page = history.write_page(out, store).read_text()
    assert page.index("2026-12-01T020002Z") < page.index("2026-12-01T020001Z") < page.index("2026-12-01T020000Z")
    assert "failed: blocking expectation failed: &lt;b&gt;x&lt;/b&gt;" in page
    assert 'href="failed/2026-12-01T020002Z/validation.json"' in page
    assert "published; rejected: labs-2.csv: labs_quarantine_fraction: 12.0% of 25" in page
    assert "No new data since 2026-12-01T02:00:03+00:00 (40 h before the latest run)." in page
    # plotly.js once per folder, loaded by the page; the page itself stays small
    assert 'src="plotly-' in page and len(page) < 200_000 and page.count("plotly.js v") == 0
    assert len(list(out.glob("plotly-*.min.js"))) == 1
    assert json.loads((out / "failed" / "2026-12-01T020002Z" / "validation.json").read_text()) == {"suites": []}


def test_retention_removes_only_hypomag_run_folders(tmp_path):
    out, store = tmp_path / "reports", tmp_path / "db.duckdb.hypomag"
    out.mkdir()
    published_run(out, store, "2026-12-01T020000Z", fake_results(1), {})
    published_run(out, store, "2026-12-02T020000Z", fake_results(2), {})
    os.symlink(os.path.relpath(store / "current" / "out", out), out / "latest")
    (out / "2026-12-03").mkdir()  # a user's folder with a run-like name: not hypomag's link
    for n in range(3):
        history.record_failure(out, store, f"2026-12-0{n + 1}T030000Z", {"reason": "r"}, {"suites": []})
    (store / "runs" / "now" / "dated" / "2026-12-01T020000Z").unlink()  # the next commit's history drops it
    history.prune(out, store, keep=2)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("2026")) == ["2026-12-02T020000Z", "2026-12-03"]
    assert (out / "latest").is_symlink()
    assert [r["name"] for r in history.failed_runs(out)] == ["2026-12-02T030000Z", "2026-12-03T030000Z"]


def test_only_the_newest_runs_keep_their_restricted_files(tmp_path):
    """`[schedule] keep_restricted_runs`: each run's restricted/ holds row-level copies of the whole history
    as it was; beyond the newest N of the kept runs they are removed, and the runs' shared outputs stay."""
    store = Store(tmp_path / "db.duckdb.hypomag")
    store.ensure()
    ids = [f"2026120{d}T020000Z-1-ab" for d in (1, 2, 3)]
    for run_id in ids:
        (store.run_dir(run_id) / "out" / "restricted").mkdir(parents=True)
        (store.run_dir(run_id) / "out" / "restricted" / "flags.parquet").write_bytes(b"rows")
        (store.run_dir(run_id) / "out" / "report.html").write_text("report")
    dated = store.run_dir(ids[-1]) / "dated"
    dated.mkdir()
    for n, run_id in enumerate(ids):
        os.symlink(f"../../{run_id}/out", dated / f"2026-12-0{n + 1}T020000Z")
    os.symlink(f"runs/{ids[2]}", store.root / "current")
    os.symlink(f"runs/{ids[1]}", store.root / "previous")
    store.prune()  # a plain run's prune: every restricted/ stays
    assert all((store.run_dir(i) / "out" / "restricted" / "flags.parquet").is_file() for i in ids)
    store.prune(keep_restricted=2)
    assert [(store.run_dir(i) / "out" / "restricted").exists() for i in ids] == [False, True, True]
    assert all((store.run_dir(i) / "out" / "report.html").is_file() for i in ids)
    store.prune(keep_restricted=1)  # the previous run's copy goes too; the current run's never
    assert [(store.run_dir(i) / "out" / "restricted").exists() for i in ids] == [False, False, True]
    # a current run that does not sort last (the clock went back) keeps its files all the same
    os.unlink(store.root / "current")
    os.symlink(f"runs/{ids[1]}", store.root / "current")
    (store.run_dir(ids[1]) / "dated").mkdir()
    for n, run_id in enumerate(ids):
        os.symlink(f"../../{run_id}/out", store.run_dir(ids[1]) / "dated" / f"2026-12-0{n + 1}T020000Z")
    (store.run_dir(ids[1]) / "out" / "restricted").mkdir()
    store.prune(keep_restricted=1)
    assert [(store.run_dir(i) / "out" / "restricted").exists() for i in ids] == [False, True, True]


def test_schedule_settings_are_range_checked(tmp_path):
    assert (Config().schedule.keep_runs, Config().schedule.max_hours_without_data) == (90, 36.0)
    assert Config().schedule.keep_restricted_runs == 7
    for text, key in (("keep_runs = 0", "schedule.keep_runs"), ("max_hours_without_data = 0", "schedule.max_hours_"
                                                                                                "without_data"),
                      ("keep_restricted_runs = 0", "schedule.keep_restricted_runs")):
        path = tmp_path / "c.toml"
        path.write_text(f"[schedule]\n{text}\n")
        with pytest.raises(ConfigError, match=key):
            load_config(path)


def test_a_user_error_is_logged_without_its_traceback(monkeypatch):
    monkeypatch.delenv("HYPOMAG_DEBUG", raising=False)
    try:
        raise ValidationFailed("labs.csv: 12.0% quarantined")
    except ValidationFailed as caught:
        error = caught
    record = logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "failed: %r", (error,),
                               (type(error), error, error.__traceback__))
    assert _OneLineUserErrors().filter(record) and record.exc_info is None
    again = logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, "engine: %r", (error,),
                              (type(error), error, error.__traceback__))
    assert not _OneLineUserErrors().filter(again)  # the same error re-raised by the engine: logged once
    try:
        raise KeyError("a bug")
    except KeyError as exc:
        bug = logging.LogRecord("prefect", logging.ERROR, __file__, 1, "bug", (), (type(exc), exc, exc.__traceback__))
    assert _OneLineUserErrors().filter(bug) and bug.exc_info is not None  # bugs keep their traceback
