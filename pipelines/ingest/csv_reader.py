"""Reading a CSV file with a fixed dialect, keeping every malformed line as a row.

The dialect (delimiter, quote, escape, header, encoding) comes from the configuration's `[csv]`
section and is never sniffed per file: a sniffer that sees one stray quote may turn quoting off for
the whole file and silently misread every quoted field.

DuckDB reads the file with `store_rejects`, so a malformed line (unterminated or stray quote, too
many or too few fields, invalid encoding, a line over DuckDB's maximum size) is recorded in a rejects
table instead of failing the read. Each malformed line becomes one row with every field NULL and
`parse_error` naming the error type and column (never the line's text).

Positions. `source_row` is the 1-based data row (the header excluded). DuckDB numbers rejected lines
by record (a quoted field spanning lines is one record); a good row's position is the k-th position
not taken by a rejected line (DuckDB keeps file order). Blank lines are skipped and are not rows, but
DuckDB counts them in a rejected line's number: in a file with blank lines between data rows, the
positions after a blank line are exact for rejected lines and one lower per blank line for good rows.

A stray quote. With quoting on, an unterminated quote runs on into the following lines, so DuckDB
rejects all of them as one record. Such a record (a quote error on a record spanning several
physical lines) is cut back to its first physical line, which is the malformed row, and reading
resumes on the next physical line from a temporary copy of the rest of the file (in an owner-only
temporary folder, removed when the read ends). The rows after it keep their true positions: the
malformed row takes one position, the rest are counted from it as above.
"""
from __future__ import annotations

import csv
import gzip
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import duckdb

from pipelines.config import Csv
from pipelines.errors import InputError, ValidationFailed

HEADER_LIMIT_BYTES = 1 << 20  # a header line longer than this is refused before DuckDB reads it
MAX_RESUMES = 100  # stray quotes one file may hold before reading stops (each re-reads the rest)
RESERVED_COLUMNS = ("source_row", "parse_error")
# DuckDB's rejects error types, as short descriptions for parse_error.
ERROR_TEXT = {
    "UNQUOTED VALUE": "unterminated or stray quote",
    "MISSING COLUMNS": "too few fields",
    "TOO MANY COLUMNS": "too many fields",
    "INVALID ENCODING": "invalid encoding",
    "LINE SIZE OVER MAXIMUM": "line too long",
    "CAST": "unreadable value",
    "INVALID STATE": "unreadable line",
}
RESUME_ERRORS = ("UNQUOTED VALUE", "LINE SIZE OVER MAXIMUM")


@dataclass(frozen=True)
class Rejected:
    """One malformed record of a segment: its data position, description and where it starts."""

    position: int
    parse_error: str
    byte_hint: int  # DuckDB's line_byte_position (within about two bytes of the record's start)
    text_start: str  # the record's first characters as DuckDB shows them
    resume: bool  # a quote error on a record spanning physical lines: cut it and re-read the rest


def open_bytes(path: Path) -> BinaryIO:
    """The file's bytes, decompressed when it is a .gz file."""
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def python_encoding(encoding: str) -> str:
    """The Python codec of a DuckDB encoding name (a UTF-8 byte order mark is dropped)."""
    name = encoding.strip().lower().replace("_", "-")
    return "utf-8-sig" if name in ("utf-8", "utf8") else name


def header_columns(path: Path, dialect: Csv) -> list[str]:
    """The column names from the file's first line, read in Python before DuckDB sees the file.

    The first line must end within HEADER_LIMIT_BYTES, so that a file without line breaks (or a
    binary file) is refused at once instead of DuckDB reading it to its memory limit. Without a
    header (`[csv] header = false`) the columns are named column0, column1, ... as DuckDB names them.
    """
    try:
        with open_bytes(path) as f:
            head = f.read(HEADER_LIMIT_BYTES + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"{path}: cannot be read ({exc})") from None
    if not head.strip():
        raise InputError(f"{path}: the file is empty (no header line)")
    end = head.find(b"\n")
    if end < 0 and len(head) > HEADER_LIMIT_BYTES:
        raise InputError(f"{path}: the first line is longer than {HEADER_LIMIT_BYTES // (1 << 20)} MB "
                         "(not a CSV file, or a wrong [csv] delimiter?)")
    line = head if end < 0 else head[:end]
    try:
        text = line.decode(python_encoding(dialect.encoding)).rstrip("\r")
    except (UnicodeDecodeError, LookupError) as exc:
        raise InputError(f"{path}: line 1 (the header) is not {dialect.encoding} ({exc.__class__.__name__})") from None
    fields = _parse_line(path, text, dialect)
    if not dialect.header:
        return [f"column{i}" for i in range(len(fields))]
    names = [name if name.strip() else f"column{i}" for i, name in enumerate(fields)]
    check_column_names(path, names)
    return names


def _parse_line(path: Path, text: str, dialect: Csv) -> list[str]:
    options = {"delimiter": dialect.delimiter, "strict": True}
    if dialect.quote:
        options["quotechar"] = dialect.quote
        if dialect.escape and dialect.escape != dialect.quote:
            options.update(escapechar=dialect.escape, doublequote=False)
    else:
        options["quoting"] = csv.QUOTE_NONE
    try:
        return next(csv.reader([text], **options))
    except (csv.Error, StopIteration) as exc:
        raise InputError(f"{path}: line 1 (the header) cannot be parsed with the [csv] dialect ({exc})") from None


def check_column_names(path: Path, names: list[str]) -> None:
    """Column names are used as SQL identifiers: no quotes or control characters, no duplicates."""
    seen: dict[str, str] = {}
    for name in names:
        if '"' in name or any(ord(ch) < 32 for ch in name):
            raise InputError(f"{path}: column name {name!r} holds a quote or a control character")
        key = name.strip().lower()
        if key in RESERVED_COLUMNS:
            raise InputError(f"{path}: column name {name!r} is reserved by hypomag; rename it")
        if key in seen:
            raise InputError(f"{path}: column {name!r} appears twice in the header")
        seen[key] = name


def read_csv_as_text(con: duckdb.DuckDBPyConnection, path: Path, into: str, dialect: Csv,
                     max_malformed_fraction: float) -> list[str]:
    """Read a CSV into temp table `into` (file columns as text, source_row, parse_error).

    Returns the column names. Raises ValidationFailed when malformed rows exceed
    `max_malformed_fraction` of the file's rows (malformed included).
    """
    columns = header_columns(path, dialect)
    cols_sql = ", ".join(f'"{c}" VARCHAR' for c in columns)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {into} ({cols_sql}, source_row BIGINT, parse_error VARCHAR)")
    segment, has_header, base = path, dialect.header, 0
    # the rest of a file after a stray quote is row-level data: it goes where DuckDB spills (the
    # run's owner-only folder, removed with the run even when the process is killed)
    spill = con.execute("SELECT current_setting('temp_directory')").fetchone()[0] or None
    if spill:
        Path(spill).mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hypomag-csv-", dir=spill) as scratch:
        for resume in range(MAX_RESUMES + 1):
            cut = _read_segment(con, path, segment, columns, dialect, has_header, base, into)
            if cut is None:
                break
            if resume == MAX_RESUMES:
                raise ValidationFailed(f"{path}: more than {MAX_RESUMES} unterminated or stray quotes; the last at "
                                       f"row {base + cut.position} (fix the file's quoting)")
            rest = Path(scratch) / f"rest{resume}.csv"
            _copy_after_line(path, segment, cut, rest)
            segment, has_header, base = rest, False, base + cut.position
    _check_malformed_fraction(con, path, into, max_malformed_fraction)
    return columns


def _read_segment(con: duckdb.DuckDBPyConnection, path: Path, segment: Path, columns: list[str], dialect: Csv,
                  has_header: bool, base: int, into: str) -> Rejected | None:
    """Read one segment (the file, or what follows a stray quote) and append its rows to `into`.

    Returns the first record to cut (a stray quote) or None; rows after a cut are not kept.
    """
    read, rejects, scans = f"{into}_read", f"{into}_rejects", f"{into}_scans"
    struct = "{" + ", ".join(f"'{c.replace(chr(39), chr(39) * 2)}': 'VARCHAR'" for c in columns) + "}"
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {read} AS SELECT * FROM read_csv(?, delim = ?, quote = ?, escape = ?, "
            f"header = ?, encoding = ?, auto_detect = false, columns = {struct}, nullstr = '', "
            f"store_rejects = true, rejects_table = '{rejects}', rejects_scan = '{scans}')",
            [str(segment), dialect.delimiter, dialect.quote, dialect.escape, has_header, dialect.encoding],
        )
    except duckdb.Error as exc:
        from pipelines.ingest.common import unreadable

        raise unreadable(path, exc) from None
    rejected = _rejected(con, rejects, 1 if has_header else 0)
    con.execute(f"DROP TABLE IF EXISTS {rejects}")
    con.execute(f"DROP TABLE IF EXISTS {scans}")
    cut = next((r for r in rejected if r.resume), None)
    kept = [r for r in rejected if cut is None or r.position <= cut.position]
    _append_rows(con, read, into, columns, kept, base, cut)
    con.execute(f"DROP TABLE {read}")
    return cut


def _rejected(con: duckdb.DuckDBPyConnection, rejects: str, header_lines: int) -> list[Rejected]:
    """One entry per rejected record (DuckDB may report several errors, or one twice, per line)."""
    rows = con.execute(
        f"""
        SELECT line, min(hint), list(kind), list(kind || '|' || coalesce(first_column, '') ORDER BY first_byte),
            arg_min(text_start, first_byte), bool_or(multiline)
        FROM (
            SELECT line, CAST(error_type AS VARCHAR) AS kind, min(line_byte_position) AS hint,
                min(byte_position) AS first_byte, arg_min(column_name, column_idx) AS first_column,
                arg_min(left(ltrim(csv_line, chr(13) || chr(10)), 64), byte_position) AS text_start,
                bool_or(strpos(trim(csv_line, chr(13) || chr(10)), chr(10)) > 0) AS multiline
            FROM {rejects} GROUP BY line, error_type
        )
        GROUP BY line ORDER BY line
        """
    ).fetchall()
    found = []
    for line, byte_hint, types, errors, text_start, multiline in rows:
        resume = bool(multiline) and any(t in RESUME_ERRORS for t in types)
        if resume:  # only the record's first line is kept: its error is the quote
            errors = [e for e in errors if e.partition("|")[0] in RESUME_ERRORS]
        found.append(Rejected(position=int(line) - header_lines, parse_error=_describe(errors),
                              byte_hint=int(byte_hint), text_start=text_start or "", resume=resume))
    return found


def _describe(errors: list[str]) -> str:
    """'too few fields (column x); invalid encoding (column y)': each error type once, with the
    first column it concerns (never the line's text)."""
    parts = []
    for error in errors:
        kind, _, column = error.partition("|")
        text = ERROR_TEXT.get(kind, kind.lower() or "unreadable line")
        parts.append(f"{text} (column {column!r})" if column else text)
    return "; ".join(parts)


def _append_rows(con: duckdb.DuckDBPyConnection, read: str, into: str, columns: list[str],
                 rejected: list[Rejected], base: int, cut: Rejected | None) -> None:
    """Good rows at their true positions (the k-th position no rejected record takes), then one
    all-NULL row per rejected record. With a cut, only what precedes it is kept."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {into}_taken (position BIGINT, parse_error VARCHAR)")
    if rejected:
        con.executemany(f"INSERT INTO {into}_taken VALUES (?, ?)", [[r.position, r.parse_error] for r in rejected])
    names = ", ".join(f'"{c}"' for c in columns)
    # good rows before the j-th rejected record (1-based): position_j - j; a good row k follows the
    # rejected records whose count of good rows before them is below k.
    con.execute(
        f"""
        INSERT INTO {into} ({names}, source_row, parse_error)
        WITH gaps AS (
            SELECT position - row_number() OVER (ORDER BY position) AS good_before,
                   row_number() OVER (ORDER BY position) AS taken_so_far
            FROM {into}_taken
        ),
        steps AS (SELECT good_before, max(taken_so_far) AS taken FROM gaps GROUP BY good_before),
        good AS (SELECT *, rowid + 1 AS k FROM {read})
        SELECT {', '.join(f'g."{c}"' for c in columns)}, ? + g.k + coalesce(s.taken, 0), NULL
        FROM good AS g ASOF LEFT JOIN steps AS s ON g.k > s.good_before
        WHERE g.k + coalesce(s.taken, 0) < ?
        """,
        [base, cut.position if cut else 1 << 62],
    )
    con.execute(
        f"INSERT INTO {into} (source_row, parse_error) SELECT ? + position, parse_error FROM {into}_taken",
        [base],
    )
    con.execute(f"DROP TABLE {into}_taken")


def _copy_after_line(path: Path, segment: Path, cut: Rejected, rest: Path) -> None:
    """Copy what follows the first physical line of record `cut` in `segment` to file `rest`."""
    start = _record_start(path, segment, cut)
    with open_bytes(segment) as f, open(rest, "wb") as out:
        f.seek(start)
        f.readline()
        shutil.copyfileobj(f, out, 1 << 20)


def _record_start(path: Path, segment: Path, cut: Rejected) -> int:
    """The byte offset where record `cut` starts, checked against the text DuckDB reported.

    DuckDB's line_byte_position lies a byte or two after the end of the previous line (it differs
    between \\n and \\r\\n files); from two bytes before it, line breaks are skipped to the record.
    """
    probe = max(0, cut.byte_hint - 2)
    with open_bytes(segment) as f:
        f.seek(probe)
        window = f.read(4096)
    skipped = len(window) - len(window.lstrip(b"\r\n"))
    start = probe + skipped
    expected = cut.text_start.encode("utf-8", "replace")
    ascii_prefix = expected[: next((i for i, b in enumerate(expected) if b > 126 or b == ord("?")), len(expected))]
    if not window[skipped:].startswith(ascii_prefix[:32]):
        raise InputError(f"{path}: row {cut.position}: cannot find where the line with the stray quote starts "
                         "(is [csv] encoding right?)")
    return start


def _check_malformed_fraction(con: duckdb.DuckDBPyConnection, path: Path, into: str, limit: float) -> None:
    """A blocking failure when too many of the file's rows are malformed (naming the first one)."""
    total, bad, first_row, first_error = con.execute(
        f"SELECT count(*), count(parse_error), min(source_row) FILTER (WHERE parse_error IS NOT NULL), "
        f"arg_min(parse_error, source_row) FILTER (WHERE parse_error IS NOT NULL) FROM {into}"
    ).fetchone()
    if bad and bad / total > limit:
        raise ValidationFailed(
            f"{path}: {bad} of {total} rows are malformed ({bad / total:.1%}, above "
            f"validation.max_malformed_fraction {limit:g}); the first is row {first_row}: {first_error}"
        )
