"""Validate: the Great Expectations suites of expectations/*.json, executed as SQL inside DuckDB.

This module is the suite runner and its GX adapter only: which suites run after which step is the
stage table's (pipelines/stages.py). Each suite names its table and stage in its `meta` (the step
it checks: ingest, normalise, analyse); each expectation is marked blocking or warning in its own
`meta` (overridable with validation.make_blocking / make_warning). GX runs through its own SQL
execution engine on the run's own DuckDB connection (the same session the steps build the tables
in: nothing is checkpointed, closed or reopened for validation, and temporary tables are visible),
so every check is a SQL query inside DuckDB and no table is copied into pandas.

The adapter (why this module has an execution engine of its own): GX 1.24's
`SqlAlchemyExecutionEngine.execute_query` returns a cursor result after its connection context
has closed; duckdb-engine's rollback on close discards DuckDB's pending result, so every metric
fails with "list index out of range" and every expectation is reported as failed, silently (GX
issues #10738 and #11579; a native DuckDB engine is only an open PR, #12084). `_BufferedEngine`
buffers the rows with SQLAlchemy's `Result.freeze()` while the connection is still open and
hands GX an equivalent result; nothing else in GX changes, so the expectations keep GX's own
semantics. It is pinned to the GX version it was tested on (tests/test_validate.py). The datasource
borrows the run's connection through SQLAlchemy (a one-connection pool whose close leaves it open);
GX's reads run in the run's own transaction (GX only reads; the lent connection ignores its
begin, commit and rollback).
"""
from __future__ import annotations

import json
import threading
import warnings
from functools import lru_cache
from importlib.metadata import version
from itertools import count
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional, Type

from pipelines.paths import EXPECTATIONS_DIR

TESTED_GX = "1.24"
# Examples in validation.json are row numbers, reasons and counts: only these columns are shown.
# Everything else (patient_id, encounter_id, specimen_id, result_id, collected_at, start_at, stop_at,
# care_unit, drug, route, value text, values) can identify a patient or a record and never is.
EXAMPLE_COLUMNS = {"source_file", "source_row", "row_in_file", "line_number", "input_table", "reason", "status",
                   "analyte", "unit"}
# count columns of the aggregate checks (rows per file, quarantined rows, ...), shown when whole numbers
EXAMPLE_COUNT_COLUMNS = {"rows", "rows_read", "rows_loaded", "rows_out_of_scope", "rows_quarantined",
                         "rows_superseded", "rows_malformed", "quarantined", "in_scope", "out_of_scope",
                         "malformed", "n", "count", "unexpected_count"}
EXAMPLES = 3
_names = count()


def load_suites(stage: str | None = None) -> list[dict[str, Any]]:
    """The suite documents of expectations/, optionally only one stage's (a stage with none is a mistake)."""
    suites = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(EXPECTATIONS_DIR.glob("*.json"))]
    chosen = [s for s in suites if stage is None or s["meta"]["stage"] == stage]
    if stage is not None and not chosen:
        raise ValueError(f"no expectation suite has meta.stage {stage!r}")
    return chosen


def _gx():
    """GX, its ephemeral context and the DuckDB datasource class, once per process (see _load_gx);
    waits for a warm-up under way instead of importing a second time."""
    warming = _WARMING[0]
    if warming is not None:
        warming.join()
    return _load_gx()


@lru_cache(maxsize=1)
def _load_gx():
    """Import GX (2.5-5 s of one core) and define the DuckDB adapter."""
    # GX imports PySpark when it is installed (the Spark engine's dependency), and PySpark warns about
    # the pandas version on import: nothing a DuckDB run's user can act on, so not on their console
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    import great_expectations as gx
    from great_expectations.datasource.fluent import SQLDatasource
    from great_expectations.execution_engine import SqlAlchemyExecutionEngine

    installed = version("great-expectations")
    if not installed.startswith(TESTED_GX + "."):
        raise RuntimeError(
            f"great-expectations {installed} is installed; the DuckDB adapter in pipelines/validate.py "
            f"was tested on {TESTED_GX}.x only (see pyproject.toml)"
        )

    class _BufferedEngine(SqlAlchemyExecutionEngine):
        """Fetch each query's rows while the connection is open (GX #10738/#11579 on DuckDB)."""

        def execute_query(self, query):  # type: ignore[override]
            with self.get_connection() as connection:
                result = self._execute_query_with_recovery(connection, query)
                frozen = result.freeze()
            return frozen()

    class HypomagDuckDBDatasource(SQLDatasource):
        """GX's SQL datasource on DuckDB, with the buffered execution engine: on a DuckDB file
        (connection_string duckdb:///path), or on an open connection lent by run_suites (BORROWED)."""

        type: Literal["hypomag_duckdb"] = "hypomag_duckdb"
        execution_engine_override: ClassVar[Optional[Type[SqlAlchemyExecutionEngine]]] = _BufferedEngine

        def _create_engine(self):  # type: ignore[override]
            if self.name in BORROWED:
                return _borrowing_engine(BORROWED[self.name])
            return super()._create_engine()

        def get_execution_engine(self):  # type: ignore[override]
            if self.name in BORROWED:  # GX would build a second engine from the connection string
                if self._execution_engine is None:
                    # the datasource's create_temp_table (False): without it the engine copies every
                    # validated table into a temporary table first (20 s of 25 s at 10M rows)
                    self._execution_engine = _BufferedEngine(engine=self.get_engine(),
                                                             create_temp_table=self.create_temp_table)
                return self._execution_engine
            return super().get_execution_engine()

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    return gx, context, HypomagDuckDBDatasource


# datasource name -> the open DuckDB connection it validates (set by run_suites for one call)
BORROWED: dict[str, Any] = {}


def _borrowing_engine(con):
    """A SQLAlchemy engine whose one connection is `con` itself (duckdb-engine's wrapper), never closed
    by SQLAlchemy: GX queries the run's session, and the run keeps using it afterwards."""
    import sqlalchemy as sa  # deferred with GX (_gx)
    from duckdb_engine import ConnectionWrapper

    class Lent(ConnectionWrapper):
        """The run owns the connection and its transaction (a nightly run's spans the whole run): GX only
        reads, so its begin, commit, rollback and close leave both as they are."""

        def close(self) -> None:
            pass

        def begin(self) -> None:
            pass

        def commit(self) -> None:
            pass

        def rollback(self) -> None:
            pass

    engine = sa.create_engine("duckdb:///:memory:", creator=lambda: Lent(con), poolclass=sa.pool.StaticPool)
    _reflect_from_duckdb(engine.dialect, con)
    return engine


# DuckDB type names -> SQLAlchemy types, for GX's column metadata (names beyond these: NullType)
_SA_TYPES = {"VARCHAR": "String", "BIGINT": "BigInteger", "INTEGER": "Integer", "HUGEINT": "BigInteger",
             "DOUBLE": "Float", "FLOAT": "Float", "BOOLEAN": "Boolean", "TIMESTAMP": "DateTime", "DATE": "Date"}


def _reflect_from_duckdb(dialect, con) -> None:
    """Table reflection for GX's column metadata from DuckDB's own catalog. duckdb-engine inherits
    PostgreSQL's reflection queries, which fail on DuckDB 2 (pg_collation, REGCLASS); GX falls back,
    but a failed statement aborts the open transaction of a nightly run (pipelines/incremental.py),
    so the queries are never sent."""
    import sqlalchemy as sa

    def get_columns(connection, table_name, schema=None, **kw):
        found = con.execute(
            "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
            "WHERE table_catalog = current_database() AND table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position", [schema or "main", table_name]).fetchall()
        return [{"name": name, "type": getattr(sa.types, _SA_TYPES.get(kind, "NullType"))(), "nullable": nullable,
                 "default": None} for name, kind, nullable in found]

    def get_pk_constraint(connection, table_name, schema=None, **kw):
        return {"constrained_columns": [], "name": None}  # hypomag's tables declare no keys

    dialect.get_columns = get_columns
    dialect.get_pk_constraint = get_pk_constraint


# the warm-up thread while it imports GX (warm_up), else None
_WARMING: list[threading.Thread | None] = [None]


def warm_up() -> None:
    """Start importing GX and building its context in a thread, and return at once.

    A run calls this before its flow starts: the import (2.5-5 s of Python) then proceeds while the
    main thread waits for Prefect's API, for the flow's API calls and for DuckDB (which all release
    the GIL), instead of after them. The first validation waits for it (_gx); an error is not
    raised here but by that validation's own import, where it is reported as usual.
    """
    if _WARMING[0] is not None or _load_gx.cache_info().currsize:
        return

    def load() -> None:
        try:
            _load_gx()
        except BaseException:  # noqa: BLE001 - the validation's own _gx() call raises it again
            pass

    thread = threading.Thread(target=load, name="hypomag-gx-import", daemon=True)
    _WARMING[0] = thread
    thread.start()


def is_blocking(expectation: dict[str, Any], config) -> bool:
    """An expectation blocks when its suite says so, unless the config's validation.make_warning /
    make_blocking lists its id (the run's validation and the inbox's file checks both ask here)."""
    ident = expectation["meta"]["id"]
    if ident in config.validation.make_blocking:
        return True
    if ident in config.validation.make_warning:
        return False
    return bool(expectation["meta"].get("blocking", False))


def _examples(engine, suite: dict, expectation: dict, result: dict) -> list:
    """A few examples of a failed expectation: row numbers, reasons and counts, never values that identify.

    Rows of an unexpected-rows query keep only EXAMPLE_COLUMNS (and whole-number counts); a column
    expectation shows its unexpected values only for a column of EXAMPLE_COLUMNS.
    """
    kwargs = expectation["kwargs"]
    if expectation["type"] == "unexpected_rows_expectation":
        import sqlalchemy as sa  # deferred with GX (_gx): a run that validates nothing never loads them

        query = kwargs["unexpected_rows_query"].replace("{batch}", suite["meta"]["table"])
        rows = engine.execute_query(sa.text(f"SELECT * FROM ({query}) AS unexpected LIMIT {EXAMPLES}"))
        examples = [_safe_example(dict(r._mapping)) for r in rows.fetchall()]
        return [e for e in examples if e]
    columns = {kwargs.get("column"), *kwargs.get("column_list", []), kwargs.get("column_A"), kwargs.get("column_B")}
    columns.discard(None)
    if not columns or not columns <= EXAMPLE_COLUMNS:
        return []
    return [str(v) for v in (result.get("partial_unexpected_list") or [])[:EXAMPLES]]


def _safe_example(row: dict[str, Any]) -> dict[str, Any]:
    """The whitelisted columns of one unexpected row, as text (counts as whole numbers)."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if name in EXAMPLE_COLUMNS:
            out[name] = None if value is None else str(value)
        elif name in EXAMPLE_COUNT_COLUMNS and isinstance(value, int) and not isinstance(value, bool):
            out[name] = value
    return out


def run_suites(db, stage: str, config) -> list[dict[str, Any]]:
    """Run one stage's suites and summarise them.

    `db` is the run's open DuckDB connection (the run's own session, its limits already set), or a
    DuckDB file that no other connection holds (tests, benchmarks), opened with the config's limits
    so that large tables spill instead of growing.
    """
    if isinstance(db, (str, Path)):
        import duckdb  # deferred: only a file needs a connection of its own

        con = duckdb.connect(str(db), config={"memory_limit": config.engine.memory_limit,
                                              "threads": config.engine.threads})
        try:
            return run_suites(con, stage, config)
        finally:
            con.close()
    gx, context, _ = _gx()
    summaries = []
    name = f"hypomag_{next(_names)}"
    BORROWED[name] = db
    try:
        datasource = context.data_sources.add_hypomag_duckdb(name=name, connection_string="duckdb:///:memory:")
    except BaseException:
        BORROWED.pop(name, None)
        raise
    engine = datasource.get_execution_engine()
    try:
        for suite_doc in load_suites(stage):
            table = suite_doc["meta"]["table"]
            asset = datasource.add_table_asset(name=suite_doc["name"], table_name=table)
            batch = asset.add_batch_definition_whole_table("whole_table").get_batch()
            suite = gx.ExpectationSuite(
                name=suite_doc["name"],
                expectations=[{"type": e["type"], "kwargs": e["kwargs"], "meta": e["meta"]}
                              for e in suite_doc["expectations"]],
                meta=suite_doc["meta"],
            )
            outcome = batch.validate(suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20})
            by_id = {r.expectation_config.meta["id"]: r for r in outcome.results}
            rows = []
            for e in suite_doc["expectations"]:
                r = by_id[e["meta"]["id"]]
                result = r.result or {}
                error = (r.exception_info or {}).get("exception_message") if r.exception_info else None
                unexpected = result.get("unexpected_count")
                if e["type"] == "unexpected_rows_expectation":
                    unexpected = result.get("observed_value")
                kw = e["kwargs"]
                rows.append({
                    "id": e["meta"]["id"],
                    "expectation": e["type"],
                    "description": e["meta"].get("description", ""),
                    "column": kw.get("column") or ",".join(kw.get("column_list", [])) or
                    ",".join(c for c in (kw.get("column_A"), kw.get("column_B")) if c) or None,
                    "success": bool(r.success),
                    "blocking": is_blocking(e, config),
                    "unexpected_count": unexpected,
                    "examples": [] if r.success else _examples(engine, suite_doc, e, result),
                    "error": error,
                })
            summaries.append({"suite": suite_doc["name"], "table": table, "stage": stage, "expectations": rows})
    finally:
        # Give the connection back to the pool; the run's connection and its transaction stay as they are.
        if engine._connection is not None:
            engine._connection.close()
            engine._connection = None
        engine.engine.dispose()
        context.data_sources.delete(name)
        BORROWED.pop(name, None)
    return summaries


def blocking_failures(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """A suite summary's failed expectations that are blocking (after the config's overrides)."""
    return [e for e in summary["expectations"] if not e["success"] and e["blocking"]]

