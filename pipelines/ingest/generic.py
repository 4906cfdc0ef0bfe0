"""The generic source: labs.(csv|csv.gz|parquet) and medications.(csv|csv.gz|parquet) (plan 1.3)."""
from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.config import Config
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
    record_loaded,
    sha256_of,
)

EXTENSIONS = (".csv", ".csv.gz", ".parquet")


def ingest_generic(con: duckdb.DuckDBPyConnection, input_dir: Path, columns: dict,
                   config: Config | None = None) -> list[InputFile]:
    """The generic source: labs.(csv|csv.gz|parquet) and medications.(csv|csv.gz|parquet).

    `config` gives the CSV dialect (`[csv]`) and the malformed-line gate (default: the defaults).
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise InputError(f"{input_dir}: input folder not found")
    labs = find_table_file(input_dir, "labs")
    meds = find_table_file(input_dir, "medications")
    create_raw_tables(con)
    loaded = [
        load_table(con, labs, "raw_labs", LAB_REQUIRED, LAB_OPTIONAL, columns.get("labs"), config),
        load_table(con, meds, "raw_medications", MED_REQUIRED, MED_OPTIONAL, columns.get("medications"), config),
    ]
    record_loaded(con, loaded)
    return loaded


def ingest_inbox(con: duckdb.DuckDBPyConnection, inbox: Path, columns: dict,
                 config: Config | None = None) -> list[InputFile]:
    """Incremental load without screening: every `labs*` / `medications*` extract in the inbox not
    loaded before. The nightly run screens each new file first and sets bad ones aside
    (pipelines/inbox.py, with the same rule for what is new: a sha256 the ledger does not hold).

    Files are recognised by sha256 (the ledger `loaded_files`), so a re-run with the same files
    loads nothing, and a renamed copy of a loaded file is not loaded twice. New files load in name
    order; a later file's result with the same result_id supersedes the earlier one (a correction).
    """
    inbox = Path(inbox)
    if not inbox.is_dir():
        raise InputError(f"{inbox}: inbox folder not found")
    create_raw_tables(con, keep=True)
    seen = {r[0] for r in con.execute("SELECT sha256 FROM loaded_files").fetchall()}
    loaded = []
    for stem, target, required, optional, mapping in (
        ("labs", "raw_labs", LAB_REQUIRED, LAB_OPTIONAL, columns.get("labs")),
        ("medications", "raw_medications", MED_REQUIRED, MED_OPTIONAL, columns.get("medications")),
    ):
        for path in sorted(p for p in inbox.iterdir() if p.name.startswith(stem) and p.name.endswith(EXTENSIONS)):
            digest = sha256_of(path)
            if digest in seen:
                continue
            loaded.append(load_table(con, path, target, required, optional, mapping, config))
            seen.add(digest)
    record_loaded(con, loaded)
    return loaded
