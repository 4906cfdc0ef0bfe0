"""The Spark engine (`hypomag run --engine spark`, docs/spark.md): the same sql/ models, transpiled by the
pinned sqlglot to Spark SQL and executed on a SparkSession.

pyspark is an optional extra (`hypomag[spark]`): nothing here imports it at module level, so the base
install and the DuckDB engine never load it.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from pipelines import models
from pipelines.config import ENGINE_ENV, ENGINE_NAMES
from pipelines.errors import ConfigError


def selected_engine(run: Any) -> str:
    """The engine of `run`: HYPOMAG_ENGINE (set by --engine) or the config's `[engine] name`. An override
    is written into run.config, so results.json and manifest.json name the engine that ran."""
    name = os.environ.get(ENGINE_ENV) or run.config.engine.name
    if name not in ENGINE_NAMES:
        raise ConfigError(f"--engine {name!r}: expected one of {', '.join(ENGINE_NAMES)}")
    if name != run.config.engine.name:
        run.config = dataclasses.replace(run.config, engine=dataclasses.replace(run.config.engine, name=name))
    return name


def build_models(run: Any, names: tuple[str, ...]) -> None:
    """Build `names` on the run's engine: DuckDB (pipelines/models.py) or Spark (pipelines/spark/engine.py,
    which collects every model into the run's DuckDB, so everything after reads the same tables)."""
    if selected_engine(run) == "spark":
        from pipelines.spark import engine  # deferred: sqlglot's optimizer and pyspark only for a Spark run

        engine.build_stage(run, names)
    else:
        models.build_models(run.con, names)
