"""Publishing: one run at a time per database, one commit point per publication, and run history.

Layout (everything hypomag writes, beside `--db`):

    <db>.hypomag/                 the store (marker `.hypomag-store`)
        runs/<run id>/db/hypomag.duckdb   the run's database (db/ is 0700, the file 0600); in a
                                          nightly run (--incremental) a link to live/hypomag.duckdb
        live/hypomag.duckdb               --incremental: the one database the nightly runs change, each
                                          in one transaction committed just before its rename of current
        runs/<run id>/out/                report.html, results.json, ..., restricted/ (0700)
        runs/<run id>/dated/<run>         --incremental: the history as of this run, links to
                                          ../../<earlier run id>/out, one per run (UTC start time)
        current  -> runs/<run id>         THE commit point, replaced by rename
        previous -> runs/<run id>         the run current pointed at before (kept for readers)
    <db>        -> <store>/current/db/hypomag.duckdb      made once, never changed
    <out>       -> <store>/current/out                    (a plain run) made once, never changed
    <out>/latest, <out>/<run>     (--incremental) links through current, in a folder marked
                                  `.hypomag-output`; <out>/index.html and <out>/failed/ are
                                  files of their own (pipelines/history.py)

A run builds its database and outputs in a new `runs/<run id>/` and publishes by one rename of a
fresh `current` symlink (`Store.commit`): `--db` and `--out` resolve through `current`, so both
switch together or not at all. A kill at any instant leaves the previous consistent pair:

- before the commit: `current` still names the previous run; the killed run's folder, and any
  `.tmp` link, is removed by the next run (`Store.prune`, `remove_leftovers`, under the lock);
  the links `--db`/`--out`/`<out>/<date>` a first run makes before its commit dangle until a
  run commits (and are removed when that run fails or is stopped);
- after the commit: the new pair is published; pruning is left to the next run.

The previous run's folder stays until the next successful commit, so a reader holding it keeps
working; older run folders are removed, except the outputs (not the database) of runs that the
dated history still lists.

- `RunLock`: an exclusive, non-blocking `flock` on `<db>.lock`; a second run on the same database
  fails at once with a clear message instead of corrupting it. The kernel drops the lock when the
  process dies, so a killed run never leaves a stale lock.
- Dated publishing (the nightly job): `ROOT/<UTC start time>/` and `ROOT/latest`; the history page
  `ROOT/index.html` (every run, failed ones too, with the trend of the headline rates; a run whose
  headline rate leaves the previous run's 95% interval is flagged) is pipelines/history.py's.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from pipelines.errors import InputError
from pipelines.reports.build import history_page
from pipelines.paths_guard import (OUTPUT_MARKER, STORE_MARKER, db_link_target, is_store, location,
                                   out_link_target, read_marker)

HEADLINE_ABNORMALITIES = ("hypokalemia", "hyponatremia", "hypophosphatemia", "hypocalcemia")


class RunLocked(InputError):
    """Another run holds the database (exit code 2)."""


class RunLock:
    """Exclusive lock on `<db>.lock` for the whole run."""

    def __init__(self, db_path: Path):
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # never through a link
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLocked(
                f"{self.path}: another hypomag run (pid {holder}) is using this database; "
                "wait for it to finish (nothing was changed)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


PAUSE_ENV = "HYPOMAG_TEST_PAUSE_AT"
LEFTOVER_NAME = re.compile(r"\.(latest-\d+|index-\d+\.html|.+\.(partial|previous|tmp)-\d+)")


def pause_point(name: str) -> None:
    """Test hook: with HYPOMAG_TEST_PAUSE_AT="<name>:<file>" the run writes its pid to <file> at the
    point called <name> and waits there until <file> is removed (at most 600 s), so a test can kill
    it, or change something, at a known instant."""
    spec = os.environ.get(PAUSE_ENV, "")
    point, _, flag = spec.partition(":")
    if point != name:
        return
    Path(flag).write_text(str(os.getpid()), encoding="utf-8")
    deadline = time.monotonic() + 600
    while os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.1)


def write_marker(path: Path, **fields: Any) -> None:
    """A marker file: one JSON line saying hypomag made the folder, written by rename."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"created_by": "hypomag", **fields}) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def point(link: Path, target: str) -> None:
    """Make `link` a symlink with the text `target`, atomically (a new symlink renamed over the old)."""
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def place_link(link: Path, target: Path) -> bool:
    """Make `link` a relative symlink to `target` unless it already is one; True when it was made."""
    text = os.path.relpath(target, location(link).parent)
    if link.is_symlink() and os.readlink(link) == text:
        return False
    if link.is_dir() and not link.is_symlink():
        link.rmdir()  # an empty folder (paths_guard accepted only an empty one)
    point(link, text)
    return True


class Store:
    """The folder of a database's runs, `<db>.hypomag/`, and its one commit point `current`."""

    def __init__(self, root: Path):
        self.root = root

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def ensure(self) -> None:
        """Create the store (marker included) by one rename, so it never exists half made."""
        if is_store(self.root):
            self.runs.mkdir(exist_ok=True)
            return
        tmp = self.root.with_name(f".{self.root.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "runs").mkdir(parents=True)
        write_marker(tmp / STORE_MARKER, layout="store")
        os.rename(tmp, self.root)

    def pointer(self, name: str) -> str | None:
        """The run id that `current` or `previous` names (None when there is none)."""
        link = self.root / name
        if not link.is_symlink():
            return None
        parts = Path(os.readlink(link)).parts
        return parts[1] if len(parts) == 2 and parts[0] == "runs" else None

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    def new_run(self, run_id: str) -> Path:
        """A fresh run folder with an owner-only db/ folder."""
        folder = self.run_dir(run_id)
        folder.mkdir()
        (folder / "db").mkdir(mode=0o700)
        os.chmod(folder / "db", 0o700)
        return folder

    def commit(self, run_id: str, before: Callable[[], Any] | None = None) -> None:
        """Publish `run_id`: remember the current run as previous, then the one rename; `before` runs
        just before the rename (a nightly run commits its database transaction there)."""
        earlier = self.pointer("current")
        if earlier and earlier != run_id:
            point(self.root / "previous", f"runs/{earlier}")
        pause_point("commit")
        if before is not None:
            before()
        point(self.root / "current", f"runs/{run_id}")

    @property
    def live(self) -> Path:
        """The nightly runs' one database (--incremental), in an owner-only folder of the store."""
        return self.root / "live" / "hypomag.duckdb"

    def live_database(self, published: Path) -> Path:
        """The live database, made from the published one (`published`, the --db path) when the
        published run did not use it (a database published by a plain run, or none yet)."""
        live = self.live
        current = self.pointer("current")
        link = self.run_dir(current) / "db" / "hypomag.duckdb" if current else None
        if link is not None and link.is_symlink() and link.resolve() == live.resolve() and live.is_file():
            return live
        folder = live.parent
        if folder.is_dir():
            shutil.rmtree(folder)  # a live database that no published run uses (a killed first run's)
        folder.mkdir(mode=0o700)
        os.chmod(folder, 0o700)
        if link is not None and published.is_file():
            shutil.copy2(published, live)  # once: continue from a database a plain run published
        return live

    def history_ids(self, run_id: str) -> set[str]:
        """Run ids whose outputs the dated history of `run_id` links to."""
        dated = self.run_dir(run_id) / "dated"
        if not dated.is_dir():
            return set()
        ids = set()
        for link in dated.iterdir():
            parts = Path(os.readlink(link)).parts if link.is_symlink() else ()
            if len(parts) == 4 and parts[:2] == ("..", ".."):
                ids.add(parts[2])
        return ids

    def prune(self, keep_restricted: int | None = None) -> None:
        """Remove killed or superseded runs; keep current, previous and the history's outputs. With
        `keep_restricted`, the row-level files (out/restricted/) of all but that many newest of the kept
        runs go too: each run's copy covers the whole history as it was, so older ones only add disk
        and copies of row-level data."""
        live = {i for i in (self.pointer("current"), self.pointer("previous")) if i}
        history = set().union(*(self.history_ids(i) for i in live)) if live else set()
        kept = sorted(live | history)  # run ids start with their UTC start time
        restricted = set(kept[-keep_restricted:]) if keep_restricted else set(kept)
        restricted.add(self.pointer("current"))  # never the published run's, whatever the clock did
        for folder in self.runs.iterdir() if self.runs.is_dir() else ():
            out = folder / "out"
            if (folder.name in kept and folder.name not in restricted and not folder.is_symlink()
                    and out.is_dir() and not out.is_symlink()):
                remove(out / "restricted")
            if folder.name in live:
                continue
            if folder.name in history and folder.is_dir() and not folder.is_symlink():
                for part in folder.iterdir():
                    if part.name != "out":
                        remove(part)
                continue
            remove(folder)
        for leftover in self.root.iterdir():
            if LEFTOVER_NAME.fullmatch(leftover.name):
                remove(leftover)


def remove(path: Path) -> None:
    """Delete a file, link or folder tree that hypomag made."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def remove_leftovers(db: Path, out: Path, store: Path, incremental: bool) -> None:
    """What killed runs of this and earlier versions left beside --db and --out (under the lock).

    Only names hypomag makes are touched: `<db>.building[.wal]`, `.<name>.partial-<pid>`,
    `.<name>.previous-<pid>`, `.<name>.tmp-<pid>`, `.latest-<pid>`, `.index-<pid>.html`.
    """
    db_at, out_at = location(db), location(out)
    for path in (db_at.with_name(db_at.name + ".building"), db_at.with_name(db_at.name + ".building.wal")):
        path.unlink(missing_ok=True)
    names = {db_at.name, out_at.name, store.name}
    for folder in {db_at.parent, out_at.parent}:
        for entry in folder.iterdir():
            match = LEFTOVER_NAME.fullmatch(entry.name)
            if match and entry.name[1:].rsplit(".", 1)[0] in names:
                remove(entry)
    if incremental and out_at.is_dir() and read_marker(out_at / OUTPUT_MARKER):
        for entry in out_at.iterdir():
            if LEFTOVER_NAME.fullmatch(entry.name):
                remove(entry)


def link_single(db: Path, out: Path, store: Path) -> list[Path]:
    """The links of a plain run, `--db` and `--out` through `current`; returns the ones made now."""
    made = []
    if not os.path.lexists(db) or db.is_symlink():
        if place_link(db, db_link_target(store)):
            made.append(db)
    if place_link(out, out_link_target(store)):
        made.append(out)
    return made


def link_dated(db: Path, root: Path, store: Path, dates: Iterable[str]) -> list[Path]:
    """The links of a dated run: `--db`, ROOT/latest and ROOT/<run> through `current` (ROOT/index.html
    is a page of its own, pipelines/history.py)."""
    made = []
    if not os.path.lexists(db) or db.is_symlink():
        if place_link(db, db_link_target(store)):
            made.append(db)
    if not root.is_dir():
        root.mkdir(parents=True)
        made.append(root)
    if read_marker(root / OUTPUT_MARKER) is None:
        write_marker(root / OUTPUT_MARKER, layout="dated", store=str(store))
    current = store / "current"
    for link, target in [(root / "latest", current / "out"), *((root / d, current / "dated" / d) for d in dates)]:
        if place_link(link, target):
            made.append(link)
    return made


def replace_legacy_db(db: Path, store: Path) -> None:
    """A database file of an earlier hypomag version at --db becomes the link into the store."""
    if db.is_file() and not db.is_symlink():
        point(db, os.path.relpath(db_link_target(store), location(db).parent))
        location(db).with_name(location(db).name + ".wal").unlink(missing_ok=True)


def published_runs(root: Path) -> list[tuple[str, dict[str, Any]]]:
    """(run name, results.json) of every published dated run under root, oldest first."""
    runs = []
    if not root.is_dir():
        return runs
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "latest"):
        results = folder / "results.json"
        if results.is_file():
            runs.append((folder.name, json.loads(results.read_text(encoding="utf-8"))))
    return runs


def headline(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The headline rates: low Mg among each abnormality (co-occurrence window, result level) and the
    Mg-check rate. The co-occurrence window is the last, widest window of the rows (pipelines/db.py
    window_rows), whatever its name: "24h" by default, named by the run's hours."""
    out = {}
    window = next((r["window"] for r in reversed(results["cooccurrence"]) if r["window"] != "same_draw"), None)
    for row in results["cooccurrence"]:
        if (row["direction"] == "hypomg_given_abnormality" and row["window"] == window and row["level"] == "result"
                and row["abnormality"] in HEADLINE_ABNORMALITIES):
            out[f"low Mg among {row['abnormality']}"] = {k: row[k] for k in ("prevalence", "ci_low", "ci_high")}
    audit = results["audit"]["overall"]
    out["Mg checked in hypokalemia"] = {"prevalence": audit["rate"], "ci_low": audit["ci_low"], "ci_high": audit["ci_high"]}
    return out


def history_flags(previous: dict[str, Any] | None, current: dict[str, Any]) -> list[dict[str, Any]]:
    """Headline rates that moved outside the previous run's 95% interval."""
    if previous is None:
        return []
    before, now = headline(previous), headline(current)
    flags = []
    for name, rate in now.items():
        prior = before.get(name) or {}
        if None in (rate["prevalence"], prior.get("ci_low"), prior.get("ci_high")):
            continue
        if not prior["ci_low"] <= rate["prevalence"] <= prior["ci_high"]:
            flags.append({"measure": name, "rate": rate["prevalence"], "previous_ci_low": prior["ci_low"],
                          "previous_ci_high": prior["ci_high"]})
    return flags


def write_index(root: Path, dest: Path | None = None) -> None:
    """ROOT/index.html (or `dest`): every run published under ROOT and the headline trend across runs.

    Aggregates only; links are relative to ROOT (`<run>/report.html`, `latest/report.html`). The
    page is rendered by the report's templates, so it shares their palette, styles and safety.
    """
    page = history_page(published_runs(root))
    dest = dest or root / "index.html"
    tmp = dest.with_name(f".index-{os.getpid()}.html")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, dest)
