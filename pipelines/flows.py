"""The pipeline as a Prefect flow: it reads as the table of contents of a run.

prepare -> each stage of pipelines/stages.py (ingest, validate, normalise, validate, flag, analyse,
validate) -> report -> publish.
Each task is a thin wrapper over a step in pipelines/steps.py; the flow only orchestrates. Its
parameters are the fields of the run specification (pipelines/run_spec.py).
With no Prefect server configured, running the flow starts Prefect's temporary local API in
process (no server to start by hand).
"""
from __future__ import annotations

import errno
import logging
import os
import time
from typing import Any, Callable

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect's client telemetry is off too (and with it its first-run notice, printed through the console)
os.environ.setdefault("DO_NOT_TRACK", "1")
# the pipeline's own log lines (each model's rows and seconds, warnings) go where Prefect's go
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "hypomag")
# A fresh machine's first temporary API migrates its database; give it time (default 20 s).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from pipelines import steps  # noqa: E402
from pipelines.errors import HypomagError  # noqa: E402
from pipelines.publish import pause_point  # noqa: E402
from pipelines.run_spec import RunSpec  # noqa: E402
from pipelines.stages import STAGES, step_line  # noqa: E402
from pipelines.steps import Run  # noqa: E402

LOG = logging.getLogger("hypomag")
LOG.setLevel(logging.INFO)
# The step under way, for the console's progress display (pipelines/cli.py); not a log line.
PROGRESS = logging.getLogger("hypomag.progress")

# The run object carries an open DuckDB connection: tasks are never cached or persisted.
TASK_DEFAULTS = {"cache_policy": NO_CACHE, "persist_result": False}
step = task(**TASK_DEFAULTS)


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


# Task options beyond `step` by stage name: ingest reads files, retried with backoff on transient I/O errors.
TASK_OPTIONS = {"ingest": {"retries": 3, "retry_delay_seconds": [2, 10, 30], "retry_condition_fn": _transient}}
# One task per stage of the table, named after it (the step's docstring says what it does).
STAGE_TASKS = {s.name: task(s.step, name=s.name, **TASK_DEFAULTS, **TASK_OPTIONS.get(s.name, {})) for s in STAGES}


@task(**TASK_DEFAULTS, task_run_name="validate_{stage}")
def validate(run: Run, stage: str) -> Run:
    """Great Expectations on what the stage built; a blocking failure stops the run."""
    return steps.validate_step(run, stage)


@step
def report(run: Run) -> Run:
    """results.json, manifest.json, validation.json, report.html and restricted/ (not yet published)."""
    return steps.write_outputs(run)


@step
def publish(run: Run) -> str:
    """Publish the new database and outputs together: one rename of the store's `current` link."""
    return str(steps.publish(run))


def _step(name: str, task_fn: Callable[..., Any], run: Run, *args: Any) -> Any:
    """Run one task, telling the console the step under way and then one line of what it did, in seconds."""
    PROGRESS.info("%s", name, extra={"step": name})
    started = time.perf_counter()
    result = task_fn(run, *args)
    after = result if isinstance(result, Run) else run  # publish returns the published folder
    LOG.info("%s: %s in %.1f s", name, step_line(after, name), time.perf_counter() - started)
    PROGRESS.info("%s done", name, extra={"step": ""})
    return result


DEFAULTS = RunSpec().to_params()


@flow(name="hypomag-pipeline", validate_parameters=False, log_prints=True)
def hypomag_pipeline(
    source: str = DEFAULTS["source"],
    input_dir: str = DEFAULTS["input_dir"],
    config_path: str | None = DEFAULTS["config_path"],
    db_path: str = DEFAULTS["db_path"],
    out_dir: str = DEFAULTS["out_dir"],
    incremental: bool = DEFAULTS["incremental"],
) -> str:
    """One full run of the run specification these parameters make (pipelines/run_spec.py);
    returns the folder the outputs were published to."""
    spec = RunSpec(source=source, input_dir=input_dir, config_path=config_path, db_path=db_path, out_dir=out_dir,
                   incremental=incremental)
    run = Run.start(spec)
    try:
        run = _step("prepare", prepare, run)
        for stage in STAGES:
            pause_point(stage.name)  # a test hook (HYPOMAG_TEST_PAUSE_AT); nothing otherwise
            run = _step(stage.name, STAGE_TASKS[stage.name], run)
            if stage.validation:
                pause_point(f"validate_{stage.validation}")
                run = _step(f"validate_{stage.validation}", validate, run, stage.validation)
        pause_point("report")
        run = _step("report", report, run)
        pause_point("publish")
        return _step("publish", publish, run)
    except BaseException:
        steps.abandon(run)
        raise
