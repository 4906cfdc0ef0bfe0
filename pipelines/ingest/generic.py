"""The generic source: labs.(csv|csv.gz|parquet) and medications.(csv|csv.gz|parquet) (plan 1.3)."""
from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.errors import InputError
from pipelines.ingest.common import (
    LAB_OPTIONAL,
    LAB_REQUIRED,
    MED_OPTIONAL,
    MED_REQUIRED,
    InputFile,
    create_raw_tables,
    find_table_file,
    load_table,
)


def ingest_generic(con: duckdb.DuckDBPyConnection, input_dir: Path, columns: dict) -> list[InputFile]:
    """The generic source: labs.(csv|csv.gz|parquet) and medications.(csv|csv.gz|parquet)."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise InputError(f"{input_dir}: input folder not found")
    labs = find_table_file(input_dir, "labs")
    meds = find_table_file(input_dir, "medications")
    create_raw_tables(con)
    return [
        load_table(con, labs, "raw_labs", LAB_REQUIRED, LAB_OPTIONAL, columns.get("labs")),
        load_table(con, meds, "raw_medications", MED_REQUIRED, MED_OPTIONAL, columns.get("medications")),
    ]
