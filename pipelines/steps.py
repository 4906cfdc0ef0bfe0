"""The pipeline's steps as plain functions, in the order of the stage table (pipelines/stages.py);
pipelines/flows.py wraps each in a Prefect task.

A run builds everything aside and publishes at the end: the database and every output are
written into a new run folder of the database's store (`<db>.hypomag/runs/<run id>/`), and one
rename of the store's `current` link publishes both (pipelines/publish.py). A run that fails or
is stopped at any step leaves the previous database and outputs as they were, and removes what
it made.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import secrets
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import duckdb

from pipelines import exports, history, inbox, incremental, ingest, models, spark
from pipelines.config import Config, load_config
from pipelines.db import connect, create_parameter_tables, rows
from pipelines.models import sql_sha256
from pipelines.errors import InputError, ValidationFailed
from pipelines.paths import PROJECT_ROOT
from pipelines.paths_guard import OUTPUT_MARKER, check_paths, location, store_for
from pipelines.publish import (RunLock, Store, history_flags, link_dated, link_single, pause_point, published_runs,
                               remove, remove_leftovers, replace_legacy_db, write_marker)
from pipelines.reports.build import write_report
from pipelines.run_spec import RunSpec
from pipelines import worklist
from pipelines.stats import is_small_cell
from pipelines.suppression import suppress_accounting
from pipelines.validate import blocking_failures, run_suites

LOG = logging.getLogger("hypomag")

TIME_SOURCE = {"generic": "collected_at", "mimic-iv": "labevents.charttime (specimen collection)",
               "omop": "measurement.measurement_datetime"}
# Row-level outputs: only ever in the run's restricted/ folder (docs/definitions.md section 7).
RESTRICTED_OUTPUTS = (
    ("int_quarantine", "quarantine"),
    ("int_hypokalemia_episodes", "episodes"),
    ("int_lab_flags", "flags"),
    ("int_result_corrections", "corrections"),
)


def new_run_id() -> str:
    """A run's id: UTC start time, pid and a random suffix (sortable, unique per store)."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{os.getpid()}-{secrets.token_hex(2)}"


@dataclass
class Run:
    """Everything one run carries from step to step: what it was asked (spec), its configuration,
    and what it has built so far."""

    spec: RunSpec
    config: Config
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    con: duckdb.DuckDBPyConnection | None = None
    inputs: list[ingest.InputFile] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=lambda: {"suites": []})
    timings: dict[str, float] = field(default_factory=dict)
    lock: RunLock | None = None
    run_id: str = field(default_factory=new_run_id)
    # links (--db, --out, OUT/latest, ...) this run made before its commit: removed if it fails
    created_links: list[Path] = field(default_factory=list)
    # manifest.json's row accounting before suppression (restricted/accounting.json)
    exact_accounting: dict[str, Any] = field(default_factory=dict)
    # --incremental: new extracts refused by a file-level check (pipelines/inbox.py), and the feed's freshness
    rejected: list[inbox.Rejection] = field(default_factory=list)
    feed: dict[str, Any] = field(default_factory=dict)
    # --incremental: what the night recomputes (pipelines/incremental.py), planned at ingest
    delta: incremental.Delta | None = None
    # the review worklist (.csv, .xlsx), written by a child process from the analyse step on (worklist.start_writing)
    worklist_writing: worklist.Writing | None = None
    # False for `hypomag validate`, which stops after the last validation: no outputs to prepare
    writes_outputs: bool = True

    @classmethod
    def start(cls, spec: RunSpec) -> Run:
        """A new run of `spec`, with its configuration file read and checked (ConfigError: exit 2)."""
        return cls(spec=spec, config=load_config(spec.config_path))

    @property
    def store(self) -> Store:
        return Store(store_for(self.spec.db_path))

    @property
    def run_dir(self) -> Path:
        """This run's folder in the store: its database and outputs, published by one rename."""
        return self.store.run_dir(self.run_id)

    @property
    def building_db(self) -> Path:
        """The run's database: a file of its own, or (--incremental) a link to the store's live database."""
        return self.run_dir / "db" / "hypomag.duckdb"

    @property
    def run_name(self) -> str:
        """The run's folder under OUT (--incremental): its UTC start time, 2026-12-01T020000Z."""
        return history.run_name(self.started_at)

    @property
    def publish_dir(self) -> Path:
        """Where the published outputs are read (a link through the store's `current`)."""
        return self.spec.out_dir / self.run_name if self.spec.incremental else self.spec.out_dir

    @property
    def staging_dir(self) -> Path:
        return self.run_dir / "out"


def timed(run: Run, name: str, started: float) -> None:
    """Record a step's wall seconds (manifest.json step_seconds)."""
    run.timings[name] = round(time.perf_counter() - started, 3)


def prepare(run: Run) -> Run:
    """Check the paths, take the lock, clear killed runs' leftovers, open the run's new database."""
    spec = run.spec
    check_paths(spec.input_dir, spec.db_path, spec.out_dir, spec.incremental)  # PathError (exit 2), nothing written
    location(spec.db_path).parent.mkdir(parents=True, exist_ok=True)
    lock = RunLock(spec.db_path)
    lock.acquire()  # raises RunLocked (exit 2) while another run holds the database
    run.lock = lock
    store = run.store
    store.ensure()
    if spec.incremental:
        publish_committed(store)
    store.prune()  # killed runs' folders; the lock says none is running
    remove_leftovers(spec.db_path, spec.out_dir, store.root, spec.incremental)
    store.new_run(run.run_id)
    if spec.incremental:  # the store's one live database, changed in one transaction (pipelines/incremental.py)
        live = store.live_database(spec.db_path)
        os.symlink(os.path.relpath(live, run.building_db.parent), run.building_db)
        run.con = connect(live, run.config)
        run.con.execute("BEGIN TRANSACTION")
    else:
        run.con = connect(run.building_db, run.config)
    os.chmod(run.building_db, 0o600)
    create_parameter_tables(run.con, run.config)
    write_meta(run)
    return run


def publish_committed(store: Store) -> None:
    """A nightly run stopped between its database commit and its rename of `current` (a moment):
    the live database holds its night, its outputs are complete in its folder; publish them now, so
    the database and the published outputs agree again before this run starts."""
    live = store.live
    if not live.is_file() or store.pointer("current") is None:
        return
    try:
        with duckdb.connect(str(live), read_only=True) as con:
            found = con.execute("SELECT value FROM hypomag_meta WHERE key = 'run_id'").fetchone()
    except duckdb.Error:  # nothing committed yet
        return
    committed = found[0] if found else None
    if committed and committed != store.pointer("current") and (store.run_dir(committed) / "out" / "manifest.json").is_file():
        store.commit(committed)
        LOG.warning("run %s committed its database but stopped before publishing its outputs: published now",
                    committed)


def write_meta(run: Run) -> None:
    """hypomag_meta(key, value): marks the database as hypomag's (paths_guard) and names its run."""
    run.con.execute("CREATE TABLE IF NOT EXISTS hypomag_meta (key VARCHAR, value VARCHAR)")
    meta = {"created_by": "hypomag", "run_id": run.run_id, "hypomag_version": version("hypomag"),
            "started_at": run.started_at}
    for key, value in meta.items():
        run.con.execute("DELETE FROM hypomag_meta WHERE key = ?", [key])
        run.con.execute("INSERT INTO hypomag_meta VALUES (?, ?)", [key, value])


def ingest_step(run: Run) -> Run:
    """Read the source files into raw tables, one text row per input row."""
    started = time.perf_counter()
    spec = run.spec
    if spec.incremental:  # new inbox extracts, each screened alone first (pipelines/inbox.py)
        if run.delta is None:
            relabelled = inbox.relabel_rewritten_loads(run.con)
            run.delta = incremental.before_ingest(run.con, run.config)
            if relabelled and not run.delta.full:
                run.delta.full, run.delta.reason = True, "extracts rewritten in place were relabelled"
        else:  # a retried ingest (a transient error): the rows the failed attempt read go first
            incremental.forget_new_rows(run.con, run.delta)
        load = inbox.load_new_files(run.con, spec.input_dir, run.config, scratch=run.run_dir)
        run.inputs, run.rejected = load.loaded, load.rejected
        run.feed = feed_freshness(run)
    else:
        run.inputs = ingest.ingest(run.con, spec.source, spec.input_dir, run.config, spec.incremental)
    for f in run.inputs:
        LOG.info("read %s: %s rows", f.path, f"{f.rows_read:,}")
    timed(run, "ingest", started)
    return run


def feed_freshness(run: Run) -> dict[str, Any]:
    """manifest.json `feed` of an incremental run: new and rejected files, when the ledger last took
    a file, and whether that is longer ago than `[schedule] max_hours_without_data` (stale). A night
    without a new file says so in a warning."""
    last = inbox.last_loaded_at(run.con)
    hours_since = None if last is None else (datetime.now(timezone.utc) - last).total_seconds() / 3600
    limit = run.config.schedule.max_hours_without_data
    feed = {"new_files": len(run.inputs), "rejected_files": len(run.rejected),
            "last_loaded_at": None if last is None else last.isoformat(timespec="seconds"),
            "hours_since_last_data": None if hours_since is None else round(hours_since, 3),
            "max_hours_without_data": limit,
            "stale": bool(not run.inputs and hours_since is not None and hours_since > limit)}
    if not run.inputs:
        since = ("no file was ever loaded" if last is None
                 else f"the last was loaded {hours_since:.1f} h ago ({feed['last_loaded_at']})")
        LOG.warning("no new extract in the inbox %s; %s%s", run.spec.input_dir, since,
                    f"; more than max_hours_without_data = {limit:g} h: the feed is stale" if feed["stale"] else "")
    return feed


def normalise_step(run: Run) -> Run:
    """Staging models: every row's fate; canonical units; the quarantine."""
    started = time.perf_counter()
    build(run, models.NORMALISE_MODELS)
    check_timestamp_columns(run.con)
    timed(run, "normalise", started)
    return run


def build(run: Run, names: tuple[str, ...]) -> None:
    """Build `names`: on the run's engine (DuckDB or Spark), or, in a nightly run, brought up to date for
    the night's rows (pipelines/incremental.py)."""
    if run.delta is not None:
        incremental.build(run.con, names, run.delta)
    else:
        spark.build_models(run, names)


def check_timestamp_columns(con: duckdb.DuckDBPyConnection) -> None:
    """A time column in which no value can be read is a format problem, not bad rows: stop (exit 2)."""
    for table in inbox.TIME_COLUMNS:
        for found in inbox.unreadable_time_columns(con, table):
            first_row, first_text = found.first[0]
            raise InputError(
                f"{found.source_file}: column {found.column!r}: no value is {found.what} "
                f"(row {first_row}: {first_text!r}); nothing was loaded"
            )


def flag_step(run: Run) -> Run:
    """Flag abnormalities and find partner results in each window."""
    started = time.perf_counter()
    build(run, models.FLAG_MODELS)
    timed(run, "flag", started)
    return run


def analyse_step(run: Run) -> Run:
    """Marts, statistics, reference comparisons and small-cell suppression."""
    started = time.perf_counter()
    # SciPy's statistics and the GLM load when a run gets this far, not at start-up: in a thread while
    # DuckDB builds the marts (DuckDB releases the interpreter lock)
    importing = threading.Thread(target=_import_statistics, name="hypomag-statistics-import", daemon=True)
    importing.start()
    build(run, models.MART_MODELS)
    importing.join()
    from pipelines import analyse  # deferred: SciPy's statistics load when a run gets this far
    if run.delta is not None:  # every model is now that of this code and configuration
        incremental.record_fingerprint(run.con, run.config)
        LOG.info("incremental: %s", run.delta.summary(run.con))
    if run.writes_outputs:
        start_worklist(run)  # the files take seconds of Python: a child process writes them meanwhile
    run.results = analyse.build_results(run.con, run.config)
    analyse.store_proportions(run.con, run.results)
    timed(run, "analyse", started)
    return run


def _import_statistics() -> None:
    """The analyse step's modules; an import error is raised again by the step's own import."""
    try:
        import pipelines.analyse  # noqa: F401 # deferred: loaded in a thread while the marts build
        from statsmodels.genmod import families, generalized_linear_model  # noqa: F401  (pipelines/adjusted.py)
    except Exception:
        pass


WORKLIST_DIR = "worklist"  # in the run's folder until the outputs are written (owner-only)


def start_worklist(run: Run) -> None:
    """Start writing restricted/worklist.csv and .xlsx (mart_audit_worklist) into the run's folder, the
    files in a child process (worklist.start_writing); write_outputs waits for them and moves them into
    restricted/."""
    if run.worklist_writing is not None:  # an earlier start (a step run again): its files are written again below
        run.worklist_writing.cancel()
    folder = run.run_dir / WORKLIST_DIR
    remove(folder)
    folder.mkdir(mode=0o700)
    os.chmod(folder, 0o700)
    run.worklist_writing = worklist.start_writing(run.con, folder)


def validate_step(run: Run, stage: str) -> Run:
    """The suites of `stage`; a blocking failure stops the run (ValidationFailed, exit 1), naming
    the first suite that has one."""
    for summary in check_stage(run, stage):
        blocking = blocking_failures(summary)
        if blocking:
            names = "; ".join(f"{e['id']} ({e['description']}; unexpected: {e['unexpected_count']})"
                              for e in blocking)
            raise ValidationFailed(f"blocking expectation failed in suite {summary['suite']}: {names}")
    return run


def check_stage(run: Run, stage: str) -> list[dict[str, Any]]:
    """Run the Great Expectations suites of `stage` (their meta.stage) in the run's own DuckDB
    session (no checkpoint, close or reopen) and keep their summaries for validation.json."""
    started = time.perf_counter()
    summaries = run_suites(run.con, stage, run.config)
    timed(run, f"validate_{stage}", started)
    run.validation["suites"].extend(summaries)
    return summaries


def manifest(run: Run, finished_at: str) -> dict[str, Any]:
    accounting = rows(run.con, "SELECT * FROM mart_row_accounting ORDER BY input_table, source_file")
    by_file = {(a["input_table"], a["source_file"]): a for a in accounting}
    new = {f.sha256 for f in run.inputs}
    inputs = []
    for f in rows(run.con, "SELECT * FROM loaded_files ORDER BY loaded_at, path"):
        table = "labs" if f["input_table"] == "raw_labs" else "medications"
        acc = by_file.get((table, f["path"]), {})
        inputs.append({
            "table": table, "path": f["path"], "sha256": f["sha256"],
            "rows_read": acc.get("rows_read", f["rows_read"]),
            "rows_loaded": acc.get("rows_loaded", 0),
            "rows_out_of_scope": acc.get("rows_out_of_scope", 0),
            "rows_quarantined": acc.get("rows_quarantined", 0),
            "rows_superseded": acc.get("rows_superseded", 0),
            "loaded_in_this_run": f["sha256"] in new,
        })
    min_cell = run.config.privacy.min_cell_size
    corrections = run.con.execute("SELECT count(*) FROM int_result_corrections").fetchone()[0]
    run.exact_accounting = {"inputs": inputs, "corrections": corrections}
    return {
        "source": run.spec.source,
        "input_dir": str(run.spec.input_dir),
        "inputs": suppress_accounting(inputs, min_cell),
        "time_source": {"labs": TIME_SOURCE[run.spec.source]},  # always a collection time, never result time
        "parameters": run.config.to_dict(),
        "versions": {
            "hypomag": version("hypomag"),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "great_expectations": version("great-expectations"),
            "prefect": version("prefect"),
        },
        "database": str(run.spec.db_path),
        "incremental": run.spec.incremental,
        "corrections": None if is_small_cell(0, corrections, min_cell) else corrections,
        "started_at": run.started_at,
        "finished_at": finished_at,
        "step_seconds": run.timings,
        "provenance": provenance(run),
    }


def provenance(run: Run) -> dict[str, Any]:
    """What produced the outputs: the code (version, checkout commit, SQL and seeds), how it was
    started, and the parameters file. Every lookup degrades to null; none fails the run."""
    return {
        "hypomag_version": version("hypomag"),
        "git_commit": git_commit(),
        "sql_sha256": _or_none(sql_sha256),
        "command_line": command_line(sys.argv),
        "config_sha256": file_sha256(run.config.source_path or run.spec.config_path),
    }


def _or_none(lookup: Any) -> Any:
    """`lookup()`, or None when the files it reads cannot be read."""
    try:
        return lookup()
    except OSError:
        return None


def git_commit(folder: Path = PROJECT_ROOT) -> str | None:
    """HEAD of the git checkout that holds the pipelines package, or None (a wheel install, no git, or
    any error). The work tree's top level must be `folder` itself, so an installation that merely
    lies inside some other repository (a virtualenv in a checkout) reports no commit."""
    try:
        top = _git(folder, "rev-parse", "--show-toplevel")
        if top is None or Path(top).resolve() != folder.resolve():
            return None
        commit = _git(folder, "rev-parse", "HEAD")
    except (OSError, ValueError):
        return None
    return commit if commit and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


def _git(folder: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


# An option whose name says it holds a secret has its value withheld from the manifest, as has
# the user:password part of a URL.
SECRET_OPTION = re.compile(r"^--?[\w-]*(password|passwd|secret|token|api[-_]?key|credential)[\w-]*", re.I)
URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def command_line(argv: list[str]) -> str:
    """The command as started, as shell words (shlex.split gives the arguments back), the program by
    its name only, with secret-looking values withheld."""
    out: list[str] = []
    hide_next = False
    for i, arg in enumerate(argv):
        if i == 0:
            out.append(Path(arg).name)
            continue
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        match = SECRET_OPTION.match(arg)
        if match and "=" in arg:
            out.append(arg.split("=", 1)[0] + "=***")
        elif match:
            out.append(arg)
            hide_next = True
        else:
            out.append(URL_USERINFO.sub("***@", arg))
    return shlex.join(out)


def file_sha256(path: str | Path | None) -> str | None:
    """A file's sha256, or None when there is no file or it cannot be read."""
    if path is None:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def write_outputs(run: Run) -> Run:
    """Write every output of the contract into the staging folder (nothing published yet)."""
    started = time.perf_counter()
    stage = run.staging_dir
    remove(stage)
    stage.mkdir()
    (stage / "restricted").mkdir(mode=0o700)
    os.chmod(stage / "restricted", 0o700)
    write_marker(stage / OUTPUT_MARKER, layout="run", run_id=run.run_id)
    finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if run.spec.incremental:
        run.results["history_flags"] = flag_history(run)
    man = manifest(run, finished_at)
    man["run_id"] = run.run_id
    if run.spec.incremental:  # additions: what the inbox refused, and the feed's freshness
        man["rejected_inputs"] = [r.to_dict() for r in run.rejected]
        man["feed"] = run.feed
        run.validation["rejected_files"] = man["rejected_inputs"]
    _write_json(stage / "results.json", run.results)
    exports.write_exports(run.results, stage)  # results.csv, results.parquet: the same cells, tidy
    _write_json(stage / "validation.json", run.validation)
    _write_json(stage / "restricted" / "accounting.json", run.exact_accounting)  # exact, unsuppressed
    os.chmod(stage / "restricted" / "accounting.json", 0o600)
    if run.worklist_writing is None:  # restricted/worklist.csv, .xlsx (0600): started by the analyse step
        start_worklist(run)
    writing, run.worklist_writing = run.worklist_writing, None  # stopped or awaited below, whatever happens
    try:
        # DuckDB writes the row-level files (without the interpreter lock) while Plotly builds the report
        with ThreadPoolExecutor(1, thread_name_prefix="hypomag-restricted") as pool:
            copying = pool.submit(write_restricted, run.con, stage / "restricted")
            write_report(stage / "report.html", run.results, man, run.validation)
            copying.result()
    except BaseException:  # a failed or stopped run: the child stops before the folder goes
        writing.cancel()
        raise
    writing.wait()  # the worklist's files complete, or the child's error raised
    for name in ("worklist.csv", "worklist.xlsx"):
        os.replace(run.run_dir / WORKLIST_DIR / name, stage / "restricted" / name)
    remove(run.run_dir / WORKLIST_DIR)
    timed(run, "report", started)  # man["step_seconds"] is run.timings: the manifest gets it too
    _write_json(stage / "manifest.json", man)
    if run.spec.incremental:
        write_history(run)
    return run


def write_restricted(con: duckdb.DuckDBPyConnection, restricted: Path) -> None:
    """restricted/<name>.parquet of each table of RESTRICTED_OUTPUTS, owner-only."""
    for table, name in RESTRICTED_OUTPUTS:
        path = restricted / f"{name}.parquet"
        # the path is an argument, never SQL text; the run's own connection sees its open transaction.
        # DuckDB refuses the relation API while an earlier result is not fetched to its end (fetchone
        # leaves it open): a statement fetched to its end closes it.
        con.execute("SELECT 1").fetchall()
        con.table(table).write_parquet(str(path))
        os.chmod(path, 0o600)


def write_history(run: Run) -> None:
    """The dated history as of this run (published with it, by the same commit): the committed
    run's links plus this run's, the `[schedule] keep_runs` latest only. The history page
    (OUT/index.html, pipelines/history.py) is written after the commit."""
    dated = run.run_dir / "dated"
    remove(dated)
    dated.mkdir()
    committed = run.store.pointer("current")
    earlier = run.store.run_dir(committed) / "dated" if committed else None
    links = {}
    if earlier is not None and earlier.is_dir():
        links = {link.name: os.readlink(link) for link in earlier.iterdir() if link.is_symlink()}
    links[run.run_name] = f"../../{run.run_id}/out"
    for name in history.newest(list(links), run.config.schedule.keep_runs):
        os.symlink(links[name], dated / name)


def flag_history(run: Run) -> list[dict[str, Any]]:
    """Headline rates outside the previous published run's 95% interval (logged as warnings)."""
    earlier = [res for name, res in published_runs(run.store.root / "current" / "dated") if name < run.run_name]
    flags = history_flags(earlier[-1] if earlier else None, run.results)
    for f in flags:
        LOG.warning("headline rate moved: %s = %.1f%%, outside the previous run's 95%% interval %.1f-%.1f%%",
                    f["measure"], 100 * f["rate"], 100 * f["previous_ci_low"], 100 * f["previous_ci_high"])
    return flags


def publish(run: Run) -> Path:
    """Publish the run's database and outputs together by the store's one commit (a rename).

    Before it, the links `--db`/`--out` (and OUT/latest, OUT/index.html, OUT/<date>) into the
    store's `current` are made if missing; they never change afterwards.
    """
    live = run.spec.incremental
    if not live:
        run.con.execute("CHECKPOINT")
        run.con.close()
        run.con = None
    os.chmod(run.building_db, 0o600)
    store = run.store
    if run.spec.incremental:  # OUT/<run> links are made after the commit, when they resolve
        run.created_links = link_dated(run.spec.db_path, run.spec.out_dir, store.root, [])
    else:
        run.created_links = link_single(run.spec.db_path, run.spec.out_dir, store.root)
    # the commit: from here on the new pair is published (a nightly run's database transaction
    # commits just before, so a kill leaves the database of the outputs still published)
    store.commit(run.run_id, before=(lambda: run.con.execute("COMMIT")) if live else None)
    if live:
        run.con.close()
        run.con = None
    pause_point("published")
    replace_legacy_db(run.spec.db_path, store.root)
    store.prune(run.config.schedule.keep_restricted_runs if run.spec.incremental else None)
    if run.spec.incremental:
        try:
            after_dated_commit(run)
        except OSError as exc:  # published already: the next run finishes what this could not
            LOG.warning("published, but could not update %s: %s", run.spec.out_dir, exc)
    if run.lock:
        run.lock.release()
        run.lock = None
    return run.publish_dir


def after_dated_commit(run: Run) -> None:
    """After an incremental run's commit: move the rejected extracts aside, link OUT/<run> for each run of
    the published history, drop the OUT links of runs beyond keep_runs, and write the history page.
    A kill before this ends leaves OUT a run behind (the new run is under `latest`); the next run
    finishes it."""
    inbox.move_rejected(run.spec.input_dir, run.rejected)
    names = sorted(p.name for p in (run.run_dir / "dated").iterdir())
    link_dated(run.spec.db_path, run.spec.out_dir, run.store.root, names)
    history.prune(run.spec.out_dir, run.store.root, run.config.schedule.keep_runs)
    history.write_page(run.spec.out_dir, run.store.root)


def record_failure(run: Run, reason: str) -> Path | None:
    """A failed incremental run that held the lock: OUT/failed/<run>/ (failure.json, validation.json)
    and the history page listing it. Nothing of the published pair changes."""
    if not run.spec.incremental or run.lock is None:
        return None
    record = {"run_id": run.run_id, "started_at": run.started_at,
              "failed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "reason": reason,
              "rejected_files": [r.to_dict() for r in run.rejected]}
    folder = history.record_failure(run.spec.out_dir, run.store.root, run.run_name, record, run.validation)
    history.prune(run.spec.out_dir, run.store.root, run.config.schedule.keep_runs)
    history.write_page(run.spec.out_dir, run.store.root)
    return folder


def abandon(run: Run) -> None:
    """After a failure or a stop: drop what this run made; the published pair stays as it was.

    A run that never got the lock made nothing, and must not touch the run that holds it. A run
    whose commit happened is published: nothing of it is removed.
    """
    if run.lock is None:
        return
    if run.worklist_writing is not None:  # its child writes into the run's folder: stopped before that goes
        run.worklist_writing.cancel()
        run.worklist_writing = None
    if run.con is not None:
        try:
            run.con.close()
        except duckdb.Error:
            pass
        run.con = None
    store = run.store
    if store.pointer("current") != run.run_id:
        remove(run.run_dir)
        if store.pointer("current") is None:
            unmake_first_publication(run, store)
    run.lock.release()
    run.lock = None


def unmake_first_publication(run: Run, store: Store) -> None:
    """A first run that never committed: its links would dangle, its store would stay empty."""
    for link in reversed(run.created_links):
        if link.is_symlink():
            link.unlink()
        elif link.is_dir():  # a dated root it made: removed if only its marker is in it (not a failed run's record)
            if any(p.name != OUTPUT_MARKER for p in link.iterdir()):
                continue
            (link / OUTPUT_MARKER).unlink(missing_ok=True)
            try:
                link.rmdir()
            except OSError:
                pass
    if store.runs.is_dir() and not any(store.runs.iterdir()):
        remove(store.root)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
