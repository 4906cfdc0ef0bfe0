"""The review worklist (docs/definitions.md section 5, Review worklist): restricted/worklist.csv and
restricted/worklist.xlsx, row-level, written only into the run's owner-only restricted/ folder.

One row per hypokalemia episode to review (sql/marts/mart_audit_worklist.sql): first the episodes
without a magnesium check, then those with low magnesium not repleted. The shared outputs name the
files and their row count only (results.json `audit.worklist`).
"""
from __future__ import annotations

import csv
import os
import pickle
import re
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # the .xlsx child imports this module: it needs no DuckDB
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
NAMES = [name for name, _ in COLUMNS]
QUERY = ("SELECT " + ", ".join(source for _, source in COLUMNS) + " FROM mart_audit_worklist "
         "ORDER BY review_order, start_at, patient_id, episode_number")
OWNER_ONLY = 0o600


def worklist_rows(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The worklist's rows in review order, hours to the first Mg check as hours (null: none)."""
    return _as_rows(con.execute(QUERY).fetchall())


def _as_rows(values: list[tuple]) -> list[dict[str, Any]]:
    """QUERY's tuples as rows named by the files' columns, seconds to the first Mg check as hours."""
    out = []
    for value in values:
        row = {name: v for (name, _), v in zip(COLUMNS, value)}
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


class Writing:
    """worklist.csv and .xlsx being written by start_writing's child process: wait() for them, or cancel()."""

    def __init__(self, child: subprocess.Popen, folder: Path, rows: int, feeding: threading.Thread):
        self._child, self._folder, self._rows, self._feeding = child, folder, rows, feeding

    def wait(self) -> int:
        """The number of rows once both files are complete. The child's failure is raised here: OSError (a
        disk or permission problem, exit 2 for the run) or RuntimeError with its last error line."""
        error = self._child.stderr.read()  # to its end: the child has exited or closed it
        self._child.stderr.close()
        self._child.wait()
        self._feeding.join()
        if self._child.returncode == 0:
            return self._rows
        lines = error.decode("utf-8", "replace").strip().splitlines() or ["no message"]
        found = OS_ERROR.fullmatch(lines[-1])
        if self._child.returncode == OS_ERROR_EXIT and found:
            raise OSError(int(found["errno"]), found["message"], found["filename"])
        raise RuntimeError(f"writing the worklist into {self._folder} failed (exit {self._child.returncode}): "
                           f"{lines[-1]}")

    def cancel(self) -> None:
        """Stop the child (a failed or stopped run has no use for the files) and reap it."""
        if self._child.poll() is None:
            self._child.kill()
        self._child.wait()
        self._child.stderr.close()
        self._feeding.join()


# the child's report of an OSError: its last stderr line, and its exit code
OS_ERROR = re.compile(r"OSError errno=(?P<errno>\d+) filename=(?P<filename>.*?) message=(?P<message>.*)")
OS_ERROR_EXIT = 3
PARENT_CHECK_ROWS = 2000  # the child stops within this many rows of its run being killed


def start_writing(con: duckdb.DuckDBPyConnection, restricted: Path) -> Writing:
    """Write restricted/worklist.csv and worklist.xlsx in a child process: both writers are pure Python,
    seconds for a large history, and a thread would hold this process's interpreter lock while the run
    computes its statistics. Only the query runs here; its rows reach the child pickled on its stdin, fed
    by a thread so that nothing here waits for the child to start."""
    values = con.execute(QUERY).fetchall()
    child = subprocess.Popen([sys.executable, "-m", "pipelines.worklist", str(restricted), str(os.getpid())],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    payload = pickle.dumps(values, protocol=pickle.HIGHEST_PROTOCOL)

    def feed() -> None:
        try:
            child.stdin.write(payload)
        except (BrokenPipeError, ValueError):  # the child stopped: wait() reports why
            pass
        finally:
            try:
                child.stdin.close()
            except BrokenPipeError:
                pass

    feeding = threading.Thread(target=feed, name="hypomag-worklist-rows", daemon=True)
    feeding.start()
    return Writing(child, restricted, len(values), feeding)


def write_rows(rows: list[dict[str, Any]], restricted: Path, check: Callable[[], None] | None = None) -> int:
    """restricted/worklist.csv and .xlsx of `rows` (worklist_rows); returns the number of rows. `check`
    runs as the .xlsx is written (start_writing's child: its run still alive)."""
    _write_csv(rows, NAMES, restricted / "worklist.csv")
    _write_xlsx(rows, NAMES, restricted / "worklist.xlsx", check)
    return len(rows)


def _write_csv(rows: list[dict[str, Any]], names: list[str], path: Path) -> None:
    _owner_only(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow([_text(row[n]) for n in names])


def _write_xlsx(rows: list[dict[str, Any]], names: list[str], path: Path,
                check: Callable[[], None] | None = None) -> None:
    """One sheet `worklist`, streamed row by row (constant memory), date-times as spreadsheet dates."""
    import xlsxwriter  # only the worklist needs it

    _owner_only(path)
    book = xlsxwriter.Workbook(str(path), {"constant_memory": True, "default_date_format": "yyyy-mm-dd hh:mm:ss",
                                           "strings_to_formulas": False, "strings_to_urls": False})
    sheet = book.add_worksheet("worklist")
    sheet.write_row(0, 0, names)
    for number, row in enumerate(rows, start=1):
        sheet.write_row(number, 0, [_cell(row[n]) for n in names])
        if check is not None and number % PARENT_CHECK_ROWS == 0:
            check()
    if check is not None:
        check()
    book.close()
    os.chmod(path, OWNER_ONLY)


def _parent_alive(parent: int) -> Callable[[], None]:
    """A check the child makes as it writes: a run killed meanwhile has no use for the file (the next run
    removes its folder), so the child stops."""
    def check() -> None:
        if os.getppid() != parent:
            raise SystemExit(1)
    return check


def _child(restricted: Path, parent: int) -> int:
    """start_writing's child: QUERY's rows (pickled by the parent) on stdin; an OSError reported as one line."""
    try:
        write_rows(_as_rows(pickle.load(sys.stdin.buffer)), restricted, check=_parent_alive(parent))
    except OSError as exc:
        print(f"OSError errno={exc.errno or 0} filename={exc.filename or restricted} message={exc.strerror or exc}",
              file=sys.stderr)
        return OS_ERROR_EXIT
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(Path(sys.argv[1]), int(sys.argv[2])))
