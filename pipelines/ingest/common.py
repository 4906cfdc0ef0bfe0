"""Ingest helpers shared by the source adapters (generic, mimic_iv, omop).

Ingest reads source files into DuckDB raw tables, as text, one row per input row.

Every input row lands in `raw_labs` / `raw_medications` with its source file and 1-based row
number, all values as text (so nothing is lost to type guessing and sodium's `NA` stays a
string). Deciding what each row *is* (loaded, out of scope, quarantined) is the staging models'
job (sql/staging/); ingest only reads, maps column names and refuses direct identifiers.
DuckDB reads the files itself, so a 13 GB CSV never passes through Python memory.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from pipelines.config import Config
from pipelines.errors import InputError
from pipelines.ingest.csv_reader import check_column_names, header_columns, read_csv_as_text, unreadable

LAB_REQUIRED = ("patient_id", "collected_at", "analyte", "value", "unit")
LAB_OPTIONAL = ("result_id", "specimen_id", "encounter_id", "fluid", "care_unit")
MED_REQUIRED = ("patient_id", "start_at", "drug")
MED_OPTIONAL = ("stop_at", "route", "atc_code", "rxnorm_code", "dose", "dose_unit", "encounter_id")
# the optional demographics table (ingest/patients.py)
PATIENT_REQUIRED = ("patient_id",)
PATIENT_OPTIONAL = ("sex", "birth_year", "age_at_first_result", "anchor_age", "anchor_year")

# The identifier guard (docs/definitions.md section 7) lives in identifiers.py: column-name terms, value patterns
# (name -> (pattern, cheap condition)) and the numbers/times columns whose values are not scanned.
from pipelines.ingest.identifiers import (  # noqa: E402,F401  (re-exported for the adapters)
    IDENTIFIER_TERMS as IDENTIFIER_COLUMN,
    NOT_SCANNED,
    VALUE_PATTERNS as IDENTIFIER_VALUES,
    check_identifiers,
)


@dataclass
class InputFile:
    """One source file and its row count, as recorded in manifest.json."""

    table: str
    path: str
    sha256: str
    rows_read: int

    def to_dict(self) -> dict:
        return asdict(self)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_table_file(input_dir: Path, stem: str) -> Path:
    """`stem`.csv, .csv.gz or .parquet in `input_dir`; a clear error if none or several."""
    candidates = [input_dir / f"{stem}{ext}" for ext in (".csv", ".csv.gz", ".parquet")]
    found = [p for p in candidates if p.is_file()]
    if not found:
        names = ", ".join(p.name for p in candidates)
        raise InputError(f"{input_dir}: input file not found (expected one of {names})")
    if len(found) > 1:
        raise InputError(f"{input_dir}: several {stem} files ({', '.join(p.name for p in found)}); keep one")
    return found[0]


def read_file_as_text(con: duckdb.DuckDBPyConnection, path: Path, into: str, config: Config | None = None) -> list[str]:
    """Load a CSV or Parquet file into temp table `into`: every file column as text, plus
    `source_row` (1-based data row) and `parse_error` (NULL, or why a CSV line could not be parsed).

    Returns the file's column names. A CSV is read with the fixed dialect of `config.csv` (see
    csv_reader.py); a CSV with more than `validation.max_malformed_fraction` malformed lines raises
    ValidationFailed. Parquet has no dialect; its rows keep the file's row numbers.
    """
    config = config or Config()
    if not path.name.endswith(".parquet"):
        return read_csv_as_text(con, path, into, config.csv, config.validation.max_malformed_fraction)
    cols = _parquet_columns(con, path)
    select = ", ".join(f'CAST("{c}" AS VARCHAR) AS "{c}"' for c in cols)
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {into} AS SELECT {select}, "
            f"CAST(file_row_number + 1 AS BIGINT) AS source_row, CAST(NULL AS VARCHAR) AS parse_error "
            f"FROM read_parquet(?, file_row_number = true)",
            [str(path)],
        )
    except duckdb.Error as exc:
        raise unreadable(path, exc) from None
    return cols


def insert_malformed(con: duckdb.DuckDBPyConnection, source: str, target: str, path: Path, offset: int) -> None:
    """Append `source`'s malformed rows to raw table `target`: every field NULL but parse_error."""
    con.execute(
        f"INSERT INTO {target} (row_id, source_file, source_row, parse_error) "
        f"SELECT ? + source_row, ?, source_row, parse_error FROM {source} WHERE parse_error IS NOT NULL",
        [offset, str(path)],
    )


def load_table(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    target: str,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    mapping: dict[str, str] | None = None,
    config: Config | None = None,
    label: str | None = None,
    digest: str | None = None,
) -> InputFile:
    """Read one generic file and append it to `target` with canonical column names.

    Parquet is read straight into `target` (its row number comes from the file); a CSV goes
    through one temporary table (read_file_as_text), malformed lines included as rows with
    `parse_error`. `rows_read` counts every row, malformed ones too. Its rows' source_file (and the
    ledger's path) is `label` (default: the path); `digest` is its sha256 when the caller has it.
    """
    mapping = mapping or {}
    is_parquet = path.name.endswith(".parquet")
    if is_parquet:
        columns = _parquet_columns(con, path)
        source, row, params = "read_parquet(?, file_row_number = true)", "file_row_number + 1", [str(path)]
        text, error = 'CAST("{}" AS VARCHAR)', "CAST(NULL AS VARCHAR)"
    else:
        # the header alone decides which columns exist, before any data row is read
        columns = header_columns(path, (config or Config()).csv)
        source, row, params = f"tmp_{target}", "source_row", []
        text, error = '"{}"', "parse_error"
    by_lower = {c.strip().lower(): c for c in columns}
    select = []
    fields = (*required, *optional)
    for field in fields:
        wanted = mapping.get(field, field)
        actual = by_lower.get(wanted.strip().lower())
        if actual is None and field in required:
            raise InputError(
                f"{path}: required column {wanted!r} is missing from the header (columns found: {', '.join(columns)})"
            )
        select.append(f"{text.format(actual)} AS {field}" if actual else f"CAST(NULL AS VARCHAR) AS {field}")
    if not is_parquet:
        read_file_as_text(con, path, source, config)
    check_identifiers(con, path, source, columns, row=row, params=params)
    offset = row_offset(con, target)
    try:
        con.execute(
            f"INSERT INTO {target} (row_id, source_file, source_row, {', '.join(fields)}, parse_error) "
            f"SELECT ? + {row} AS row_id, ? AS source_file, CAST({row} AS BIGINT), "
            f"{', '.join(select)}, {error} FROM {source}",
            [offset, label or str(path), *params],
        )
    except duckdb.Error as exc:
        raise unreadable(path, exc) from None
    rows = con.execute(f"SELECT count(*) FROM {target} WHERE row_id > ?", [offset]).fetchone()[0]
    if not is_parquet:
        con.execute(f"DROP TABLE tmp_{target}")
    return InputFile(table=target, path=label or str(path), sha256=digest or sha256_of(path), rows_read=rows)


def _parquet_columns(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    """A Parquet file's column names, checked like a CSV header's (they become SQL identifiers)."""
    try:
        names = [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()]
    except duckdb.Error as exc:
        raise unreadable(path, exc) from None
    check_column_names(path, names)
    return names


def source_columns(con: duckdb.DuckDBPyConnection, path: Path, table: str, required: tuple[str, ...],
                   optional: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Lower-cased column -> the file's column name (None if an optional one is absent).

    A missing required column is an input error naming the file and the column.
    """
    present = {r[0].lower(): r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()
               if r[0] not in ("source_row", "parse_error")}
    for col in required:
        if col not in present:
            raise InputError(f"{path}: required column {col!r} is missing (columns found: {', '.join(sorted(present))})")
    return {c: present.get(c) for c in (*required, *optional)}


def create_raw_tables(con: duckdb.DuckDBPyConnection, keep: bool = False) -> None:
    """Raw tables (every field text, plus where each row came from) and the ledger of loaded files.

    `parse_error` is NULL for a parsed row; for a malformed CSV line it says why (every other field
    is then NULL), and staging quarantines the row as `malformed_row`.

    `keep=True` (incremental loads) keeps what earlier runs loaded; otherwise they start empty.
    """
    create = "CREATE TABLE IF NOT EXISTS" if keep else "CREATE OR REPLACE TABLE"
    for table, fields in (
        ("raw_labs", (*LAB_REQUIRED, *LAB_OPTIONAL)),
        ("raw_medications", (*MED_REQUIRED, *MED_OPTIONAL)),
        ("raw_patients", (*PATIENT_REQUIRED, *PATIENT_OPTIONAL)),  # empty until ingest/patients.py reads one
    ):
        cols = ", ".join(f"{f} VARCHAR" for f in fields)
        con.execute(f"{create} {table} (row_id BIGINT, source_file VARCHAR, source_row BIGINT, {cols}, "
                    "parse_error VARCHAR)")
        # databases written before parse_error existed (incremental loads) gain the column
        con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS parse_error VARCHAR")
    con.execute(f"{create} loaded_files (sha256 VARCHAR, path VARCHAR, input_table VARCHAR, rows_read BIGINT, "
                "loaded_at TIMESTAMP)")


def record_loaded(con: duckdb.DuckDBPyConnection, files: list[InputFile]) -> None:
    """Add files to the ledger (sha256), so an incremental run never loads them again."""
    for f in files:
        con.execute("INSERT INTO loaded_files VALUES (?, ?, ?, ?, now()::TIMESTAMP)",
                    [f.sha256, f.path, f.table, f.rows_read])


def row_offset(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """The largest row_id so far, so that row ids stay unique across files."""
    return con.execute(f"SELECT coalesce(max(row_id), 0) FROM {table}").fetchone()[0]


