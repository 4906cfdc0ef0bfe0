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
from collections import deque
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect's client telemetry is off too (and with it its first-run notice, printed through the console)
os.environ.setdefault("DO_NOT_TRACK", "1")
# the pipeline's own log lines (each model's rows and seconds, warnings) go where Prefect's go
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "hypomag")
# hypomag's log lines outside a flow run (hypomag validate, tests) stay local, without Prefect's warning
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
# A fresh machine's first temporary API migrates its database; give it time (default 20 s).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.states import Completed, Failed  # noqa: E402

from pipelines import notify, steps  # noqa: E402
from pipelines.errors import HypomagError, classify  # noqa: E402
from pipelines.publish import pause_point  # noqa: E402
from pipelines.run_spec import RunSpec  # noqa: E402
from pipelines.stages import STAGES, step_line  # noqa: E402
from pipelines.steps import Run  # noqa: E402
from pipelines.validate import warm_up  # noqa: E402

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


DEBUG_ENV = "HYPOMAG_DEBUG"  # set by `hypomag --debug`; served flow runs inherit it


class _OneLineUserErrors(logging.Filter):
    """A user error (HypomagError) is logged once, as its one line, without the traceback Prefect
    attaches (the failed task's record; the engine's second record of the same exception is dropped),
    unless `hypomag --debug` set HYPOMAG_DEBUG. Installed in the process that runs the flow: the
    CLI's, or the served deployment's flow-run process."""

    _logged: deque = deque(maxlen=32)  # user errors already logged (the same object, re-raised)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or os.environ.get(DEBUG_ENV) or not _is_user_error(exc):
            return True
        if any(exc is seen for seen in self._logged):
            return False  # a later record of an error already logged (every handler agrees)
        self._logged.append(exc)
        record.exc_info = None
        record.exc_text = None
        return True


def _is_user_error(exc: BaseException) -> bool:
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, HypomagError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def one_line_user_errors() -> None:
    """Put the filter on every handler of the root and Prefect loggers (a filter on a handler sees
    the records that propagate to it; Prefect's API log handler included)."""
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
                                       if name.startswith("prefect")]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, _OneLineUserErrors) for f in handler.filters):
                handler.addFilter(_OneLineUserErrors())


def _run_stages(run: Run) -> Path:
    """prepare, each stage with its validation, report, publish; returns the published folder."""
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
    return Path(_step("publish", publish, run))


def rejected_message(run: Run) -> str:
    """The Completed state's message of a run that published with rejected files (names them)."""
    return "published; some inputs rejected: " + "; ".join(r.line() for r in run.rejected)


@flow(name="hypomag-pipeline", validate_parameters=False, log_prints=True)
def hypomag_pipeline(
    source: str = DEFAULTS["source"],
    input_dir: str = DEFAULTS["input_dir"],
    config_path: str | None = DEFAULTS["config_path"],
    db_path: str = DEFAULTS["db_path"],
    out_dir: str = DEFAULTS["out_dir"],
    incremental: bool = DEFAULTS["incremental"],
):
    """One full run of the run specification these parameters make (pipelines/run_spec.py);
    returns the folder the outputs were published to.

    The flow run ends Completed, with a message naming the rejected files when the inbox refused
    some (the CLI exits 3), or Failed with the error's one line (a user error: no traceback). A
    failed incremental run is recorded under OUT/failed/ and on the history page; every run
    leaves its Prefect artifacts and events (pipelines/notify.py).
    """
    one_line_user_errors()
    warm_up()  # GX imports in a thread while prepare and ingest run (a served run has no CLI to start it)
    spec = RunSpec(source=source, input_dir=input_dir, config_path=config_path, db_path=db_path, out_dir=out_dir,
                   incremental=incremental)
    run = Run.start(spec)
    try:
        published = _run_stages(run)
    except Exception as exc:
        _code, reason = classify(exc)
        try:
            steps.record_failure(run, reason)
        except OSError as failure:
            LOG.warning("could not record the failed run under %s: %s", spec.out_dir, failure)
        finally:
            steps.abandon(run)
        notify.run_failed(run, reason)
        if not _is_user_error(exc):
            raise
        LOG.debug("traceback of: %s", reason, exc_info=exc)
        return Failed(message=reason, data=exc)
    except BaseException:
        steps.abandon(run)
        raise
    notify.run_published(run, published)
    if run.rejected:
        return Completed(message=rejected_message(run), data=str(published))
    return str(published)
