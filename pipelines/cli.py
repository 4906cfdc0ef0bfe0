"""The `hypomag` command (docs/contract.md): run, demo, validate, serve, generate.

Every error ends as one line on standard error and the contract's exit code (no traceback; a
traceback only with `hypomag --debug ...`): user, path and environment errors (bad config,
missing file or column, unsafe --out/--db, no permission, a full disk) exit 2; a blocking
expectation failure exits 1; SIGINT and SIGTERM stop the run cleanly with 130 and 143.
"""
from __future__ import annotations

import json
import logging
import signal
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from pipelines.config import defaults_toml, load_config
from pipelines.errors import InputError, Stopped, classify
from pipelines.paths import DATA_SAMPLES_DIR
from pipelines.paths_guard import check_paths
from pipelines.prefect_api import TemporaryApi, prefect_api
from pipelines.run_spec import RunSpec
from pipelines.validate import warm_up

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="hypomag: hypomagnesemia and its co-occurring electrolyte abnormalities in lab data.",
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()

SOURCE_HELP = "Input layout: generic (labs + medications CSV/Parquet), mimic-iv or omop."
DEBUG = False  # `hypomag --debug`: tracebacks in logs and on errors


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors (for bug reports).")) -> None:
    """hypomag: hypomagnesemia and its co-occurring electrolyte abnormalities in lab data."""
    global DEBUG
    DEBUG = debug


class _NoUserErrorTracebacks(logging.Filter):
    """Prefect logs a failed task with its traceback; the error's one line follows at the end."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not DEBUG:
            record.exc_info = None
            record.exc_text = None
        return True


def _quiet_user_errors() -> None:
    loggers = [logging.getLogger()] + [
        logging.getLogger(name) for name in list(logging.root.manager.loggerDict) if name.startswith("prefect")
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, _NoUserErrorTracebacks) for f in handler.filters):
                handler.addFilter(_NoUserErrorTracebacks())


def _preflight(spec: RunSpec) -> None:
    """Fail fast, before any flow starts: the config and the input folder (the spec checked the source)."""
    load_config(spec.config_path)
    if not spec.input_dir.is_dir():
        raise InputError(f"{spec.input_dir}: input folder not found")


def _run_flow(spec: RunSpec) -> Path:
    """Run the Prefect flow on `spec`; returns the folder its outputs were published to."""
    check_paths(spec.input_dir, spec.db_path, spec.out_dir, spec.incremental)  # before anything; prepare checks again
    api = TemporaryApi.launch()  # boots on the other core while the imports below run
    _preflight(spec)
    from pipelines.flows import hypomag_pipeline  # deferred: Prefect's import (seconds) overlaps the API's boot

    warm_up()
    _quiet_user_errors()
    with prefect_api(api):
        published = hypomag_pipeline(**spec.to_params())
    return Path(published)


def _summary(published: Path) -> None:
    results = json.loads((published / "results.json").read_text())
    small = f"<{results['parameters']['privacy']['min_cell_size']}"
    c = {k: small if v is None else f"{v:,}" for k, v in results["counts"].items()}  # null = suppressed
    out.print(
        f"[bold green]hypomag finished.[/] Lab rows read {c['lab_rows_read']}, loaded {c['lab_rows_loaded']}, "
        f"out of scope {c['lab_rows_out_of_scope']}, quarantined {c['lab_rows_quarantined']}; "
        f"{c['patients']} patients, {c['mg_results']} magnesium results ({c['hypomg_results']} low)."
    )
    out.print(f"Report:  {published / 'report.html'}")
    if (published.parent / "index.html").is_file():
        out.print(f"History: {published.parent / 'index.html'}")
    out.print(f"Results: {published / 'results.json'}")


@app.command()
def run(
    source: str = typer.Option(..., "--source", help=SOURCE_HELP),
    input_dir: Path = typer.Option(..., "--input", help="Folder holding the input tables."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML configuration (defaults: the analysis plan)."),
    db: Path = typer.Option(Path("out/hypomag.duckdb"), "--db", help="DuckDB database file to (re)build."),
    out_dir: Path = typer.Option(Path("out/run"), "--out", help="Folder for report.html, results.json, ..."),
    incremental: bool = typer.Option(
        False, "--incremental",
        help="Nightly mode: --input is an inbox; load only extracts not loaded before into --db, publish to "
             "OUT/<run date>/ plus OUT/latest and OUT/index.html."),
) -> None:
    """One full run as a Prefect flow: ingest, validate, normalise, flag, analyse, report."""
    spec = RunSpec(source=source, input_dir=input_dir, config_path=config, db_path=db, out_dir=out_dir,
                   incremental=incremental)
    _summary(_run_flow(spec))


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("out/demo"), "--out", help="Folder for the demo's outputs."),
) -> None:
    """Run the pipeline on the bundled data_samples/ with an embedded DuckDB file."""
    spec = RunSpec(source="generic", input_dir=DATA_SAMPLES_DIR, db_path=out_dir.with_name(out_dir.name + ".duckdb"),
                   out_dir=out_dir)
    _summary(_run_flow(spec))


@app.command()
def validate(
    source: str = typer.Option(..., "--source", help=SOURCE_HELP),
    input_dir: Path = typer.Option(..., "--input", help="Folder holding the input tables."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML configuration."),
) -> None:
    """Run the stages up to the last Great Expectations check on the input, publish nothing, print a summary."""
    spec = RunSpec(source=source, input_dir=input_dir, config_path=config)
    _preflight(spec)
    from pipelines.stages import validate_only  # deferred: DuckDB and SciPy load in about a second

    summary = validate_only(spec)
    failed_blocking = 0
    for suite in summary["suites"]:
        for e in suite["expectations"]:
            mark = "[green]pass[/]" if e["success"] else ("[red]FAIL[/]" if e["blocking"] else "[yellow]warn[/]")
            failed_blocking += (not e["success"]) and e["blocking"]
            unexpected = "" if e["unexpected_count"] is None else f" (unexpected: {e['unexpected_count']:,})"
            out.print(f"{mark}  {suite['suite']}.{e['id']}: {e['description']}{unexpected}", highlight=False)
    total = sum(len(s["expectations"]) for s in summary["suites"])
    passed = sum(e["success"] for s in summary["suites"] for e in s["expectations"])
    out.print(f"{passed} of {total} expectations passed; {failed_blocking} blocking failure(s).")
    if failed_blocking:
        raise typer.Exit(1)


@app.command()
def serve(
    source: str = typer.Option("generic", "--source", help=SOURCE_HELP),
    input_dir: Path = typer.Option(Path("inbox"), "--input", help="Inbox folder the nightly run reads extracts from."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML configuration (schedule: cron, timezone)."),
    db: Path = typer.Option(Path("out/nightly.duckdb"), "--db", help="The nightly job's DuckDB database."),
    out_dir: Path = typer.Option(Path("out/reports"), "--out", help="Root of the dated reports, latest and index."),
) -> None:
    """Serve the nightly Prefect deployment `hypomag-nightly` (cron from the config, default 0 2 * * *)."""
    spec = RunSpec(source=source, input_dir=input_dir, config_path=config, db_path=db, out_dir=out_dir,
                   incremental=True)
    _preflight(spec)
    check_paths(spec.input_dir, spec.db_path, spec.out_dir, spec.incremental)
    from pipelines.deploy import serve_nightly  # deferred: Prefect's import takes seconds

    serve_nightly(spec)


@app.command()
def generate(
    patients: int = typer.Option(..., "--patients", min=1, help="Number of synthetic patients."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same files)."),
    out_dir: Path = typer.Option(..., "--out", help="Folder to write labs and medications into."),
    fmt: str = typer.Option("csv", "--format", help="csv or parquet."),
    skewed: bool = typer.Option(False, "--skewed", help="ICU-like skew: 1% of patients carry about half the results."),
) -> None:
    """Write a synthetic de-identified data set in the generic format (streamed in chunks of patients)."""
    from pipelines.generate import generate as make  # deferred: NumPy and Polars load in about a second

    written = make(patients=patients, seed=seed, out_dir=out_dir, fmt=fmt, skewed=skewed)
    for path, n in written.items():
        out.print(f"wrote {n:,} rows to {path}")


@app.command("config")
def config_command(
    defaults: bool = typer.Option(False, "--defaults", help="Print a complete configuration file with every default."),
    check: Optional[Path] = typer.Option(None, "--check", help="Check a configuration file and print its values."),
) -> None:
    """Print the default configuration (TOML), or check a configuration file."""
    if check is not None:
        load_config(check)  # a bad key or value is one line and exit 2
        out.print(f"{check}: valid", highlight=False)
    elif defaults:
        sys.stdout.write(defaults_toml())
    else:
        out.print("hypomag config --defaults | --check FILE", highlight=False)
        raise typer.Exit(2)


def _stop(signum: int, _frame) -> None:
    """SIGINT/SIGTERM: stop the run where it is (the flow removes what it made); later ones wait."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Stopped(signum)


def main() -> None:
    """Console entry point: every error becomes one line on stderr and the contract's exit code.

    Usage errors are Click's own (a usage line and exit code 2). See pipelines.errors.classify.
    """
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        app()
    except BaseException as exc:  # noqa: BLE001 - every way out gets the contract's code and one line
        if isinstance(exc, SystemExit):
            raise
        code, message = classify(exc)
        if DEBUG or "--debug" in sys.argv[1:2]:
            traceback.print_exception(exc)
        label = "hypomag:" if code in (130, 143) else "hypomag: error:"
        err.print(f"[red]{label}[/] {message}", highlight=False, soft_wrap=True)
        sys.exit(code)


if __name__ == "__main__":
    main()
