"""Build the SQL models of sql/ in one fixed order.

Each file `sql/<layer>/<stem>.sql` is one SELECT; the runner wraps it as
`CREATE OR REPLACE TABLE <stem> AS ...` (STYLE.md). BUILD_ORDER is the only place the order is
written; a test checks that every sql/**/*.sql file appears in it exactly once.
"""
from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.paths import SQL_DIR

# normalise: the fate of every input row, canonical units, the quarantine
NORMALISE_MODELS: tuple[str, ...] = (
    "staging/stg_lab_rows",
    "staging/stg_medication_rows",
    "intermediate/int_lab_results",
    "intermediate/int_quarantine",
    "intermediate/int_result_corrections",
)
# flag: abnormality flags, partner windows, drug classes, exposures, hypokalemia episodes
FLAG_MODELS: tuple[str, ...] = (
    "intermediate/int_lab_flags",
    "intermediate/int_calcium_corrected",
    "intermediate/int_abnormality_results",
    "intermediate/int_partner_windows",
    "intermediate/int_medication_classes",
    "intermediate/int_mg_exposures",
    "intermediate/int_hypokalemia_episodes",
)
# analyse: the marts that results.json and the report read
MART_MODELS: tuple[str, ...] = (
    "marts/mart_row_accounting",
    "marts/mart_attrition",
    "marts/mart_cooccurrence",
    "marts/mart_sensitivity",
    "marts/mart_audit",
    "marts/mart_exposures",
)
BUILD_ORDER: tuple[str, ...] = NORMALISE_MODELS + FLAG_MODELS + MART_MODELS


def model_path(name: str) -> Path:
    return SQL_DIR / f"{name}.sql"


def model_sql(name: str) -> str:
    return model_path(name).read_text(encoding="utf-8")


def table_name(name: str) -> str:
    return Path(name).name


def build_models(con: duckdb.DuckDBPyConnection, names: tuple[str, ...] = BUILD_ORDER) -> None:
    """Create or replace each model's table, in order."""
    for name in names:
        sql = model_sql(name)
        try:
            con.execute(f"CREATE OR REPLACE TABLE {table_name(name)} AS {sql}")
        except duckdb.Error as exc:
            raise RuntimeError(f"model {name}.sql failed: {exc}") from exc
