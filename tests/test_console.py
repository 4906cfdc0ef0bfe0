"""The console tells the same truth as the outputs: a first line naming what runs and where it writes,
one line per step with its figures, and a summary that names every warning validation.json holds and
the output paths; Prefect's and GX's own chatter only with --verbose; plain flags in --help."""
from __future__ import annotations

import json
import logging
import re
import time
from io import StringIO

import pytest
from rich.console import Console
from typer.testing import CliRunner

from pipelines import cli
from pipelines.models import PROGRESS
from pipelines.paths import DATA_SAMPLES_DIR

# every task of the flow, in run order, each with one line "<step>: <figures> in <seconds> s"
STEPS = ("prepare", "ingest", "validate_ingest", "normalise", "validate_normalise", "flag", "analyse",
         "validate_analyse", "report", "publish")
# anything but text, tab and newline: colours, cursor moves, carriage returns
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def failed_warnings(validation: dict) -> set[tuple[str, int | None]]:
    """(id, unexpected count) of every expectation that failed without blocking."""
    return {(e["id"], e["unexpected_count"]) for s in validation["suites"] for e in s["expectations"]
            if not e["success"] and not e["blocking"]}


@pytest.mark.slow
def test_demo_console_tells_what_ran_and_every_warning(demo_run):
    out, proc = demo_run
    demo = out / "demo"
    stdout, stderr = proc.stdout.splitlines(), proc.stderr
    assert stdout[0] == (f"hypomag demo: generic input {DATA_SAMPLES_DIR} -> database {out / 'demo.duckdb'}, "
                         f"outputs {demo}; default parameters")

    for step in STEPS:
        assert re.search(rf"\| hypomag - {step}: .+ in \d+\.\d s$", stderr, re.M), step
    exact = json.loads((demo / "restricted" / "accounting.json").read_text())
    read = sum(i["rows_read"] for i in exact["inputs"])
    assert f"hypomag - ingest: {len(exact['inputs'])} file(s), {read:,} rows read in " in stderr

    validation = json.loads((demo / "validation.json").read_text())
    expected = failed_warnings(validation)
    assert expected, "the demo data holds rows that fire warnings"
    line = next(x for x in stdout if "data-quality warning" in x)
    assert line.startswith(f"{len(expected)} data-quality warning") and line.endswith("see validation.json")
    items = line.split(": ", 1)[1].removesuffix("; see validation.json").split("; ")
    named = {(m[2], int(m[1].replace(",", ""))) for m in (re.fullmatch(r"([\d,]+) .+ \[(\w+)\]", x) for x in items)}
    assert named == expected

    after = stdout[stdout.index(line) + 1:]
    for label, name in (("Report:", "report.html"), ("Results:", "results.json"), ("Checks:", "validation.json")):
        assert any(x.split() == [label, str(demo / name)] for x in after), label
    assert stdout[-1].split()[1] == str(demo / "validation.json")

    console = proc.stdout + proc.stderr
    for chatter in ("View at http", "ephemeral docs site", "Task run '", "Flow run '"):
        assert chatter not in console, chatter
    assert not CONTROL.search(console)


def test_help_shows_plain_flags():
    runner = CliRunner()
    top = runner.invoke(cli.app, ["--help"])
    run = runner.invoke(cli.app, ["run", "--help"])
    assert top.exit_code == 0 and run.exit_code == 0
    for flag in ("--debug", "--verbose"):
        assert re.search(rf"^\s+{flag}\s+\w", top.output, re.M), flag
    assert re.search(r"^\s+--incremental\s+Nightly mode", run.output, re.M)
    for text in (top.output, run.output):
        assert "<bool>" not in text and "[default: False]" not in text


def _passes(logger_name: str, level: int, msg: str) -> bool:
    logger = logging.getLogger(logger_name)
    return bool(logger.filter(logger.makeRecord(logger_name, level, __file__, 0, msg, (), None)))


def test_verbose_decides_whether_prefect_and_gx_chatter_shows():
    try:
        cli.console_logging(verbose=False)
        for name in cli.CHATTY_LOGGERS:
            assert not _passes(name, logging.INFO, "View at http://127.0.0.1:4200/runs/flow-run/x"), name
            assert _passes(name, logging.WARNING, "something to see"), name
        assert _passes("prefect.task_runs", logging.INFO, "Task run failed with %s: %r - Retry %s/%s will start %s")
        assert _passes("hypomag", logging.INFO, "model stg_lab_rows: 1 rows in 0.0 s")

        cli.console_logging(verbose=True)
        for name in cli.CHATTY_LOGGERS:
            assert _passes(name, logging.INFO, "View at http://127.0.0.1:4200/runs/flow-run/x"), name
    finally:
        cli.console_logging(verbose=False)

    result = CliRunner().invoke(cli.app, ["--verbose", "config", "--defaults"])
    try:
        assert result.exit_code == 0 and cli.VERBOSE
    finally:
        cli.VERBOSE = False


def test_summary_names_history_flags_and_unknown_warnings(tmp_path, capsys):
    results = {"parameters": {"privacy": {"min_cell_size": 11}},
               "counts": {"lab_rows_read": 12000, "lab_rows_loaded": 11000, "lab_rows_out_of_scope": 990,
                          "lab_rows_quarantined": None, "patients": 40, "mg_results": 900, "hypomg_results": 50},
               "history_flags": [{"measure": "hypokalemia_given_hypomg", "rate": 0.31, "previous_ci_low": 0.2,
                                  "previous_ci_high": 0.25}]}
    warning = {"id": "results_not_in_future", "success": False, "blocking": False, "unexpected_count": 14344,
               "description": "no collection time after the extract date", "error": None}
    made_warning = {"id": "accounting_identity", "success": False, "blocking": False, "unexpected_count": 2,
                    "description": "read = loaded + out_of_scope + quarantined (per file)", "error": None}
    passed = {**warning, "id": "labs_not_empty", "success": True}
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "validation.json").write_text(json.dumps(
        {"suites": [{"suite": "s", "stage": "normalise", "expectations": [warning, passed, made_warning]}]}))
    cli._summary(tmp_path, 3.2)
    printed = capsys.readouterr().out
    assert "quarantined <11;" in printed
    assert ("2 data-quality warnings: 14,344 results after the extract date [results_not_in_future]; "
            "2 unexpected: read = loaded + out_of_scope + quarantined [accounting_identity]; see validation.json"
            ) in printed
    assert ("1 history flag: hypokalemia_given_hypomg 31.0% is outside the previous run's 95% interval "
            "20.0-25.0%") in printed


def test_progress_display_only_on_a_terminal():
    assert isinstance(cli._progress("starting"), cli._NoDisplay)  # pytest captures: not a terminal

    display = cli._StepDisplay(Console(file=StringIO(), force_terminal=True, width=100), "starting")
    assert not str(display._render())  # shown only once a step has run SLOW_STEP_SECONDS
    PROGRESS.addHandler(display)  # the flow's and the models' progress records
    try:
        PROGRESS.info("%s", "flag", extra={"step": "flag"})
        PROGRESS.info("model %s", "int_index_windows")
    finally:
        PROGRESS.removeHandler(display)
    display.since = time.monotonic() - 12
    console = Console(file=StringIO(), width=100)
    console.print(display._render())
    assert "flag (model int_index_windows): 12 s" in console.file.getvalue()
