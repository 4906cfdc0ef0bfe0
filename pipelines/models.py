"""Build the SQL models of sql/ in one fixed order.

Each file `sql/<layer>/<stem>.sql` is one SELECT; the runner wraps it as
`CREATE OR REPLACE TABLE <stem> AS ...` (STYLE.md). BUILD_ORDER is the only place the order is
written; a test checks that every sql/**/*.sql file appears in it exactly once.
"""
from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.paths import SQL_DIR

BUILD_ORDER: tuple[str, ...] = (
    # staging: the fate of every input row
    "staging/stg_lab_rows",
    "staging/stg_medication_rows",
    # intermediate: normalised results, flags, partner windows
    "intermediate/int_lab_results",
    "intermediate/int_quarantine",
    "intermediate/int_lab_flags",
    "intermediate/int_calcium_corrected",
    "intermediate/int_abnormality_results",
    "intermediate/int_partner_windows",
    # marts: what the analysis and the report read
    "marts/mart_row_accounting",
    "marts/mart_attrition",
    "marts/mart_cooccurrence",
    "marts/mart_sensitivity",
)

# The flow's stages, each a slice of BUILD_ORDER (ingest -> validate -> normalise -> flag -> analyse).
NORMALISE_MODELS = BUILD_ORDER[:4]
FLAG_MODELS = BUILD_ORDER[4:8]
MART_MODELS = BUILD_ORDER[8:]


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
