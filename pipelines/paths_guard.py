"""Path safety: hypomag writes only into what it created, and checks so before any work starts.

Checked by the CLI before Prefect starts and again by `steps.prepare` (the nightly deployment
calls the flow directly), with nothing written by either:

- `--input`, `--out`, `--db` and the store of `--db` (`<db>.hypomag/`, pipelines/publish.py)
  must not contain one another (paths resolved; `--input X --out X`, `--db` inside `--out`,
  `--out` inside `--input`, ...).
- `--db` must not exist, or be a DuckDB database written by hypomag (opened read-only: a
  `hypomag_meta` table with `created_by = hypomag`, or the older `loaded_files` + `params`
  tables), or the symlink hypomag made into its store. A file that is not DuckDB (a CSV, notes)
  is refused from its first bytes, without being opened by DuckDB at all.
- `--out` must not exist, or be an empty folder, or be what hypomag made: the symlink into its
  store (a plain run) or a folder holding the `.hypomag-output` marker of the same store (the
  dated reports of `--incremental`).
- The folders that will receive the links, the lock and the store must be folders the user
  can write to, and the store's file system must have at least twice the input's size plus
  100 MB free.

Every failure is a PathError (exit 2) with one line naming the path.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from pipelines.errors import InputError, PathError

STORE_SUFFIX = ".hypomag"
STORE_MARKER = ".hypomag-store"
OUTPUT_MARKER = ".hypomag-output"
DB_FILE = "hypomag.duckdb"
DUCKDB_MAGIC = b"DUCK"  # bytes 8-11 of every DuckDB database file
MIN_FREE_BYTES = 100 * 1024 * 1024
LOCK_CONTENT = re.compile(rb"\s*\d*\s*")


def location(path: Path) -> Path:
    """Absolute path with every folder resolved but the last component kept (a link stays a link)."""
    absolute = os.path.abspath(path)
    return Path(os.path.realpath(os.path.dirname(absolute))) / os.path.basename(absolute)


def store_for(db: Path) -> Path:
    """The store folder of a database path: `<db>.hypomag` beside it."""
    db_at = location(db)
    return db_at.with_name(db_at.name + STORE_SUFFIX)


def db_link_target(store: Path) -> Path:
    return store / "current" / "db" / DB_FILE


def out_link_target(store: Path) -> Path:
    return store / "current" / "out"


def link_target(link: Path) -> Path:
    """Where a symlink points, as an absolute normalised path (without following further links)."""
    return Path(os.path.normpath(os.path.join(os.path.dirname(location(link)), os.readlink(link))))


def read_marker(path: Path) -> dict[str, Any] | None:
    """A hypomag marker file (one JSON line with created_by = hypomag), or None."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 4096:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("created_by") == "hypomag" else None


def is_store(folder: Path) -> bool:
    return folder.is_dir() and not folder.is_symlink() and read_marker(folder / STORE_MARKER) is not None


def is_link_into_a_store(link: Path) -> bool:
    """A symlink to `<some store>/current/out`: hypomag made it, for another database."""
    target = link_target(link)
    return target.name == "out" and target.parent.name == "current" and is_store(target.parent.parent)


def enclosing_store(path: Path) -> Path | None:
    """The hypomag store a path lies inside (its own files are not to be named as --db/--out/--input)."""
    for parent in path.parents:
        if (parent / STORE_MARKER).is_file() and is_store(parent):
            return parent
    return None


def nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path("/")


def check_paths(input_dir: Path, db: Path, out: Path, incremental: bool) -> None:
    """Every check of the module docstring; raises PathError (exit 2) naming the path."""
    if not Path(input_dir).is_dir():
        raise InputError(f"{input_dir}: input folder not found")
    store = store_for(db)
    check_overlap(Path(input_dir), Path(db), Path(out), store)
    check_writable_folder(location(db).parent, f"--db {db}")
    out_folder = location(out)
    check_writable_folder(out_folder if incremental and out_folder.is_dir() else out_folder.parent, f"--out {out}")
    check_store(store)
    check_lock(Path(db))
    check_db(Path(db), store)
    if not incremental:
        check_not_nightly(Path(db), store)
    check_out(Path(out), store, incremental)
    extra = Path(db).stat().st_size if incremental and Path(db).is_file() else 0
    check_free_space(nearest_existing(store), tree_bytes(Path(input_dir)) + extra // 2)


def check_overlap(input_dir: Path, db: Path, out: Path, store: Path) -> None:
    """No two of input, out, db and the store may be the same path or inside one another."""
    named = [("--input", str(input_dir), Path(os.path.realpath(input_dir))),
             ("--out", str(out), location(out)),
             ("--db", str(db), location(db)),
             ("the store of --db", str(store), store)]
    for flag, text, path in named[:3]:
        inside = enclosing_store(path)
        if inside is not None:
            raise PathError(f"{flag} {text} is inside hypomag's store {inside}: use the --db and --out links "
                            "beside it, and keep inputs elsewhere")
    for i, (a_flag, a_text, a_path) in enumerate(named):
        for b_flag, b_text, b_path in named[i + 1:]:
            if a_path == b_path:
                relation = f"{a_flag} {a_text} and {b_flag} {b_text} are the same path"
            elif a_path in b_path.parents:
                relation = f"{b_flag} {b_text} is inside {a_flag} {a_text}"
            elif b_path in a_path.parents:
                relation = f"{a_flag} {a_text} is inside {b_flag} {b_text}"
            else:
                continue
            raise PathError(f"{relation}: hypomag never writes into its input or over its own database; "
                            "choose paths that do not contain one another")


def check_writable_folder(folder: Path, what: str) -> None:
    """The nearest existing folder on the way to `folder` is a folder the user may write in."""
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise PathError(f"{existing}: is a file, not a folder ({what} would be created under it)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PathError(f"{existing}: no permission to write in this folder (needed for {what})")


def check_store(store: Path) -> None:
    if os.path.lexists(store) and not is_store(store):
        raise PathError(f"{store}: exists and is not a hypomag store (no {STORE_MARKER} marker); hypomag keeps "
                        "the database's runs there: move it away or choose another --db")


def check_lock(db: Path) -> None:
    """`<db>.lock` holds a pid or nothing: anything else is not ours to truncate."""
    lock = location(db).with_name(location(db).name + ".lock")
    if not os.path.lexists(lock):
        return
    if lock.is_symlink() or not lock.is_file() or lock.stat().st_size > 32 \
            or not LOCK_CONTENT.fullmatch(lock.read_bytes()):
        raise PathError(f"{lock}: exists and is not a hypomag lock file; move it away or choose another --db")


def check_not_nightly(db: Path, store: Path) -> None:
    """A plain run would publish a database of its own input alone over a nightly's history."""
    published = store / "current" / "db" / "hypomag.duckdb"
    if published.is_symlink() and "live" in Path(os.readlink(published)).parts:
        raise PathError(f"--db {db}: the database of nightly runs (--incremental, serve); run with --incremental, "
                        "or choose another --db")


def check_db(db: Path, store: Path) -> None:
    if db.is_symlink():
        if link_target(db) == db_link_target(store):
            return
        raise PathError(f"--db {db}: a symlink hypomag did not make (-> {os.readlink(db)}); hypomag replaces "
                        "only its own files: choose another --db")
    if not os.path.lexists(db):
        return
    if db.is_dir():
        raise PathError(f"--db {db}: is a folder; --db names the database file to create")
    if not db.is_file():
        raise PathError(f"--db {db}: is not a regular file")
    problem = hypomag_db_problem(db)
    if problem:
        raise PathError(f"--db {db}: exists and {problem}; hypomag replaces only databases it wrote: "
                        "choose a new path")


def hypomag_db_problem(db: Path) -> str | None:
    """Why `db` is not a database hypomag wrote (None when it is), opening nothing for writing."""
    with open(db, "rb") as f:
        header = f.read(12)
    if len(header) < 12 or header[8:12] != DUCKDB_MAGIC:
        return "is not a DuckDB database"
    import duckdb

    try:
        with duckdb.connect(str(db), read_only=True) as con:
            tables = {r[0] for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
            if "hypomag_meta" in tables:
                row = con.execute("SELECT value FROM hypomag_meta WHERE key = 'created_by'").fetchone()
                return None if row and row[0] == "hypomag" else "its hypomag_meta table does not name hypomag"
    except duckdb.Error as exc:
        return f"cannot be opened read-only as a DuckDB database ({' '.join(str(exc).split())[:160]})"
    if {"loaded_files", "params"} <= tables:  # databases of hypomag versions before hypomag_meta
        return None
    return "is a DuckDB database not written by hypomag (no hypomag_meta table)"


def check_out(out: Path, store: Path, incremental: bool) -> None:
    if incremental:
        check_dated_root(out, store)
        return
    if out.is_symlink():
        if link_target(out) == out_link_target(store) or is_link_into_a_store(out):
            return
        raise PathError(f"--out {out}: a symlink hypomag did not make (-> {os.readlink(out)}); "
                        "choose a new or empty folder")
    if not os.path.lexists(out):
        return
    if not out.is_dir():
        raise PathError(f"--out {out}: is a file, not a folder")
    entries = sorted(os.listdir(out))
    if not entries:
        return
    marker = read_marker(out / OUTPUT_MARKER)
    if marker and marker.get("layout") == "dated":
        raise PathError(f"--out {out}: holds the dated reports of `hypomag run --incremental`; "
                        "add --incremental or choose another --out")
    raise PathError(f"--out {out}: exists and holds files hypomag did not publish ({', '.join(entries[:3])}"
                    f"{', ...' if len(entries) > 3 else ''}); hypomag replaces only its own outputs: "
                    "choose a new or empty folder")


def check_dated_root(out: Path, store: Path) -> None:
    """The root of dated reports: new, empty, or marked as this store's by an earlier run."""
    if not os.path.lexists(out):
        return
    if not out.is_dir():
        raise PathError(f"--out {out}: is not a folder")
    entries = sorted(os.listdir(out))
    if not entries:
        return
    marker = read_marker(out / OUTPUT_MARKER)
    if marker and marker.get("layout") == "dated":
        if marker.get("store") == str(store):
            return
        raise PathError(f"--out {out}: holds the reports of another database ({marker.get('store')}); "
                        "use that database's --db or another --out")
    raise PathError(f"--out {out}: exists and holds files hypomag did not publish ({', '.join(entries[:3])}"
                    f"{', ...' if len(entries) > 3 else ''}); choose a new or empty folder")


def tree_bytes(folder: Path) -> int:
    """Total size of the regular files under a folder (links not followed)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def check_free_space(folder: Path, input_bytes: int) -> None:
    """At least twice the input plus 100 MB free where the run's database and outputs are built."""
    need = 2 * input_bytes + MIN_FREE_BYTES
    free = shutil.disk_usage(folder).free
    if free < need:
        mb = 1024 * 1024
        raise PathError(f"{folder}: {free // mb:,} MB free, but a run on {input_bytes // mb:,} MB of input needs "
                        f"at least {need // mb:,} MB (twice the input plus 100 MB); free some space or "
                        "choose another --db")
