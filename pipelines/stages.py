"""The stages of a run, in order: the one table that the Prefect flow (pipelines/flows.py) and
`hypomag validate` both follow.

Each stage is a step of pipelines/steps.py, followed by the Great Expectations suites whose
`meta.stage` names the stage (expectations/*.json), or by none. A run prepares, goes through the
table, then writes its outputs and publishes them; `hypomag validate` goes through the same table
up to the last validation, in a temporary database, and publishes nothing.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from pipelines import models, steps
from pipelines.run_spec import RunSpec
from pipelines.steps import Run
from pipelines.validate import blocking_failures, warm_up


@dataclass(frozen=True)
class Stage:
    """One step of a run and the validation stage (suites' meta.stage) that checks what it built."""

    name: str
    step: Callable[[Run], Run]
    validation: str | None


STAGES: tuple[Stage, ...] = (
    Stage("ingest", steps.ingest_step, validation="ingest"),  # the raw input tables as read
    Stage("normalise", steps.normalise_step, validation="normalise"),  # every row's fate, canonical units
    Stage("flag", steps.flag_step, validation=None),  # abnormality flags, partner windows
    Stage("analyse", steps.analyse_step, validation="analyse"),  # the marts' invariants and rates
)


# The models each stage builds, named in its console line.
STAGE_MODELS: dict[str, tuple[str, ...]] = {
    "normalise": models.NORMALISE_MODELS,
    "flag": models.FLAG_MODELS,
    "analyse": models.MART_MODELS,
}


def step_line(run: Run, name: str) -> str:
    """What a finished step of the flow did, in figures, for its console line (the flow adds seconds).

    `name` is a task's name: prepare, a stage, validate_<stage>, report or publish. The figures are
    exact (the console is the operator's); the shared outputs suppress small cells.
    """
    if name == "prepare":
        return f"run {run.run_id}"
    if name == "ingest":
        files = f"{len(run.inputs)} new file(s)" if run.spec.incremental else f"{len(run.inputs)} file(s)"
        return f"{files}, {sum(f.rows_read for f in run.inputs):,} rows read"
    if name.startswith("validate_"):
        return _validation_line(run, name.removeprefix("validate_"))
    if name in STAGE_MODELS:
        built = f"{len(STAGE_MODELS[name])} models built"
        if name != "normalise":
            return built
        loaded, quarantined = _rows(run, "int_lab_results"), _rows(run, "int_quarantine")
        return f"{loaded:,} lab results, {quarantined:,} rows quarantined; {built}"
    if name == "report":
        return f"outputs written in {run.staging_dir}"
    if name == "publish":
        return f"published to {run.publish_dir}"
    return "done"


def _rows(run: Run, table: str) -> int:
    return run.con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _validation_line(run: Run, stage: str) -> str:
    """A validation stage's expectations: how many ran, passed and warned."""
    checked = [e for s in run.validation["suites"] if s.get("stage") == stage for e in s["expectations"]]
    warned = sum(not e["success"] and not e["blocking"] for e in checked)
    passed = sum(bool(e["success"]) for e in checked)
    return f"{len(checked)} expectations, {passed} passed, {warned} warning(s)"


def validation_stages() -> tuple[str, ...]:
    """The validation stages in run order: every suite's meta.stage is one of them."""
    return tuple(s.validation for s in STAGES if s.validation)


def validate_only(spec: RunSpec) -> dict[str, Any]:
    """`hypomag validate`: the run's stages up to the last validation, in a temporary database.

    Publishes nothing and writes no outputs. Stops after the first validation stage with a
    blocking failure (later stages would check broken data); returns validation.json's content.
    """
    last = max(i for i, s in enumerate(STAGES) if s.validation)
    warm_up()  # GX imports in a thread while prepare and ingest run
    with tempfile.TemporaryDirectory(prefix="hypomag-validate-") as tmp:
        scratch = replace(spec, db_path=Path(tmp) / "validate.duckdb", out_dir=Path(tmp) / "out", incremental=False)
        run = Run.start(scratch)
        run.writes_outputs = False
        try:
            steps.prepare(run)
            for stage in STAGES[:last + 1]:
                stage.step(run)
                if stage.validation:
                    summaries = steps.check_stage(run, stage.validation)
                    if any(blocking_failures(s) for s in summaries):
                        break
        finally:
            steps.abandon(run)
    return run.validation
