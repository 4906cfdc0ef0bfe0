"""Ingest: read source files into DuckDB raw tables, as text, one row per input row.

Every input row lands in `raw_labs` / `raw_medications` with its source file and 1-based row
number, all values as text (so nothing is lost to type guessing and sodium's `NA` stays a
string). Deciding what each row *is* (loaded, out of scope, quarantined) is the staging models'
job (sql/staging/); ingest only reads, maps each source's columns onto the generic ones and
refuses direct identifiers. DuckDB reads the files itself, so a 13 GB CSV never passes through
Python memory. One adapter per source: generic.py, mimic_iv.py, omop.py.
"""
from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.ingest.common import (  # noqa: F401  (the package's public names)
    LAB_OPTIONAL,
    LAB_REQUIRED,
    MED_OPTIONAL,
    MED_REQUIRED,
    InputFile,
    create_raw_tables,
)
from pipelines.ingest.generic import ingest_generic, ingest_inbox
from pipelines.ingest.mimic_iv import ingest_mimic_iv
from pipelines.ingest.omop import ingest_omop
from pipelines.ingest.patients import load_patients


def ingest(con: duckdb.DuckDBPyConnection, source: str, input_dir: Path, config,
           incremental: bool = False) -> list[InputFile]:
    """Run the adapter of `source` (generic, mimic-iv or omop); `incremental`: new files of the
    generic inbox only (pipelines/run_spec.py refuses the other sources before a run starts)."""
    if incremental:
        return ingest_inbox(con, input_dir, config.columns, config)
    if source == "generic":
        loaded = ingest_generic(con, input_dir, config.columns, config)
    elif source == "mimic-iv":
        loaded = ingest_mimic_iv(con, input_dir, config)
    elif source == "omop":
        loaded = ingest_omop(con, input_dir, config)
    else:
        raise ValueError(source)
    load_patients(con, source, input_dir, config)  # optional demographics: raw_patients, not a ledger input
    return loaded
