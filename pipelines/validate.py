"""Validate: the Great Expectations suites of expectations/*.json, executed as SQL inside DuckDB.

This module is the suite runner and its GX adapter only: which suites run after which step is the
stage table's (pipelines/stages.py). Each suite names its table and stage in its `meta` (the step
it checks: ingest, normalise, analyse); each expectation is marked blocking or warning in its own
`meta` (overridable with validation.make_blocking / make_warning). GX runs through its own SQL
execution engine on the DuckDB file, so every check is a SQL query inside DuckDB and no table is
copied into pandas.

The adapter (why this module has an execution engine of its own): GX 1.24's
`SqlAlchemyExecutionEngine.execute_query` returns a cursor result after its connection context
has closed; duckdb-engine's rollback on close discards DuckDB's pending result, so every metric
fails with "list index out of range" and every expectation is reported as failed, silently (GX
issues #10738 and #11579; a native DuckDB engine is only an open PR, #12084). `_BufferedEngine`
buffers the rows with SQLAlchemy's `Result.freeze()` while the connection is still open and
hands GX an equivalent result; nothing else in GX changes, so the expectations keep GX's own
semantics. It is pinned to the GX version it was tested on (tests/test_validate.py).
"""
from __future__ import annotations

import gc
import json
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


@lru_cache(maxsize=1)
def _gx():
    """Import GX once (2.5-5 s) and define the DuckDB adapter on first use."""
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
        """GX's SQL datasource on a DuckDB file, with the buffered execution engine."""

        type: Literal["hypomag_duckdb"] = "hypomag_duckdb"
        execution_engine_override: ClassVar[Optional[Type[SqlAlchemyExecutionEngine]]] = _BufferedEngine

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    return gx, context, HypomagDuckDBDatasource


def warm_up() -> None:
    """Import GX and build its context now (a run calls this while Prefect's API boots)."""
    _gx()


def _is_blocking(expectation: dict[str, Any], config) -> bool:
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


def run_suites(db_path: Path, stage: str, config) -> list[dict[str, Any]]:
    """Run one stage's suites on a DuckDB file (no other connection may hold it) and summarise."""
    gx, context, _ = _gx()
    summaries = []
    name = f"hypomag_{next(_names)}"
    # the run's DuckDB limits apply to GX's connections too, so large tables spill instead of growing
    duckdb_config = {"memory_limit": config.engine.memory_limit, "threads": config.engine.threads}
    datasource = context.data_sources.add_hypomag_duckdb(
        name=name, connection_string=f"duckdb:///{db_path}", kwargs={"connect_args": {"config": duckdb_config}})
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
                    "blocking": _is_blocking(e, config),
                    "unexpected_count": unexpected,
                    "examples": [] if r.success else _examples(engine, suite_doc, e, result),
                    "error": error,
                })
            summaries.append({"suite": suite_doc["name"], "table": table, "stage": stage, "expectations": rows})
    finally:
        # Release the DuckDB file: GX keeps one connection open, the pool may hold more.
        if engine._connection is not None:
            engine._connection.close()
            engine._connection = None
        engine.engine.dispose()
        datasource.get_engine().dispose()
        context.data_sources.delete(name)
        gc.collect()
    return summaries


def blocking_failures(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """A suite summary's failed expectations that are blocking (after the config's overrides)."""
    return [e for e in summary["expectations"] if not e["success"] and e["blocking"]]

