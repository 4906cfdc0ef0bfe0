"""Build the sql/ models on Spark for a run whose engine is `spark` (docs/spark.md).

The run's reader (pipelines/ingest) has filled the run's DuckDB with the raw tables, exactly as for the
DuckDB engine (its CSV rules, row numbers, quarantine of unreadable lines, identifier scans). The first
Spark step hands the models' inputs (raw, parameter and seed tables) to Spark as Parquet files in the
run's folder; each stage then builds its models on Spark, in models.BUILD_ORDER (tables checkpointed in
the executors' storage, views as temporary views), and collects every table back into the run's DuckDB
through Arrow, with the exact column types the DuckDB engine gives it (views are recreated over them). Validation, statistics, the report, the exports and the
restricted outputs then read the same tables as after a DuckDB build, so results.json is the same
document.
"""
from __future__ import annotations

import logging
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from pipelines import models
from pipelines.errors import ConfigError
from pipelines.spark import transpile
from pipelines.spark.session import get_session

LOG = logging.getLogger("hypomag")
PROGRESS = logging.getLogger("hypomag.progress")


@dataclass
class SparkBuild:
    """One run's Spark state: its session, the DuckDB types of inputs and models, the per-row parameter
    tables' rows and where the inputs were handed over."""

    session: Any
    schema: dict[str, dict[str, str]]
    per_row: dict[str, list[dict[str, Any]]]
    exchange_dir: Path
    checkpointed: dict[str, Any] = field(default_factory=dict)  # table -> its checkpointed DataFrame


_BUILDS: dict[str, SparkBuild] = {}


def build_stage(run: Any, names: tuple[str, ...]) -> None:
    """Build `names` on Spark and collect each into the run's DuckDB (what models.build_models does on
    DuckDB). The first stage of a run opens the session and hands over the inputs."""
    if run.spec.incremental:
        raise ConfigError("engine 'spark': the nightly inbox (--incremental, serve) runs on DuckDB only; "
                          "use --engine duckdb")
    build = _BUILDS.get(run.run_id) or _start(run)
    for name in names:
        started = time.perf_counter()
        PROGRESS.info("model %s", models.table_name(name))
        rows = _build_model(build, run.con, name)
        if rows is not None:
            LOG.info("model %s: %s rows in %.1f s (spark)", models.table_name(name), f"{rows:,}",
                     time.perf_counter() - started)
    if names and names[-1] == models.BUILD_ORDER[-1]:
        finish(run)


def finish(run: Any) -> None:
    """Drop the run's checkpointed tables and its handed-over inputs (the run's DuckDB holds every model)."""
    build = _BUILDS.pop(run.run_id, None)
    if build is None:
        return
    try:
        for frame in build.checkpointed.values():
            frame.unpersist()
        for view in build.session.catalog.listTables():
            if view.isTemporary:
                build.session.catalog.dropTempView(view.name)
    except Exception:  # noqa: BLE001 - a session already stopped
        pass
    shutil.rmtree(build.exchange_dir, ignore_errors=True)


def _start(run: Any) -> SparkBuild:
    engine = run.config.engine
    session = get_session(engine.spark_master, dict(engine.spark_settings))
    session.catalog.clearCache()
    exchange = Path(run.run_dir) / "spark"
    exchange.mkdir(mode=0o700, exist_ok=True)
    schema = input_schema(run.con)
    build = SparkBuild(session=session, schema={**schema, **model_schema(schema)},
                       per_row={t: _rows(run.con, t) for t in transpile.PER_ROW_TABLES},
                       exchange_dir=exchange)
    for table in sorted(schema):
        path = exchange / f"{table}.parquet"
        with run.con.cursor() as cursor:  # the path is an argument, never SQL text
            cursor.table(table).write_parquet(str(path))
        session.read.parquet(str(path)).createOrReplaceTempView(table)
    _BUILDS[run.run_id] = build
    return build


def input_schema(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    """DuckDB column types of the models' input tables (raw, parameter and seed tables)."""
    return _columns(con, sorted(transpile.input_tables()))


def _columns(con: duckdb.DuckDBPyConnection, tables: list[str]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {t: {} for t in tables}
    for table, column, data_type in con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'main' AND list_contains(?, table_name) ORDER BY table_name, ordinal_position",
        [tables],
    ).fetchall():
        found[table][column] = data_type
    missing = [t for t, cols in found.items() if not cols]
    if missing:
        raise RuntimeError(f"spark engine: input table(s) {', '.join(missing)} not in the run's database")
    return found


def model_schema(inputs: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Every model's DuckDB column types: the models built on empty copies of the inputs in a scratch
    in-memory DuckDB (instant), so the collected tables get exactly the DuckDB engine's types."""
    con = duckdb.connect()
    try:
        for table, columns in inputs.items():
            con.execute(f'CREATE TABLE "{table}" (' + ", ".join(f'"{c}" {t}' for c, t in columns.items()) + ")")
        for name in models.BUILD_ORDER:
            kind = "VIEW" if name in models.VIEWS else "TABLE"
            con.execute(f"CREATE {kind} {models.table_name(name)} AS {models.model_sql(name)}")
        return _columns(con, [models.table_name(n) for n in models.BUILD_ORDER])
    finally:
        con.close()


def _rows(con: duckdb.DuckDBPyConnection, table: str) -> list[dict[str, Any]]:
    cur = con.execute(f"SELECT * FROM {table} ORDER BY 1")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _build_model(build: SparkBuild, con: duckdb.DuckDBPyConnection, name: str) -> int | None:
    """One model on Spark, then its DuckDB copy: a table collected through Arrow (its row count
    returned), or for VIEWS the same view over the collected tables (None)."""
    table = models.table_name(name)
    sql = transpile.spark_sql(name, build.schema, build.per_row)
    try:
        frame = build.session.sql(sql)
        if name not in models.VIEWS:
            # materialised in the executors' storage, its lineage cut: readers plan from this table,
            # not from every model before it (CACHE TABLE's view is re-planned from its text)
            frame = frame.localCheckpoint(eager=True)
            build.checkpointed[table] = frame
        frame.createOrReplaceTempView(table)
    except Exception as exc:  # pyspark's errors: AnalysisException, Py4JJavaError, SparkConnectException...
        raise RuntimeError(f"model {name}.sql failed on Spark: {_first_line(exc)}") from exc
    if name in models.VIEWS:
        con.execute(f"CREATE OR REPLACE VIEW {table} AS {models.model_sql(name)}")
        return None
    return collect(build, con, table)


def collect(build: SparkBuild, con: duckdb.DuckDBPyConnection, table: str) -> int:
    """Spark table -> the run's DuckDB table of the same name and the DuckDB engine's column types."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyspark's notice about pandas 3 (Arrow needs no pandas here)
        arrow = build.session.table(f"`{table}`").toArrow()
    types = build.schema[table]
    if list(arrow.column_names) != list(types):
        raise RuntimeError(f"model {table}: Spark gave columns {arrow.column_names}, DuckDB's are {list(types)}")
    view = f"_spark_{table}"
    con.register(view, arrow)
    try:
        columns = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in types.items())
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT {columns} FROM {view}")
    finally:
        con.unregister(view)
    return arrow.num_rows


def _first_line(exc: BaseException) -> str:
    """The first line of a Spark error (a Py4J error's Java message, not its "error calling o41.sql")."""
    java = getattr(exc, "java_exception", None)
    text = str(java.getMessage() if java is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
