"""The pipeline as a Prefect flow: it reads as the table of contents of a run.

prepare -> ingest -> validate -> normalise -> validate -> flag -> analyse -> validate marts -> report
-> publish.
Each task is a thin wrapper over a step in pipelines/steps.py; the flow only orchestrates.
With no Prefect server configured, running the flow starts Prefect's temporary local API in
process (no server to start by hand).
"""
from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# the pipeline's own log lines (each model's rows and seconds, warnings) go where Prefect's go
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "hypomag")
# A fresh machine's first temporary API migrates its database; give it time (default 20 s).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from pipelines import steps, validate  # noqa: E402
from pipelines.config import Config, load_config  # noqa: E402
from pipelines.errors import HypomagError  # noqa: E402
from pipelines.publish import pause_point  # noqa: E402
from pipelines.steps import Run  # noqa: E402

logging.getLogger("hypomag").setLevel(logging.INFO)

# The run object carries an open DuckDB connection: tasks are never cached or persisted.
step = task(cache_policy=NO_CACHE, persist_result=False)


@step
def prepare(run: Run) -> Run:
    """Open a database beside the published one and write the run's parameters."""
    return steps.prepare(run)


# Environment errors that waiting does not cure: report them at once (exit 2).
PERMANENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR,
                    errno.ENAMETOOLONG, errno.ELOOP}


def _transient(task, task_run, state) -> bool:
    """Retry I/O hiccups (a share that blinks), never data, usage or permanent environment errors."""
    try:
        state.result()
    except HypomagError:
        return False
    except OSError as exc:
        return exc.errno not in PERMANENT_ERRNOS
    except Exception:  # noqa: BLE001
        return False
    return False


@step(retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=_transient)
def ingest(run: Run) -> Run:
    """Read the source files into raw text tables (retried with backoff on transient I/O errors)."""
    return steps.ingest_step(run)


@step
def validate_raw(run: Run) -> Run:
    """Great Expectations on the raw input tables."""
    return validate.validate_raw(run)


@step
def normalise(run: Run) -> Run:
    """Every row's fate, canonical units, quarantine."""
    return steps.normalise_step(run)


@step
def validate_normalised(run: Run) -> Run:
    """Great Expectations on the normalised results and the row accounting."""
    return validate.validate_normalised(run)


@step
def flag(run: Run) -> Run:
    """Abnormality flags and partner windows."""
    return steps.flag_step(run)


@step
def analyse(run: Run) -> Run:
    """Marts and statistics."""
    return steps.analyse_step(run)


@step
def validate_marts(run: Run) -> Run:
    """Great Expectations on the marts' invariants."""
    return validate.validate_marts(run)


@step
def report(run: Run) -> Run:
    """results.json, manifest.json, validation.json, report.html and restricted/ (not yet published)."""
    return steps.write_outputs(run)


@step
def publish(run: Run) -> str:
    """Publish the new database and outputs together: one rename of the store's `current` link."""
    return str(steps.publish(run))


@flow(name="hypomag-pipeline", validate_parameters=False, log_prints=True)
def hypomag_pipeline(
    source: str = "generic",
    input_dir: str = "data_samples",
    config_path: str | None = None,
    db_path: str = "out/hypomag.duckdb",
    out_dir: str = "out/run",
    incremental: bool = False,
) -> str:
    """One full run; returns the folder the outputs were published to.

    incremental: load only new extracts from the inbox `input_dir` into the existing database and
    publish to `out_dir`/<run date>/ with `latest` and `index.html` (the nightly job).
    """
    config: Config = load_config(config_path)
    run = Run(source=source, input_dir=Path(input_dir), config=config,
              db_path=Path(db_path), out_dir=Path(out_dir), incremental=incremental)
    try:
        run = prepare(run)
        for step_task in (ingest, validate_raw, normalise, validate_normalised, flag, analyse, validate_marts, report):
            pause_point(step_task.name)  # a test hook (HYPOMAG_TEST_PAUSE_AT); nothing otherwise
            run = step_task(run)
        pause_point("publish")
        return publish(run)
    except BaseException:
        steps.abandon(run)
        raise
