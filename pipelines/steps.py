"""The pipeline's steps as plain functions; pipelines/flows.py wraps each in a Prefect task.

A run builds everything aside and publishes at the end: the database is written to
`<db>.building` and moved over the previous one, the outputs to a fresh folder that replaces
`--out` by rename. A run that fails at any step leaves the previous database and outputs as
they were.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import duckdb

from pipelines import analyse, ingest, models
from pipelines.config import Config
from pipelines.db import connect, create_parameter_tables
from pipelines.errors import InputError, ValidationFailed
from pipelines.publish import RunLock, history_flags, point_latest, published_runs, swap_in, write_index

LOG = logging.getLogger("hypomag")

SOURCES = ("generic", "mimic-iv", "omop")
TIME_SOURCE = {"generic": "collected_at", "mimic-iv": "labevents.charttime (specimen collection)",
               "omop": "measurement.measurement_datetime"}
# Row-level outputs: only ever in the run's restricted/ folder (plan section 7).
RESTRICTED_OUTPUTS = (
    ("int_quarantine", "quarantine"),
    ("int_hypokalemia_episodes", "episodes"),
    ("int_lab_flags", "flags"),
    ("int_result_corrections", "corrections"),
)


@dataclass
class Run:
    """Everything one run carries from step to step."""

    source: str
    input_dir: Path
    config: Config
    db_path: Path
    out_dir: Path
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    con: duckdb.DuckDBPyConnection | None = None
    inputs: list[ingest.InputFile] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=lambda: {"suites": []})
    timings: dict[str, float] = field(default_factory=dict)
    # incremental: load only new inbox files into the existing database, and publish dated
    # (OUT/<run date>/, OUT/latest, OUT/index.html) instead of replacing OUT.
    incremental: bool = False
    lock: RunLock | None = None

    @property
    def building_db(self) -> Path:
        return self.db_path.with_name(self.db_path.name + ".building")

    @property
    def run_name(self) -> str:
        return self.started_at[:10]

    @property
    def publish_dir(self) -> Path:
        return self.out_dir / self.run_name if self.incremental else self.out_dir

    @property
    def staging_dir(self) -> Path:
        target = self.publish_dir
        return target.with_name(f".{target.name}.partial-{os.getpid()}")


def timed(run: Run, name: str, started: float) -> None:
    """Record a step's wall seconds (manifest.json step_seconds)."""
    run.timings[name] = round(time.perf_counter() - started, 3)


def prepare(run: Run) -> Run:
    """Open a new database beside the published one and write the run's parameters into it."""
    if run.source not in SOURCES:
        raise InputError(f"--source {run.source!r}: expected one of {', '.join(SOURCES)}")
    run.db_path.parent.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run.db_path)
    lock.acquire()  # raises RunLocked (exit 2) while another run holds the database
    run.lock = lock
    for leftover in (run.building_db, Path(str(run.building_db) + ".wal")):
        leftover.unlink(missing_ok=True)  # a killed run's leftovers; the lock says none is running
    if run.incremental and run.db_path.exists():
        shutil.copy2(run.db_path, run.building_db)  # build aside from the last published database
    run.con = connect(run.building_db, run.config)
    create_parameter_tables(run.con, run.config)
    return run


def ingest_step(run: Run) -> Run:
    """Read the source files into raw tables, one text row per input row."""
    started = time.perf_counter()
    run.inputs = ingest.ingest(run.con, run.source, run.input_dir, run.config, run.incremental)
    for f in run.inputs:
        LOG.info("read %s: %s rows", f.path, f"{f.rows_read:,}")
    timed(run, "ingest", started)
    return run


def normalise_step(run: Run) -> Run:
    """Staging models: every row's fate; canonical units; the quarantine."""
    started = time.perf_counter()
    models.build_models(run.con, models.NORMALISE_MODELS)
    check_timestamp_columns(run.con)
    timed(run, "normalise", started)
    return run


def check_timestamp_columns(con: duckdb.DuckDBPyConnection) -> None:
    """A time column in which no value can be read is a format problem, not bad rows: stop (exit 2)."""
    checks = (
        ("stg_lab_rows", "collected_at", "collected_at_text", "an ISO 8601 date and time"),
        ("stg_medication_rows", "start_at", "start_at_text", "an ISO 8601 date (and time)"),
    )
    for table, column, text, what in checks:
        for source_file, first_row, first_text in con.execute(
            f"SELECT source_file, min(source_row), arg_min({text}, source_row) FROM {table} "
            f"WHERE {text} IS NOT NULL AND {text} <> '' GROUP BY source_file "
            f"HAVING count({column}) = 0"
        ).fetchall():
            raise InputError(
                f"{source_file}: column {column!r}: no value is {what} "
                f"(row {first_row}: {first_text!r}); nothing was loaded"
            )


def flag_step(run: Run) -> Run:
    """Flag abnormalities and find partner results in each window."""
    started = time.perf_counter()
    models.build_models(run.con, models.FLAG_MODELS)
    timed(run, "flag", started)
    return run


def analyse_step(run: Run) -> Run:
    """Marts, statistics, reference comparisons and small-cell suppression."""
    started = time.perf_counter()
    models.build_models(run.con, models.MART_MODELS)
    run.results = analyse.build_results(run.con, run.config)
    analyse.store_proportions(run.con, run.results)
    timed(run, "analyse", started)
    return run


def record_validation(run: Run, suite_result: dict[str, Any]) -> None:
    """Keep a suite's summary for validation.json; a blocking failure stops the run (exit 1)."""
    from pipelines.validate import blocking_failures

    run.validation["suites"].append(suite_result)
    blocking = blocking_failures(suite_result)
    if blocking:
        names = "; ".join(f"{e['id']} ({e['description']}; unexpected: {e['unexpected_count']})" for e in blocking)
        raise ValidationFailed(f"blocking expectation failed in suite {suite_result['suite']}: {names}")


def manifest(run: Run, finished_at: str) -> dict[str, Any]:
    accounting = analyse.rows(run.con, "SELECT * FROM mart_row_accounting ORDER BY input_table, source_file")
    by_file = {(a["input_table"], a["source_file"]): a for a in accounting}
    new = {f.sha256 for f in run.inputs}
    inputs = []
    for f in analyse.rows(run.con, "SELECT * FROM loaded_files ORDER BY loaded_at, path"):
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
    return {
        "source": run.source,
        "input_dir": str(run.input_dir),
        "inputs": inputs,
        "time_source": {"labs": TIME_SOURCE[run.source]},  # always a collection time, never result time
        "parameters": run.config.to_dict(),
        "versions": {
            "hypomag": version("hypomag"),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "great_expectations": version("great-expectations"),
            "prefect": version("prefect"),
        },
        "database": str(run.db_path),
        "incremental": run.incremental,
        "corrections": run.con.execute("SELECT count(*) FROM int_result_corrections").fetchone()[0],
        "started_at": run.started_at,
        "finished_at": finished_at,
        "step_seconds": run.timings,
    }


def write_outputs(run: Run) -> Run:
    """Write every output of the contract into the staging folder (nothing published yet)."""
    from reports.build import write_report

    started = time.perf_counter()
    stage = run.staging_dir
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "restricted").mkdir(parents=True)
    finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if run.incremental:
        run.results["history_flags"] = flag_history(run)
    man = manifest(run, finished_at)
    _write_json(stage / "results.json", run.results)
    _write_json(stage / "validation.json", run.validation)
    for table, name in RESTRICTED_OUTPUTS:
        run.con.execute(f"COPY (SELECT * FROM {table}) TO '{stage / 'restricted' / name}.parquet' (FORMAT parquet)")
    write_report(stage / "report.html", run.results, man, run.validation)
    timed(run, "report", started)  # man["step_seconds"] is run.timings: the manifest gets it too
    _write_json(stage / "manifest.json", man)
    return run


def flag_history(run: Run) -> list[dict[str, Any]]:
    """Headline rates outside the previous published run's 95% interval (logged as warnings)."""
    earlier = [res for name, res in published_runs(run.out_dir) if name < run.run_name] if run.out_dir.is_dir() else []
    flags = history_flags(earlier[-1] if earlier else None, run.results)
    for f in flags:
        LOG.warning("headline rate moved: %s = %.1f%%, outside the previous run's 95%% interval %.1f-%.1f%%",
                    f["measure"], 100 * f["rate"], 100 * f["previous_ci_low"], 100 * f["previous_ci_high"])
    return flags


def publish(run: Run) -> Path:
    """Swap in the new database and outputs by rename; the previous ones stay until then."""
    run.con.execute("CHECKPOINT")
    run.con.close()
    run.con = None
    os.replace(run.building_db, run.db_path)
    target = run.publish_dir
    target.parent.mkdir(parents=True, exist_ok=True)
    swap_in(run.staging_dir, target)
    if run.incremental:
        point_latest(run.out_dir, target.name)
        write_index(run.out_dir)
    if run.lock:
        run.lock.release()
    return target


def abandon(run: Run) -> None:
    """After a failure: drop what this run built; the published database and outputs stay.

    A run that never got the lock built nothing, and must not touch the `.building` file of the
    run that holds it.
    """
    if run.lock is None:
        return
    if run.con is not None:
        try:
            run.con.close()
        except duckdb.Error:
            pass
        run.con = None
    run.building_db.unlink(missing_ok=True)
    Path(str(run.building_db) + ".wal").unlink(missing_ok=True)
    shutil.rmtree(run.staging_dir, ignore_errors=True)
    if run.lock:
        run.lock.release()


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
