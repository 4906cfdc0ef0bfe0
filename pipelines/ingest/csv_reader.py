"""Reading a CSV file with a fixed dialect, keeping every malformed line as a row.

The dialect (delimiter, quote, escape, header, encoding) comes from the configuration's `[csv]`
section and is never sniffed per file: a sniffer that sees one stray quote may turn quoting off for
the whole file and silently misread every quoted field.

DuckDB reads the file with `store_rejects`, so a malformed line (unterminated or stray quote, too
many or too few fields, invalid encoding, a line over DuckDB's maximum size) is recorded in a rejects
table instead of failing the read. Each malformed line becomes one row with every field NULL and
`parse_error` naming the error type and column (never the line's text).

The line ending is taken from the first line of the file and given to every read: DuckDB would
otherwise guess it on each read, and on the rest of a file after a stray quote it may guess it from
a line break inside a quoted field. A line with more fields than the header is malformed even when
its extra fields are empty: DuckDB accepts surplus fields that match its null string, so the null
string is a line feed (which no unquoted field can hold, and quoted fields never match) and empty
fields become NULL afterwards.

Positions. `source_row` is the 1-based data row (the header excluded). DuckDB numbers rejected lines
by record (a quoted field spanning lines is one record); a good row's position is the k-th position
not taken by a rejected line (DuckDB keeps file order). Blank lines are skipped and are not rows, but
DuckDB counts them in a rejected line's number: in a file with blank lines between data rows, the
positions after a blank line are exact for rejected lines and one lower per blank line for good rows.

A stray quote. With quoting on, an unterminated quote runs on into the following lines, so DuckDB
rejects all of them as one record. Such a record (a quote error on a record whose first physical
line ends inside a quote) is cut back to its first physical line, which is the malformed row, and
reading resumes on the next physical line from a temporary copy of the rest of the file (in an
owner-only temporary folder, removed when the read ends). The rows after it keep their true
positions: the malformed row takes one position, the rest are counted from it as above. DuckDB's
line position and text for such a record may be the previous record's, or empty, when the run-on
ends at another quote error; its first byte position (the field where the error starts) is right,
and the record's first line is the first physical line from there on that ends inside a quote.
"""
from __future__ import annotations

import csv
import dataclasses
import gzip
import re
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
NEW_LINES = {b"\r\n": "\\r\\n", b"\n": "\\n"}  # a line ending as DuckDB's new_line option spells it
NULL_TEXT = "\n"  # DuckDB's null string: no unquoted field can hold it (see the module docstring)
SEARCH_LINES = 16  # physical lines searched for a stray quote's line from DuckDB's byte positions
SEARCH_BYTES = 1 << 20  # bytes read back to find the start of the physical line holding a position


@dataclass(frozen=True)
class Rejected:
    """One malformed record of a segment: its data position, description and where it starts."""

    position: int
    parse_error: str
    quote_parse_error: str  # the description of its quote errors alone ('' when it has none)
    byte_hint: int  # DuckDB's first byte_position: 1 + the offset of the first bad field (or near it)
    multiline: bool  # DuckDB's text of the record holds a line feed


@dataclass(frozen=True)
class Cut:
    """A stray quote: the record, and the byte offset just after its first physical line."""

    record: Rejected
    rest_offset: int


def unreadable(path: Path, exc: duckdb.Error) -> InputError:
    """The input error for a file DuckDB cannot read: the file, the line where DuckDB names one,
    and the first line of the reason."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    line = re.search(r"\bline:?\s*(\d+)", text, re.IGNORECASE)
    where = f" at line {line.group(1)}" if line and not re.search(r"\bline\b", first, re.IGNORECASE) else ""
    return InputError(f"{path}: cannot be read{where} ({first})")


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
    line, _ = first_line(path)
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


def first_line(path: Path) -> tuple[bytes, str | None]:
    """The file's first line (without its line end) and its line ending as DuckDB's new_line option
    spells it (None when the file has a single line). Refuses an empty file and a first line over
    HEADER_LIMIT_BYTES."""
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
    if end < 0:
        return head, None
    return head[:end], NEW_LINES[b"\r\n" if head[:end].endswith(b"\r") else b"\n"]


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
    _, new_line = first_line(path)
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
            cut = _read_segment(con, path, segment, columns, dialect, new_line, has_header, base, into)
            if cut is None:
                break
            if resume == MAX_RESUMES:
                raise ValidationFailed(f"{path}: more than {MAX_RESUMES} unterminated or stray quotes; the last at "
                                       f"row {base + cut.record.position} (fix the file's quoting)")
            rest = Path(scratch) / f"rest{resume}.csv"
            if not _copy_rest(segment, cut.rest_offset, rest):
                break
            segment, has_header, base = rest, False, base + cut.record.position
    _check_malformed_fraction(con, path, into, max_malformed_fraction)
    return columns


def _read_segment(con: duckdb.DuckDBPyConnection, path: Path, segment: Path, columns: list[str], dialect: Csv,
                  new_line: str | None, has_header: bool, base: int, into: str) -> Cut | None:
    """Read one segment (the file, or what follows a stray quote) and append its rows to `into`.

    Returns the first stray quote, where the segment is cut, or None; rows after a cut are not kept.
    """
    read, rejects, scans = f"{into}_read", f"{into}_rejects", f"{into}_scans"
    struct = "{" + ", ".join(f"'{c.replace(chr(39), chr(39) * 2)}': 'VARCHAR'" for c in columns) + "}"
    line_option = ", new_line = ?" if new_line else ""
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {read} AS SELECT * FROM read_csv(?, delim = ?, quote = ?, escape = ?, "
            f"header = ?, encoding = ?, auto_detect = false, columns = {struct}, nullstr = ?, "
            f"allow_quoted_nulls = false, store_rejects = true, rejects_table = '{rejects}', "
            f"rejects_scan = '{scans}'{line_option})",
            [str(segment), dialect.delimiter, dialect.quote, dialect.escape, has_header, dialect.encoding, NULL_TEXT,
             *([new_line] if new_line else [])],
        )
    except duckdb.Error as exc:
        raise unreadable(path, exc) from None
    rejected = _rejected(con, rejects, 1 if has_header else 0)
    con.execute(f"DROP TABLE IF EXISTS {rejects}")
    con.execute(f"DROP TABLE IF EXISTS {scans}")
    cut = _first_cut(path, segment, rejected, dialect)
    if cut is not None:
        stray = dataclasses.replace(cut.record, parse_error=cut.record.quote_parse_error)
        rejected = [r for r in rejected if r.position < stray.position] + [stray]
        cut = Cut(stray, cut.rest_offset)
    _append_rows(con, read, into, columns, rejected, base, cut.record if cut else None)
    con.execute(f"DROP TABLE {read}")
    return cut


def _rejected(con: duckdb.DuckDBPyConnection, rejects: str, header_lines: int) -> list[Rejected]:
    """One entry per rejected record (DuckDB may report several errors, or one twice, per line)."""
    rows = con.execute(
        f"""
        SELECT line, coalesce(min(first_byte), min(hint)),
            list(kind || '|' || coalesce(first_column, '') ORDER BY first_byte), bool_or(multiline)
        FROM (
            SELECT line, CAST(error_type AS VARCHAR) AS kind, min(line_byte_position) AS hint,
                min(byte_position) AS first_byte, arg_min(column_name, column_idx) AS first_column,
                bool_or(strpos(trim(csv_line, chr(13) || chr(10)), chr(10)) > 0) AS multiline
            FROM {rejects} GROUP BY line, error_type
        )
        GROUP BY line ORDER BY line
        """
    ).fetchall()
    found = []
    for line, byte_hint, errors, multiline in rows:
        quote_errors = [e for e in errors if e.partition("|")[0] in RESUME_ERRORS]
        found.append(Rejected(position=int(line) - header_lines, parse_error=_describe(errors),
                              quote_parse_error=_describe(quote_errors) if quote_errors else "",
                              byte_hint=int(byte_hint or 0), multiline=bool(multiline)))
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
    all-NULL row per rejected record. With a cut, only what precedes it is kept. An empty field,
    quoted or not, is NULL."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {into}_taken (position BIGINT, parse_error VARCHAR)")
    if rejected:
        con.executemany(f"INSERT INTO {into}_taken VALUES (?, ?)", [[r.position, r.parse_error] for r in rejected])
    names = ", ".join(f'"{c}"' for c in columns)
    values = ", ".join(f"""nullif(g."{c}", '')""" for c in columns)
    # good rows before the j-th rejected record (1-based): position_j - j; a good row k follows the
    # rejected records whose count of good rows before them is below k. k counts from the read table's
    # first rowid: inside a transaction (a nightly run) DuckDB numbers a new table's rows from 2**55.
    con.execute(
        f"""
        INSERT INTO {into} ({names}, source_row, parse_error)
        WITH gaps AS (
            SELECT position - row_number() OVER (ORDER BY position) AS good_before,
                   row_number() OVER (ORDER BY position) AS taken_so_far
            FROM {into}_taken
        ),
        steps AS (SELECT good_before, max(taken_so_far) AS taken FROM gaps GROUP BY good_before),
        good AS (SELECT *, rowid - (SELECT min(rowid) FROM {read}) + 1 AS k FROM {read})
        SELECT {values}, ? + g.k + coalesce(s.taken, 0), NULL
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


def _first_cut(path: Path, segment: Path, rejected: list[Rejected], dialect: Csv) -> Cut | None:
    """The first rejected record with a quote error whose first physical line ends inside a quote
    (a stray quote that ran on into the following lines), or None."""
    for record in rejected:
        if not record.quote_parse_error:
            continue
        start = _stray_quote_line(segment, record, dialect)
        if start is not None:
            return Cut(record, _end_of_line(segment, start))
        if record.multiline:
            raise InputError(f"{path}: row {record.position}: cannot find where the line with the stray quote "
                             "starts (is [csv] encoding right?)")
    return None


def _stray_quote_line(segment: Path, record: Rejected, dialect: Csv) -> int | None:
    """The byte offset of the record's first physical line, when that line ends inside a quote.

    DuckDB's first byte_position is one past the offset of the field where the error starts (its
    line_byte_position and text may be the previous record's); from the line holding that offset
    on, the first physical line that ends inside a quote is the stray quote's line.
    """
    if not dialect.quote:
        return None
    offset = _line_start_before(segment, max(0, record.byte_hint - 1))
    for _ in range(SEARCH_LINES):
        if offset is None:
            return None
        line = _line_at(segment, offset)
        if not line:
            return None
        if _ends_inside_quote(line, dialect):
            return offset
        offset += len(line)
    return None


def _read_at(segment: Path, offset: int, size: int) -> bytes:
    with open_bytes(segment) as f:
        f.seek(offset)
        return f.read(size)


def _line_start_before(segment: Path, offset: int) -> int | None:
    """The start of the physical line holding byte `offset` (None if it starts over SEARCH_BYTES before)."""
    back = min(offset, SEARCH_BYTES)
    window = _read_at(segment, offset - back, back)
    found = window.rfind(b"\n")
    if found < 0:
        return 0 if back == offset else None
    return offset - back + found + 1


def _line_at(segment: Path, offset: int) -> bytes:
    """The physical line starting at `offset`, with its line end."""
    with open_bytes(segment) as f:
        f.seek(offset)
        return f.readline()


def _end_of_line(segment: Path, offset: int) -> int:
    return offset + len(_line_at(segment, offset))


def _ends_inside_quote(line: bytes, dialect: Csv) -> bool:
    """Whether a physical line leaves a quoted field open (a doubled quote, or the escape character
    and what follows it, inside quotes stays inside)."""
    quote = dialect.quote.encode()
    escape = dialect.escape.encode() if dialect.escape and dialect.escape != dialect.quote else b""
    if not escape:
        return line.count(quote) % 2 == 1
    inside, i = False, 0
    while i < len(line):
        if inside and escape and line.startswith(escape, i):
            i += len(escape) + 1
            continue
        if line.startswith(quote, i):
            inside = not inside
            i += len(quote)
            continue
        i += 1
    return inside


def _copy_rest(segment: Path, offset: int, rest: Path) -> bool:
    """Copy what follows byte `offset` of `segment` to file `rest`; False when nothing follows."""
    with open_bytes(segment) as f, open(rest, "wb") as out:
        f.seek(offset)
        shutil.copyfileobj(f, out, 1 << 20)
    return rest.stat().st_size > 0


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
