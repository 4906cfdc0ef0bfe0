"""The nightly inbox: which extracts are new, which are refused at the file level, and where a
refused file goes.

An incremental run (`hypomag run --incremental`, the served deployment) screens each new extract
alone, in a scratch database, before anything of it is loaded: a file that fails a file-level
blocking check is *rejected* and the other new files load and publish (exit 3). The file-level
checks are the ones whose answer depends on the file alone:

- `unreadable`: DuckDB or the CSV reader cannot read it (including too many malformed lines);
- `required_column_missing`: a required column is not in the header;
- `direct_identifier`: a column's name or values look like a direct identifier;
- `time_column_unreadable`: not one value of the file's time column can be read;
- the blocking file-level expectations of the normalise suites (FILE_LEVEL_EXPECTATIONS), run as
  the same SQL on the file's staging rows: its quarantined fraction above
  `validation.max_quarantine_fraction`, and conflicting rows for one result_id.

A rejected file is recorded in the ledger table `rejected_files` by sha256 (so it is never screened
again; a corrected file has a new hash and loads), and after the run publishes it is moved to
`<inbox>/rejected/` with `<file>.reason.txt` beside it: the check, the figure and up to three
example rows by row number (never values). Nothing in rejected/ is ever overwritten: a name that is
taken gets a numbered suffix. `hypomag validate --incremental` runs the same screening and moves
nothing.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import duckdb

from pipelines import models
from pipelines.config import Config
from pipelines.db import connect, create_parameter_tables
from pipelines.errors import InputError, ValidationFailed
from pipelines.ingest.common import (LAB_OPTIONAL, LAB_REQUIRED, MED_OPTIONAL, MED_REQUIRED, InputFile,
                                     create_raw_tables, load_table, record_loaded, sha256_of)
from pipelines.validate import is_blocking, load_suites

LOG = logging.getLogger("hypomag")

EXTENSIONS = (".csv", ".csv.gz", ".parquet")
REJECTED_FOLDER = "rejected"
REASON_SUFFIX = ".reason.txt"
EXAMPLE_ROWS = 3
# expectation id -> the figure that explains it (the check is the expectation's own SQL)
FILE_LEVEL_EXPECTATIONS = ("labs_quarantine_fraction", "meds_quarantine_fraction",
                           "labs_result_id_conflict_within_file")


@dataclass(frozen=True)
class InboxTable:
    """One kind of extract in the inbox: its name prefix, raw table and columns."""

    stem: str
    table: str
    staging: str
    required: tuple[str, ...]
    optional: tuple[str, ...]


TABLES = (
    InboxTable("labs", "raw_labs", "stg_lab_rows", LAB_REQUIRED, LAB_OPTIONAL),
    InboxTable("medications", "raw_medications", "stg_medication_rows", MED_REQUIRED, MED_OPTIONAL),
)


@dataclass
class Rejection:
    """A new extract refused by a file-level check: what failed, its figure, example rows."""

    path: str
    sha256: str
    table: str
    check: str
    figure: str
    example_rows: list[str] = field(default_factory=list)
    moved_to: str | None = None

    @property
    def name(self) -> str:
        return Path(self.path).name

    def line(self) -> str:
        """One line: the file, the check and the figure (the console, the flow run's message)."""
        return f"{self.name}: {self.check}: {self.figure}"

    def reason_text(self) -> str:
        """The `<file>.reason.txt` beside the moved file."""
        lines = [f"file: {self.name}", f"sha256: {self.sha256}", f"check: {self.check}", f"figure: {self.figure}"]
        if self.example_rows:
            lines.append("example rows: " + "; ".join(self.example_rows))
        lines += ["", "hypomag did not load this file; the other new files were loaded and published.",
                  "Correct the file and put it back in the inbox under any name: a file with new content loads."]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reason": self.line()}


@dataclass
class InboxLoad:
    """What an incremental ingest did: files loaded into the run's database, files rejected."""

    loaded: list[InputFile] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def stat_key(path: Path) -> str:
    """What the file system says of a file's identity and last change: device, inode, size, and the
    modification and status-change times in nanoseconds. Writing a file changes its status-change
    time, which no program can set back (unlike the modification time: `cp -p`, `rsync -t`)."""
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _sha256(path: Path, hashed: dict[str, tuple[str, str]] | None) -> str:
    """The file's sha256: from `hashed` (path -> (stat_key, sha256) of an earlier night) when the file is
    unchanged since, else read whole; `hashed` gets the answer when the file did not change meanwhile."""
    if hashed is None:
        return sha256_of(path)
    before = stat_key(path)
    known = hashed.get(str(path))
    if known is not None and known[0] == before:
        return known[1]
    digest = sha256_of(path)
    if stat_key(path) == before:
        hashed[str(path)] = (before, digest)
    else:
        hashed.pop(str(path), None)
    return digest


def extracts(inbox: Path, hashed: dict[str, tuple[str, str]] | None = None) -> Iterator[tuple[InboxTable, Path, str]]:
    """(kind, path, sha256) of each extract in the inbox (not in its subfolders), in name order per
    kind (labs first). With `hashed` (file_hashes), a file unchanged since an earlier night is not read
    again: the inbox keeps every loaded extract, so reading them all would cost more each night."""
    for kind in TABLES:
        for path in sorted(p for p in inbox.iterdir()
                           if p.is_file() and p.name.startswith(kind.stem) and p.name.endswith(EXTENSIONS)):
            yield kind, path, _sha256(path, hashed)


def new_files(inbox: Path, loaded: set[str], rejected: set[str],
              hashed: dict[str, tuple[str, str]] | None = None) -> Iterator[tuple[InboxTable, Path, str]]:
    """The extracts whose sha256 the ledger holds neither as loaded nor as rejected; a renamed copy of
    a known file is not new. A copy of a rejected file is named in a warning and left where it is."""
    seen = set(loaded)
    for kind, path, digest in extracts(inbox, hashed):
        if digest in rejected:
            LOG.warning("skipped %s: the same content was rejected before (see %s/); correct it to load it",
                        path.name, Path(inbox) / REJECTED_FOLDER)
        elif digest not in seen:
            seen.add(digest)
            yield kind, path, digest


def create_ledger(con: duckdb.DuckDBPyConnection) -> None:
    """The ledger: `loaded_files` (ingest/common.py) and `rejected_files`, kept across runs; and
    `file_hashes`, the sha256 of each extract in the inbox at the last run with its stat_key."""
    create_raw_tables(con, keep=True)
    con.execute("CREATE TABLE IF NOT EXISTS rejected_files (sha256 VARCHAR, path VARCHAR, input_table VARCHAR, "
                "check_id VARCHAR, reason VARCHAR, rejected_at TIMESTAMP)")
    con.execute("CREATE TABLE IF NOT EXISTS file_hashes (path VARCHAR, stat_key VARCHAR, sha256 VARCHAR)")


def known_file_hashes(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, str]]:
    return {path: (key, digest) for path, key, digest in
            con.execute("SELECT path, stat_key, sha256 FROM file_hashes").fetchall()}


def record_file_hashes(con: duckdb.DuckDBPyConnection, hashed: dict[str, tuple[str, str]]) -> None:
    """The inbox's extracts as this run hashed them (files gone from the inbox are forgotten)."""
    con.execute("DELETE FROM file_hashes")
    if hashed:
        con.executemany("INSERT INTO file_hashes VALUES (?, ?, ?)",
                        [[path, key, digest] for path, (key, digest) in sorted(hashed.items())])


def known_hashes(con: duckdb.DuckDBPyConnection) -> tuple[set[str], set[str]]:
    """(loaded, rejected) sha256 sets of the ledger."""
    loaded = {r[0] for r in con.execute("SELECT sha256 FROM loaded_files").fetchall()}
    rejected = {r[0] for r in con.execute("SELECT sha256 FROM rejected_files").fetchall()}
    return loaded, rejected


def load_new_files(con: duckdb.DuckDBPyConnection, inbox: Path, config: Config, scratch: Path) -> InboxLoad:
    """Screen every new extract alone (in a scratch database under `scratch`), load those that pass
    into `con`, and record both kinds in the ledger. Nothing is moved here (see move_rejected)."""
    inbox = Path(inbox)
    if not inbox.is_dir():
        raise InputError(f"{inbox}: inbox folder not found")
    create_ledger(con)
    loaded, rejected = known_hashes(con)
    hashed = known_file_hashes(con)
    outcome = InboxLoad()
    latest = latest_names(con)
    loaded_paths: dict[str, object] = {}
    for label, loaded_at in con.execute("SELECT path, loaded_at FROM loaded_files ORDER BY loaded_at").fetchall():
        loaded_paths[_ledger_path(label)] = loaded_at  # the latest load of each real path
    for kind, path, digest in new_files(inbox, loaded, rejected, hashed):
        if path.name < latest.get(kind.table, ""):
            LOG.warning("%s sorts before %s, loaded on an earlier night: files load in the order they arrive, "
                        "so where both give one result_id this file's value is the later one (name extracts so "
                        "that they sort in the order they are produced, e.g. labs_2025-12-02.csv)",
                        path.name, latest[kind.table])
        refusal = screen_file(path, digest, kind, config, scratch)
        if refusal is not None:
            outcome.rejected.append(refusal)
            LOG.warning("rejected %s", refusal.line())
            continue
        outcome.loaded.append(load_table(con, path, kind.table, kind.required, kind.optional,
                                         config.columns.get(kind.stem), config,
                                         label=_source_label(kind, path, digest, loaded_paths.get(str(path))),
                                         digest=digest))
    record_loaded(con, outcome.loaded)
    record_rejected(con, outcome.rejected)
    present = {str(p) for p in inbox.iterdir() if p.is_file()}
    record_file_hashes(con, {path: known for path, known in hashed.items() if path in present})
    return outcome


LABEL_SUFFIX = re.compile(r" \(sha256 [0-9a-f]{12}\)$")


def _label(path: Path | str, digest: str) -> str:
    """A rewritten extract's source_file and ledger path (LABEL_SUFFIX reads it back)."""
    return f"{path} (sha256 {digest[:12]})"


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                      "WHERE table_schema = 'main'").fetchall()}


def _ledger_path(label: str) -> str:
    """The real path of a ledger entry or source_file (without a rewritten extract's sha256)."""
    return LABEL_SUFFIX.sub("", label)


def _source_label(kind: InboxTable, path: Path, digest: str, loaded_at: object) -> str:
    """The rows' source_file: the path, or for an extract rewritten in place after it was loaded (new
    content under a loaded name) the path and its new sha256, so that its rows are their own file.
    Staging decides by file which rows a correction supersedes and where duplicates are, and counts
    rows per file: under one name, the earlier load's results would never be superseded by the same
    result_id in the new content, and both versions' values would be loaded."""
    if loaded_at is None:
        return str(path)
    label = _label(path, digest)
    if kind.table == "raw_labs":
        effect = ("its results replace those of the earlier content with the same result_id, and its rows "
                  "without a result_id are added (an unchanged one is quarantined as a duplicate)")
    else:
        effect = ("its orders are added to the earlier content's (orders have no id to replace them by: an "
                  "unchanged order adds no exposure, an order removed from the file stays loaded)")
    LOG.warning("%s has changed since it was loaded (%s): loaded as a new extract, %s; %s",
                path.name, f"{loaded_at:%Y-%m-%d %H:%M}", label, effect)
    return label


def relabel_rewritten_loads(con: duckdb.DuckDBPyConnection) -> int:
    """Give the later loads of an extract rewritten in place, in a database written before such loads
    were labelled (_source_label), the label they get now; returns how many loads were relabelled.

    Ingest numbers a load's rows as (the largest row_id before it) + source_row, so the rows of one
    load share row_id - source_row, and later loads have larger offsets; the ledger's loads of one
    path, in load order, are those offsets in order. A path whose count of offsets and of ledger
    entries differ is left as it is, with a warning."""
    tables = _tables(con)
    if "loaded_files" not in tables:
        return 0
    repeated = con.execute("SELECT path, input_table, list(sha256 ORDER BY loaded_at) FROM loaded_files "
                           "GROUP BY path, input_table HAVING count(*) > 1 ORDER BY path").fetchall()
    relabelled = 0
    for path, table, digests in repeated:
        if table not in ("raw_labs", "raw_medications") or table not in tables:
            continue
        offsets = [r[0] for r in con.execute(f"SELECT DISTINCT row_id - source_row FROM {table} "
                                             "WHERE source_file = ? ORDER BY 1", [path]).fetchall()]
        if len(offsets) != len(digests):
            LOG.warning("%s: the ledger holds %d loads of it and %s %d; its rows are left under one name",
                        path, len(digests), table, len(offsets))
            continue
        for digest, offset in zip(digests[1:], offsets[1:]):
            label = _label(path, digest)
            con.execute(f"UPDATE {table} SET source_file = ? WHERE source_file = ? AND row_id - source_row = ?",
                        [label, path, offset])
            con.execute("UPDATE loaded_files SET path = ? WHERE path = ? AND sha256 = ?", [label, path, digest])
            LOG.warning("%s: the content loaded on a later night under this name is now %s", path, label)
            relabelled += 1
    return relabelled


def latest_names(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Per raw table, the last name (in name order) of the files the ledger holds."""
    found = con.execute("SELECT input_table, path FROM loaded_files").fetchall()
    latest: dict[str, str] = {}
    for table, path in found:
        latest[table] = max(latest.get(table, ""), Path(_ledger_path(path)).name)
    return latest


def record_rejected(con: duckdb.DuckDBPyConnection, rejections: list[Rejection]) -> None:
    for r in rejections:
        con.execute("INSERT INTO rejected_files VALUES (?, ?, ?, ?, ?, now()::TIMESTAMP)",
                    [r.sha256, r.path, r.table, r.check, r.figure])


def screen_inbox(inbox: Path, db: Path | None, config: Config) -> tuple[list[tuple[Path, Rejection | None]], int]:
    """`hypomag validate --incremental`: each extract not yet in the ledger of `db` with its
    rejection (None: it would load); and how many files the ledger already holds. Loads nothing."""
    loaded: set[str] = set()
    rejected: set[str] = set()
    if db is not None and Path(db).exists():
        with duckdb.connect(str(db), read_only=True) as con:
            tables = _tables(con)
            if "loaded_files" in tables:
                loaded = {r[0] for r in con.execute("SELECT sha256 FROM loaded_files").fetchall()}
            if "rejected_files" in tables:
                rejected = {r[0] for r in con.execute("SELECT sha256 FROM rejected_files").fetchall()}
    with tempfile.TemporaryDirectory(prefix="hypomag-screen-") as tmp:
        verdicts = [(path, screen_file(path, digest, kind, config, Path(tmp)))
                    for kind, path, digest in new_files(Path(inbox), loaded, rejected)]
    return verdicts, len(loaded)


def screen_file(path: Path, digest: str, kind: InboxTable, config: Config, scratch: Path) -> Rejection | None:
    """The file-level checks of one extract, alone in a scratch database; None when it passes."""
    folder = Path(tempfile.mkdtemp(prefix="screen-", dir=scratch))
    os.chmod(folder, 0o700)  # the scratch database holds row-level data
    con = connect(folder / "screen.duckdb", config)
    try:
        def refuse(check: str, figure: str, examples: list[str] | None = None) -> Rejection:
            return Rejection(path=str(path), sha256=digest, table=kind.stem, check=check, figure=figure,
                             example_rows=examples or [])

        create_parameter_tables(con, config)
        create_raw_tables(con)
        try:
            load_table(con, path, kind.table, kind.required, kind.optional, config.columns.get(kind.stem), config)
        except (InputError, ValidationFailed) as exc:
            return refuse(_load_check(exc), _without_path(str(exc), path))
        models.build_models(con, tuple(m for m in models.NORMALISE_MODELS if m.startswith("staging/")))
        return _time_column_problem(con, kind, refuse) or _expectation_problem(con, kind, config, refuse)
    finally:
        con.close()
        shutil.rmtree(folder, ignore_errors=True)


def _load_check(exc: Exception) -> str:
    """The check a load error belongs to, from the reader's one-line message."""
    text = str(exc)
    if isinstance(exc, ValidationFailed):
        return "unreadable"  # too many malformed lines
    if "required column" in text:
        return "required_column_missing"
    if "identif" in text:
        return "direct_identifier"
    return "unreadable"


def _without_path(message: str, path: Path) -> str:
    """A reader's message without its leading `<path>: ` (the reason names the file once)."""
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


# staging table: (its time column, the table holding that column's text as given, the text column,
# what a readable value is)
TIME_COLUMNS = {"stg_lab_rows": ("collected_at", "stg_lab_fields", "collected_at_text", "an ISO 8601 date and time"),
                "stg_medication_rows": ("start_at", "stg_medication_rows", "start_at_text",
                                        "an ISO 8601 date (and time)")}


@dataclass(frozen=True)
class UnreadableTimes:
    """A file of which no value of a time column can be read, though some are given."""
    source_file: str
    column: str
    what: str
    given: int
    first: list[tuple[int, str]]  # the first rows (row number, text)


def unreadable_time_columns(con: duckdb.DuckDBPyConnection, staging: str) -> list[UnreadableTimes]:
    """The files of the staging table `staging` whose time column is unreadable throughout: a format
    problem of the whole file, not bad rows. The texts are read only for such files."""
    column, texts, text, what = TIME_COLUMNS[staging]
    found = []
    for (source_file,) in con.execute(f"SELECT source_file FROM {staging} GROUP BY source_file "
                                      f"HAVING count({column}) = 0 ORDER BY source_file").fetchall():
        # the first rows with a text, each with the count of all of them
        first = con.execute(f"SELECT source_row, {text}, count(*) OVER () FROM {texts} "
                            f"WHERE source_file = ? AND {text} IS NOT NULL AND {text} <> '' "
                            f"ORDER BY source_row LIMIT {EXAMPLE_ROWS}", [source_file]).fetchall()
        if first:
            found.append(UnreadableTimes(source_file, column, what, first[0][2], [(r, t) for r, t, _ in first]))
    return found


def _time_column_problem(con: duckdb.DuckDBPyConnection, kind: InboxTable, refuse) -> Rejection | None:
    """A time column of which no value can be read: a format problem of the whole file."""
    found = unreadable_time_columns(con, kind.staging)
    if not found:
        return None
    times = found[0]  # the scratch database holds one file
    return refuse("time_column_unreadable", f"none of {times.given:,} {times.column} values is {times.what}",
                  [f"row {r}" for r, _ in times.first])


def _expectation_problem(con: duckdb.DuckDBPyConnection, kind: InboxTable, config: Config,
                         refuse) -> Rejection | None:
    """The first failing blocking file-level expectation of the file's staging table, with its figure."""
    for suite in load_suites("normalise"):
        if suite["meta"]["table"] != kind.staging:
            continue
        for e in suite["expectations"]:
            ident = e["meta"]["id"]
            if ident not in FILE_LEVEL_EXPECTATIONS or not is_blocking(e, config):
                continue
            query = e["kwargs"]["unexpected_rows_query"].replace("{batch}", kind.staging)
            if con.execute(f"SELECT count(*) FROM ({query}) AS unexpected").fetchone()[0] == 0:
                continue
            if ident.endswith("quarantine_fraction"):
                return refuse(ident, *_quarantine_figure(con, kind, config))
            rows = [r[0] for r in con.execute(f"SELECT source_row FROM ({query}) AS unexpected "
                                              f"ORDER BY source_row LIMIT {EXAMPLE_ROWS}").fetchall()]
            return refuse(ident, e["meta"].get("description", ident).split(":")[0], [f"row {r}" for r in rows])
    return None


def _quarantine_figure(con: duckdb.DuckDBPyConnection, kind: InboxTable, config: Config) -> tuple[str, list[str]]:
    """"12.0% of 5,000 rows quarantined; limit 5%" and the first quarantined rows with their reasons
    (labs: in-scope rows, duplicates aside, as labs_quarantine_fraction counts them)."""
    if kind.staging == "stg_lab_rows":
        counted, base, what = "status = 'quarantined' AND reason <> 'duplicate'", "status <> 'out_of_scope'", \
            "in-scope rows"
    else:
        counted, base, what = "status = 'quarantined'", "TRUE", "rows"
    quarantined, rows = con.execute(
        f"SELECT count(*) FILTER (WHERE {counted}), count(*) FILTER (WHERE {base}) FROM {kind.staging}").fetchone()
    limit = config.validation.max_quarantine_fraction
    share = quarantined / rows if rows else 0.0
    figure = f"{100 * share:.1f}% of {rows:,} {what} quarantined; limit {100 * limit:g}%"
    examples = [f"row {r} ({reason})" for r, reason in con.execute(
        f"SELECT source_row, reason FROM {kind.staging} WHERE {counted} ORDER BY source_row "
        f"LIMIT {EXAMPLE_ROWS}").fetchall()]
    return figure, examples


def move_rejected(inbox: Path, rejections: list[Rejection]) -> None:
    """Move each rejected file into `<inbox>/rejected/` with its `<file>.reason.txt`; never over an
    existing file (a taken name gets a numbered suffix). A file that cannot be moved stays where it is
    (the ledger still refuses it) and the run says so."""
    if not rejections:
        return
    target = Path(inbox) / REJECTED_FOLDER
    for r in rejections:
        source = Path(r.path)
        try:
            target.mkdir(exist_ok=True)
            if target.is_symlink() or not target.is_dir():
                raise NotADirectoryError(f"{target} is not a folder")
            if not source.is_file() or sha256_of(source) != r.sha256:
                continue  # gone or changed since it was screened: nothing of ours to move
            moved = _free_name(target, source.name)
            os.link(source, moved)  # fails if the name was taken meanwhile; never replaces
            source.unlink()
            reason = _write_new(moved.with_name(moved.name + REASON_SUFFIX), r.reason_text())
            r.moved_to = str(moved)
            LOG.warning("moved %s to %s (reason in %s)", source, moved, reason.name)
        except OSError as exc:
            LOG.warning("rejected %s stays in the inbox (cannot move it into %s: %s); it will not be loaded",
                        source.name, target, exc.strerror or exc)


def _free_name(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/<base>-2<ext>`, -3, ... when it or its reason file exists."""
    ext = next((e for e in EXTENSIONS if name.endswith(e)), "")
    base = name[:len(name) - len(ext)] if ext else name
    for n in range(1, 10_000):
        candidate = folder / (name if n == 1 else f"{base}-{n}{ext}")
        if not os.path.lexists(candidate) and not os.path.lexists(candidate.with_name(candidate.name + REASON_SUFFIX)):
            return candidate
    raise FileExistsError(f"{folder}: no free name for {name}")


def _write_new(path: Path, text: str) -> Path:
    """Create `path` with `text`; fails rather than replace an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def last_loaded_at(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """When the ledger last took a file (UTC), or None when it holds none."""
    value = con.execute("SELECT max(loaded_at) FROM loaded_files").fetchone()[0]
    return None if value is None else value.replace(tzinfo=timezone.utc)
