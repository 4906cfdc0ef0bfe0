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
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from pipelines.errors import InputError

LAB_REQUIRED = ("patient_id", "collected_at", "analyte", "value", "unit")
LAB_OPTIONAL = ("result_id", "specimen_id", "encounter_id", "fluid", "care_unit")
MED_REQUIRED = ("patient_id", "start_at", "drug")
MED_OPTIONAL = ("stop_at", "route", "atc_code", "rxnorm_code", "dose", "dose_unit", "encounter_id")

# Column names that name a direct identifier (plan section 7).
IDENTIFIER_COLUMN = re.compile(
    r"^(name|first_?name|last_?name|surname|given_?name|family_?name|full_?name|patient_?name"
    r"|.*ssn.*|.*social_?security.*|.*phone.*|.*mobile.*|.*e_?mail.*|.*address.*|.*street.*)$",
    re.IGNORECASE,
)
# Values that look like direct identifiers: e-mail, US SSN, phone number. Each pattern has a cheap
# necessary condition ({v}: the value) so that the regular expression runs only on candidates.
IDENTIFIER_VALUES = {
    "an e-mail address": (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", "contains({v}, '@')"),
    "a social security number": (r"^\s*[0-9]{3}-[0-9]{2}-[0-9]{4}\s*$", "length({v}) >= 11"),
    "a phone number": (r"^\s*(\+?1[ .-]?)?\(?[0-9]{3}\)?[ .-][0-9]{3}[ .-][0-9]{4}\s*$", "length({v}) >= 12"),
}
# Columns never scanned for identifier-like values (numbers and times only).
NOT_SCANNED = {"collected_at", "value", "unit", "start_at", "stop_at", "dose", "dose_unit"}


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


def unreadable(path: Path, exc: duckdb.Error) -> InputError:
    """The input error for a file DuckDB cannot read: the file and the first line of the reason."""
    first = str(exc).strip().splitlines()[0]
    return InputError(f"{path}: cannot be read ({first})")


def read_file_as_text(con: duckdb.DuckDBPyConnection, path: Path, into: str) -> list[str]:
    """Load a CSV or Parquet file into table `into` (all columns text, plus `source_row`)."""
    try:
        if path.name.endswith(".parquet"):
            cols = _parquet_columns(con, path)
            select = ", ".join(f'CAST("{c}" AS VARCHAR) AS "{c}"' for c in cols)
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {into} AS SELECT {select}, "
                f"CAST(file_row_number + 1 AS BIGINT) AS source_row "
                f"FROM read_parquet(?, file_row_number = true)",
                [str(path)],
            )
        else:
            # Insertion order is preserved, so rowid is the data row's position in the file.
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {into}_read AS SELECT * FROM read_csv(?, header = true, "
                f"all_varchar = true, nullstr = '', sample_size = -1)",
                [str(path)],
            )
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {into} AS "
                f"SELECT *, CAST(rowid + 1 AS BIGINT) AS source_row FROM {into}_read"
            )
            con.execute(f"DROP TABLE {into}_read")
    except duckdb.Error as exc:
        raise unreadable(path, exc) from None
    cols = [r[0] for r in con.execute(f"DESCRIBE {into}").fetchall()]
    return [c for c in cols if c != "source_row"]


def check_identifiers(
    con: duckdb.DuckDBPyConnection, path: Path, table: str, columns: list[str], scan: list[str] | None = None,
    row: str = "source_row", params: list | None = None,
) -> None:
    """Refuse a file whose columns or values look like direct identifiers (plan section 7).

    `scan` names the columns whose values are checked (default: every column but times and numbers).
    `table` is a table name or a table function (`read_parquet(?, ...)` with `params`), `row` the
    expression of the 1-based row number in it. One scan checks every column against every pattern;
    the error names the first column (file order), pattern and row, as a column-by-column loop would.
    """
    for col in columns:
        if IDENTIFIER_COLUMN.match(col.strip()):
            raise InputError(
                f"{path}: column {col!r} looks like a direct identifier; inputs must be "
                "de-identified (nothing was loaded)"
            )
    scanned = scan if scan is not None else [c for c in columns if c not in NOT_SCANNED]
    checks = [(col, what, rule) for col in scanned for what, rule in IDENTIFIER_VALUES.items()]
    if not checks:
        return
    firsts = []
    for col, _, (pattern, candidate) in checks:
        value = f'CAST("{col}" AS VARCHAR)'
        firsts.append(f"min(CASE WHEN {candidate.format(v=value)} AND regexp_matches({value}, '{pattern}') "
                      f"THEN {row} END)")
    found = con.execute(f"SELECT {', '.join(firsts)} FROM {table}", params or []).fetchone()
    for (col, what, _), first_row in zip(checks, found):
        if first_row is not None:
            raise InputError(
                f"{path}: row {first_row}, column {col!r} holds what looks like {what}; inputs "
                "must be de-identified (nothing was loaded)"
            )


def load_table(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    target: str,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    mapping: dict[str, str] | None = None,
) -> InputFile:
    """Read one generic file and append it to `target` with canonical column names.

    Parquet is read straight into `target` (its row number comes from the file); a CSV goes
    through one temporary table, whose rowid is the data row's position in the file.
    """
    mapping = mapping or {}
    is_parquet = path.name.endswith(".parquet")
    if is_parquet:
        columns = _parquet_columns(con, path)
        source, row, params = "read_parquet(?, file_row_number = true)", "file_row_number + 1", [str(path)]
        text = 'CAST("{}" AS VARCHAR)'
    else:
        columns = read_file_as_text(con, path, f"tmp_{target}")
        source, row, params = f"tmp_{target}", "source_row", []
        text = '"{}"'
    check_identifiers(con, path, source, columns, row=row, params=params)
    by_lower = {c.strip().lower(): c for c in columns}
    select = []
    for field in (*required, *optional):
        wanted = mapping.get(field, field)
        actual = by_lower.get(wanted.lower())
        if actual is None and field in required:
            raise InputError(
                f"{path}: required column {wanted!r} is missing (columns found: {', '.join(columns)})"
            )
        select.append(f"{text.format(actual)} AS {field}" if actual else f"CAST(NULL AS VARCHAR) AS {field}")
    offset = row_offset(con, target)
    try:
        con.execute(
            f"INSERT INTO {target} SELECT ? + {row} AS row_id, ? AS source_file, CAST({row} AS BIGINT), "
            f"{', '.join(select)} FROM {source}",
            [offset, str(path), *params],
        )
    except duckdb.Error as exc:
        raise unreadable(path, exc) from None
    rows = row_offset(con, target) - offset
    if not is_parquet:
        con.execute(f"DROP TABLE tmp_{target}")
    return InputFile(table=target, path=str(path), sha256=sha256_of(path), rows_read=rows)


def _parquet_columns(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    try:
        return [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()]
    except duckdb.Error as exc:
        raise unreadable(path, exc) from None


def source_columns(con: duckdb.DuckDBPyConnection, path: Path, table: str, required: tuple[str, ...],
                   optional: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Lower-cased column -> the file's column name (None if an optional one is absent).

    A missing required column is an input error naming the file and the column.
    """
    present = {r[0].lower(): r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
    for col in required:
        if col not in present:
            raise InputError(f"{path}: required column {col!r} is missing (columns found: {', '.join(sorted(present))})")
    return {c: present.get(c) for c in (*required, *optional)}


def create_raw_tables(con: duckdb.DuckDBPyConnection, keep: bool = False) -> None:
    """Raw tables (every field text, plus where each row came from) and the ledger of loaded files.

    `keep=True` (incremental loads) keeps what earlier runs loaded; otherwise they start empty.
    """
    create = "CREATE TABLE IF NOT EXISTS" if keep else "CREATE OR REPLACE TABLE"
    for table, fields in (
        ("raw_labs", (*LAB_REQUIRED, *LAB_OPTIONAL)),
        ("raw_medications", (*MED_REQUIRED, *MED_OPTIONAL)),
    ):
        cols = ", ".join(f"{f} VARCHAR" for f in fields)
        con.execute(f"{create} {table} (row_id BIGINT, source_file VARCHAR, source_row BIGINT, {cols})")
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


