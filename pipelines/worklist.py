"""The review worklist (docs/definitions.md section 5, Review worklist): restricted/worklist.csv and
restricted/worklist.xlsx, row-level, written only into the run's owner-only restricted/ folder.

One row per hypokalemia episode to review (sql/marts/mart_audit_worklist.sql): first the episodes
without a magnesium check, then those with low magnesium not repleted. The shared outputs name the
files and their row count only (results.json `audit.worklist`).
"""
from __future__ import annotations

import csv
import os
import re
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import duckdb

SECONDS_PER_HOUR = 3600.0
# (column in the files, column of mart_audit_worklist)
COLUMNS = (
    ("reason", "reason"),
    ("patient_id", "patient_id"),
    ("episode_number", "episode_number"),
    ("encounter_id", "encounter_id"),
    ("care_unit", "care_unit"),
    ("episode_start", "start_at"),
    ("episode_end", "end_at"),
    ("lowest_k_mmol_l", "lowest_k_mmol_l"),
    ("severity", "severity"),
    ("k_supplement_given", "k_supplement_given"),
    ("hours_to_first_mg", "seconds_to_first_mg"),
)
QUERY = ("SELECT " + ", ".join(source for _, source in COLUMNS) + " FROM mart_audit_worklist "
         "ORDER BY review_order, start_at, patient_id, episode_number")
OWNER_ONLY = 0o600


def worklist_rows(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The worklist's rows in review order, hours to the first Mg check as hours (null: none)."""
    out = []
    for values in con.execute(QUERY).fetchall():
        row = {name: value for (name, _), value in zip(COLUMNS, values)}
        seconds = row["hours_to_first_mg"]
        row["hours_to_first_mg"] = None if seconds is None else seconds / SECONDS_PER_HOUR
        out.append(row)
    return out


def _text(value: Any) -> str:
    """A CSV field: empty for null, ISO date-times, true/false."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)


# Control characters an .xlsx cell cannot hold (the XML 1.0 exclusions)
ILLEGAL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _cell(value: Any) -> Any:
    """A spreadsheet cell: text without the control characters .xlsx cannot hold."""
    if isinstance(value, str):
        return ILLEGAL_CHARACTERS.sub("", value)
    return value


def _owner_only(path: Path) -> None:
    """Create `path` empty with owner-only permissions before any row is written into it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, OWNER_ONLY)
    os.close(fd)
    os.chmod(path, OWNER_ONLY)


def write_worklist(con: duckdb.DuckDBPyConnection, restricted: Path) -> int:
    """restricted/worklist.csv and .xlsx (permissions 0600); returns the number of rows."""
    return write_rows(worklist_rows(con), restricted)


def start_writing(con: duckdb.DuckDBPyConnection, restricted: Path) -> Callable[[], int]:
    """Read the worklist's rows now and write its files in a thread (the .xlsx writer is pure Python,
    seconds for a large history, while the caller's next writes run in DuckDB without the GIL); the
    function returned waits for the files and returns the number of rows (re-raising the thread's error)."""
    rows = worklist_rows(con)  # the connection is read here only, never from the thread
    outcome: dict[str, Any] = {}

    def write() -> None:
        try:
            outcome["rows"] = write_rows(rows, restricted)
        except BaseException as exc:  # handed to the caller by wait()
            outcome["error"] = exc

    thread = threading.Thread(target=write, name="hypomag-worklist", daemon=True)
    thread.start()

    def wait() -> int:
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["rows"]

    return wait


def write_rows(rows: list[dict[str, Any]], restricted: Path) -> int:
    """restricted/worklist.csv and .xlsx of `rows` (worklist_rows); returns the number of rows."""
    names = [name for name, _ in COLUMNS]
    csv_path, xlsx_path = restricted / "worklist.csv", restricted / "worklist.xlsx"
    _owner_only(csv_path)
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow([_text(row[n]) for n in names])
    _write_xlsx(rows, names, xlsx_path)
    return len(rows)


def _write_xlsx(rows: list[dict[str, Any]], names: list[str], path: Path) -> None:
    """One sheet `worklist`, streamed row by row (constant memory), date-times as spreadsheet dates."""
    import xlsxwriter  # only the worklist needs it

    _owner_only(path)
    book = xlsxwriter.Workbook(str(path), {"constant_memory": True, "default_date_format": "yyyy-mm-dd hh:mm:ss",
                                           "strings_to_formulas": False, "strings_to_urls": False})
    sheet = book.add_worksheet("worklist")
    sheet.write_row(0, 0, names)
    for number, row in enumerate(rows, start=1):
        sheet.write_row(number, 0, [_cell(row[n]) for n in names])
    book.close()
    os.chmod(path, OWNER_ONLY)
