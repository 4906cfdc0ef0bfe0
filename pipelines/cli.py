"""The `hypomag` command (docs/contract.md): run, demo, validate, serve, generate.

Every error ends as one line on standard error and the contract's exit code (no traceback; a
traceback only with `hypomag --debug ...`): user, path and environment errors (bad config,
missing file or column, unsafe --out/--db, no permission, a full disk) exit 2; a blocking
expectation failure exits 1; SIGINT and SIGTERM stop the run cleanly with 130 and 143.

A run's console says what the outputs say: a first line (what runs, on what, where it writes), one
line per step with its figures (the hypomag logger), a progress display on a terminal, and a summary
naming every warning of validation.json and every history flag beside the output paths. Prefect's
and GX's own INFO lines show only with `hypomag --verbose ...`.
"""
from __future__ import annotations

import atexit
import gc
import json
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from pipelines.config import ENGINE_ENV, ENGINE_NAMES, defaults_toml, load_config
from pipelines.errors import ConfigError, InputError, Stopped, classify
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
    rich_markup_mode=None,  # plain help: a flag shows as `--incremental`, not `--incremental <bool>`
)
err = Console(stderr=True)
out = Console()

SOURCE_HELP = "Input layout: generic (labs + medications CSV/Parquet), mimic-iv or omop."
DEBUG = False  # `hypomag --debug`: tracebacks in logs and on errors
VERBOSE = False  # `hypomag --verbose`: Prefect's and GX's own INFO lines too


@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors (for bug reports)."),
    verbose: bool = typer.Option(False, "--verbose", help="Show Prefect's and Great Expectations' own log lines "
                                 "too (each task run's state, links to Prefect's temporary API)."),
) -> None:
    """hypomag: hypomagnesemia and its co-occurring electrolyte abnormalities in lab data."""
    global DEBUG, VERBOSE
    DEBUG, VERBOSE = debug, verbose
    if debug:
        os.environ["HYPOMAG_DEBUG"] = "1"  # flows run by `serve` (in their own processes) log tracebacks too


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


# Loggers whose INFO lines are Prefect's and GX's own bookkeeping, shown only with --verbose: each task
# run's final state, the flow run's "View at http://127.0.0.1:..." link to the temporary API, GX's
# temporary documentation site. Their warnings and errors always show.
CHATTY_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "great_expectations.data_context.types.base")
# A step shows a progress display (on a terminal only) once it has run this long.
SLOW_STEP_SECONDS = 2.0


class _WarningsAndRetries(logging.Filter):
    """Passes warnings, errors and Prefect's retry notices (INFO, but news to an operator)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "Retry" in str(record.msg)


_NOT_VERBOSE = _WarningsAndRetries()


def console_logging(verbose: bool) -> None:
    """Without --verbose, CHATTY_LOGGERS pass only warnings, errors and retries; with it, everything.

    A filter on each logger, not a level: Prefect sets its loggers' levels from its logging
    configuration when it is imported (PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL and the like),
    and GX sets its logger to INFO when imported; a filter stays whatever runs later. The hypomag
    logger's lines are not touched.
    """
    for name in CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        if verbose:
            logger.removeFilter(_NOT_VERBOSE)
        else:
            logger.addFilter(_NOT_VERBOSE)


def _announce(command: str, spec: RunSpec) -> None:
    """The first line, before any slow import: what runs, on what, and where it will write."""
    what = f"{spec.source} inbox" if spec.incremental else f"{spec.source} input"
    outputs = (f"{spec.out_dir.absolute()}/<UTC start time>/ (with latest and index.html)" if spec.incremental
               else str(spec.out_dir.absolute()))
    params = f"parameters {spec.config_path}" if spec.config_path else "default parameters"
    out.print(f"hypomag {command}: {what} {spec.input_dir.absolute()} -> database {spec.db_path.absolute()}, "
              f"outputs {outputs}; {params}", markup=False, highlight=False, soft_wrap=True)


class _StepDisplay(logging.Handler):
    """On a terminal, a one-line progress display under the log lines: the step under way (and the model
    it builds), with its seconds, once it has run SLOW_STEP_SECONDS. It reads the flow's progress
    records (logger hypomag.progress: a step's start and end, each model's start); it is gone when the
    run ends. Log lines of the console handlers it diverts print above it."""

    def __init__(self, console: Console, step: str) -> None:
        super().__init__()
        self.console = console
        self.step, self.detail, self.since = step, "", time.monotonic()
        self.spinner = Spinner("dots")
        self.live = Live(console=console, get_renderable=self._render, transient=True, refresh_per_second=4,
                         redirect_stdout=False, redirect_stderr=False)
        self.diverted: list[tuple[logging.Handler, logging.Filter]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "step"):  # a step starts (its name) or ends ("")
            self.step, self.detail, self.since = record.step, "", time.monotonic()
        else:
            self.detail = record.getMessage()

    def _render(self) -> Text | Spinner:
        seconds = time.monotonic() - self.since
        if not self.step or seconds < SLOW_STEP_SECONDS:
            return Text("", end="")
        detail = f" ({self.detail})" if self.detail else ""
        self.spinner.update(text=Text(f"{self.step}{detail}: {seconds:.0f} s", style="dim"))
        return self.spinner

    def divert_console_handlers(self) -> None:
        """Print the root logger's console handlers' lines (Prefect's, and the hypomag logger's through
        them) above the display instead of through it."""
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stderr, sys.__stderr__):
                divert = _PrintAbove(handler, self.console)
                handler.addFilter(divert)
                self.diverted.append((handler, divert))

    def __enter__(self) -> "_StepDisplay":
        logging.getLogger("hypomag.progress").addHandler(self)
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()
        logging.getLogger("hypomag.progress").removeHandler(self)
        for handler, divert in self.diverted:
            handler.removeFilter(divert)


class _PrintAbove(logging.Filter):
    """Diverts a console handler's records through the progress display's console, so that each line
    is printed above the display instead of through it."""

    def __init__(self, handler: logging.Handler, console: Console) -> None:
        super().__init__()
        self.handler, self.console = handler, console

    def filter(self, record: logging.LogRecord) -> bool:
        style = "yellow" if record.levelno == logging.WARNING else "red" if record.levelno > logging.WARNING else ""
        self.console.print(Text(self.handler.format(record), style=style), soft_wrap=True)
        return False


class _NoDisplay:
    """Piped or logged output (and tests): plain lines, no control characters, no display."""

    def divert_console_handlers(self) -> None:
        pass

    def __enter__(self) -> "_NoDisplay":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _progress(step: str) -> _StepDisplay | _NoDisplay:
    """The progress display while a run starts and runs, on a terminal only; `step` names the start."""
    return _StepDisplay(err, step) if sys.stderr.isatty() else _NoDisplay()


def _run_flow(command: str, spec: RunSpec) -> Path:
    """Run the Prefect flow on `spec`; returns the folder its outputs were published to."""
    _announce(command, spec)
    check_paths(spec.input_dir, spec.db_path, spec.out_dir, spec.incremental)  # before anything; prepare checks again
    api = TemporaryApi.launch()  # boots on the other core while the imports below run
    _preflight(spec)
    console_logging(VERBOSE)
    with _progress("starting Prefect and Great Expectations") as display:
        from pipelines.flows import hypomag_pipeline  # deferred: Prefect's import (seconds) overlaps the API's boot

        _quiet_user_errors()
        display.divert_console_handlers()  # Prefect's console handler exists once Prefect is imported
        warm_up()
        with prefect_api(api):
            published = hypomag_pipeline(**spec.to_params())
    return Path(published)


# Failed warnings (non-blocking expectations) in the summary's words; any other id is named with its
# description.
WARNING_WORDS = {
    "results_not_in_future": "{n} results after the extract date",
    "meds_start_before_stop": "{n} orders stop before they start",
    "labs_patient_id_present": "{n} lab rows name no patient",
    "meds_patient_id_present": "{n} medication orders name no patient",
    "labs_not_empty": "the labs file has no rows",
}


def data_quality_warnings(validation: dict[str, Any]) -> list[dict[str, Any]]:
    """The expectations that failed without blocking the run (validation.json), in run order."""
    return [e for suite in validation["suites"] for e in suite["expectations"] if not e["success"] and not e["blocking"]]


def _warning_text(e: dict[str, Any]) -> str:
    """One failed warning in a few words with its figure, and its id (to find it in validation.json)."""
    n = "some" if e["unexpected_count"] is None else f"{e['unexpected_count']:,}"
    if e.get("error"):
        words = f"could not be checked ({e['error']})"
    elif e["id"] in WARNING_WORDS:
        words = WARNING_WORDS[e["id"]].format(n=n)
    else:
        words = f"{n} unexpected: {e['description'].split(' (')[0]}"
    return f"{words} [{e['id']}]"


def _flag_text(f: dict[str, Any]) -> str:
    return (f"{f['measure']} {100 * f['rate']:.1f}% is outside the previous run's 95% interval "
            f"{100 * f['previous_ci_low']:.1f}-{100 * f['previous_ci_high']:.1f}%")


def _rejected(published: Path) -> list[dict[str, Any]]:
    """The inbox files an incremental run rejected (manifest.json rejected_inputs)."""
    manifest = published / "manifest.json"
    return (json.loads(manifest.read_text()).get("rejected_inputs") or []) if manifest.is_file() else []


EXIT_REJECTED = 3  # published; some inbox files were rejected (docs/contract.md)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _summary(published: Path, seconds: float) -> None:
    """The run's end: its counts, every warning that fired (data quality, history), the output paths."""
    results = json.loads((published / "results.json").read_text())
    validation = json.loads((published / "validation.json").read_text())
    small = f"<{results['parameters']['privacy']['min_cell_size']}"
    c = {k: small if v is None else f"{v:,}" for k, v in results["counts"].items()}  # null = suppressed
    say = dict(markup=False, highlight=False, soft_wrap=True)
    out.print(
        f"hypomag finished in {seconds:.0f} s. Lab rows read {c['lab_rows_read']}, loaded {c['lab_rows_loaded']}, "
        f"out of scope {c['lab_rows_out_of_scope']}, quarantined {c['lab_rows_quarantined']}; "
        f"{c['patients']} patients, {c['mg_results']} magnesium results ({c['hypomg_results']} low).", style="green",
        **say)
    warned = data_quality_warnings(validation)
    if warned:
        out.print(f"{_plural(len(warned), 'data-quality warning')}: {'; '.join(map(_warning_text, warned))}; "
                  "see validation.json", style="yellow", **say)
    else:
        out.print("No data-quality warnings.", **say)
    flags = results.get("history_flags") or []
    if flags:
        out.print(f"{_plural(len(flags), 'history flag')}: {'; '.join(map(_flag_text, flags))}", style="yellow", **say)
    for r in _rejected(published):
        out.print(f"Rejected {r['reason']}; not loaded, moved with its .reason.txt to "
                  f"{Path(r['path']).parent / 'rejected'}/", style="yellow", **say)
    out.print(f"Report:  {published / 'report.html'}", **say)
    if (published.parent / "index.html").is_file():
        out.print(f"History: {published.parent / 'index.html'}", **say)
    out.print(f"Results: {published / 'results.json'}", **say)
    for name in ("results.csv", "results.parquet"):
        if (published / name).is_file():
            out.print(f"Table:   {published / name}", **say)
    out.print(f"Checks:  {published / 'validation.json'}", **say)


@app.command(short_help="One full run: ingest, validate, normalise, flag, analyse, report")
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
    engine: Optional[str] = typer.Option(
        None, "--engine", help="Where the SQL models run: duckdb or spark (overrides [engine] name; docs/spark.md)."),
) -> None:
    """One full run as a Prefect flow: ingest, validate, normalise, flag, analyse, report."""
    started = time.monotonic()
    spec = RunSpec(source=source, input_dir=input_dir, config_path=config, db_path=db, out_dir=out_dir,
                   incremental=incremental)
    _select_engine(engine, spec)
    published = _run_flow("run --incremental" if incremental else "run", spec)
    _summary(published, time.monotonic() - started)
    if incremental and _rejected(published):
        raise typer.Exit(EXIT_REJECTED)


def _select_engine(engine: Optional[str], spec: RunSpec) -> None:
    """--engine for the run this process starts (pipelines/spark: HYPOMAG_ENGINE). The nightly inbox runs
    on DuckDB only: --incremental with the spark engine is refused (exit 2)."""
    if engine is not None and engine not in ENGINE_NAMES:
        raise ConfigError(f"--engine {engine!r}: expected one of {', '.join(ENGINE_NAMES)}")
    name = engine or load_config(spec.config_path).engine.name
    if spec.incremental and name == "spark":
        raise ConfigError("engine 'spark': the nightly inbox (--incremental, serve) runs on DuckDB only")
    if engine is not None:
        os.environ[ENGINE_ENV] = engine


@app.command(short_help="Run the pipeline on the bundled data_samples/")
def demo(
    out_dir: Path = typer.Option(Path("out/demo"), "--out", help="Folder for the demo's outputs."),
) -> None:
    """Run the pipeline on the bundled data_samples/ with an embedded DuckDB file."""
    started = time.monotonic()
    spec = RunSpec(source="generic", input_dir=DATA_SAMPLES_DIR, db_path=out_dir.with_name(out_dir.name + ".duckdb"),
                   out_dir=out_dir)
    _summary(_run_flow("demo", spec), time.monotonic() - started)


@app.command(short_help="Run every expectation on an input; publish nothing")
def validate(
    source: str = typer.Option(..., "--source", help=SOURCE_HELP),
    input_dir: Path = typer.Option(..., "--input", help="Folder holding the input tables."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML configuration."),
    incremental: bool = typer.Option(
        False, "--incremental", help="--input is a nightly inbox: screen the extracts not yet loaded into --db with "
                                     "the run's file-level checks and say which would be rejected and why."),
    db: Path = typer.Option(Path("out/nightly.duckdb"), "--db", help="With --incremental: the nightly database "
                            "whose ledger says which extracts are loaded (read only)."),
) -> None:
    """Run the stages up to the last Great Expectations check on the input, publish nothing, print a summary."""
    spec = RunSpec(source=source, input_dir=input_dir, config_path=config, db_path=db, incremental=incremental)
    _preflight(spec)
    if incremental:
        _validate_inbox(spec)
        return
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


def _validate_inbox(spec: RunSpec) -> None:
    """`validate --incremental`: one line per extract not yet loaded, saying whether a run would load
    or reject it (and why); loads and moves nothing. Exit 1 when any would be rejected."""
    from pipelines.inbox import screen_inbox  # deferred: DuckDB loads in about a second

    verdicts, known = screen_inbox(spec.input_dir, spec.db_path, load_config(spec.config_path))
    for path, rejection in verdicts:
        if rejection is None:
            out.print(f"[green]load[/]    {path.name}", highlight=False, soft_wrap=True)
        else:
            rows = f" (e.g. {', '.join(rejection.example_rows)})" if rejection.example_rows else ""
            out.print(f"[red]REJECT[/]  {rejection.line()}{rows}", highlight=False, soft_wrap=True)
    rejected = sum(r is not None for _, r in verdicts)
    out.print(f"{len(verdicts)} new extract(s) in {spec.input_dir} ({known} already loaded): "
              f"{len(verdicts) - rejected} would load, {rejected} would be rejected; nothing was loaded.",
              highlight=False, soft_wrap=True)
    if rejected:
        raise typer.Exit(1)


@app.command(short_help="Serve the nightly Prefect deployment hypomag-nightly")
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
    _select_engine(None, spec)  # the spark engine is refused: the nightly inbox runs on DuckDB
    check_paths(spec.input_dir, spec.db_path, spec.out_dir, spec.incremental)
    from pipelines.deploy import serve_nightly  # deferred: Prefect's import takes seconds

    serve_nightly(spec)


@app.command(short_help="Write a synthetic de-identified data set (generic layout)")
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


@app.command("config", short_help="Print the default configuration or check a configuration file")
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
    atexit.register(_skip_exit_collection)  # runs after the handlers registered during the run
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


def _skip_exit_collection() -> None:
    """At the interpreter's exit: no collector passes over every loaded module's objects while they are
    torn down (about 0.7 s after a run). Every database and file is closed by then."""
    gc.disable()
    gc.freeze()


if __name__ == "__main__":
    main()
