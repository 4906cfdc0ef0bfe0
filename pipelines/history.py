"""The nightly job's folder of reports (`--out` of `run --incremental` / `serve`): every run kept
and findable, failed ones included.

    OUT/.hypomag-output                 marker: hypomag made this folder (pipelines/paths_guard.py)
    OUT/2026-12-01T020000Z/             a published run, named by its UTC start time (a link into
                                        the store's `current/dated/`, published with the database)
    OUT/latest                          the newest published run
    OUT/failed/2026-12-02T020000Z/      a run that failed: failure.json (the reason) and the
                                        validation.json it had got to; marker `.hypomag-output`
    OUT/index.html                      every run, published or failed, newest first; the trend
    OUT/plotly-<version>.min.js         plotly.js, written once for the history page (each run's
                                        report.html still embeds its own, so it stays self-contained)

`[schedule] keep_runs` bounds what is kept: the dated history of a new run lists at most that many
published runs (the store drops the outputs no history lists), and failed records beyond that many
are removed. Only what hypomag made is removed: links into this store's `current/dated/`, and
failed folders holding hypomag's marker; never `latest`.
"""
from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipelines.paths_guard import OUTPUT_MARKER, link_target, read_marker
from pipelines.publish import remove, write_marker
from pipelines.reports.build import history_page

RUN_NAME_FORMAT = "%Y-%m-%dT%H%M%SZ"
RUN_NAME = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{6}Z)?(-\d+)?")  # dates: folders of earlier versions
FAILED = "failed"
PLOTLY_FILE = re.compile(r"plotly-[0-9A-Za-z.+-]+\.min\.js")


def run_name(started_at: str) -> str:
    """A run's folder name: its UTC start time, `2026-12-01T020000Z` (sorts as it happened)."""
    return datetime.fromisoformat(started_at).astimezone(timezone.utc).strftime(RUN_NAME_FORMAT)


def newest(names: list[str], keep: int) -> list[str]:
    """The `keep` latest run names, oldest first."""
    return sorted(names)[-keep:] if keep > 0 else []


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ---- failed runs --------------------------------------------------------------------------------

def record_failure(out: Path, store: Path, name: str, record: dict[str, Any], validation: dict[str, Any]) -> Path:
    """OUT/failed/<name>/ with failure.json (`record`: the reason, times) and validation.json.

    Written by a failed incremental run while it holds the lock; OUT is made (with its marker) if
    this is the first run. Never replaces a folder: a taken name gets a numbered suffix.
    """
    if not out.is_dir():
        out.mkdir(parents=True)
    if read_marker(out / OUTPUT_MARKER) is None:
        write_marker(out / OUTPUT_MARKER, layout="dated", store=str(store))
    failed = out / FAILED
    if not failed.is_dir():
        failed.mkdir()
        write_marker(failed / OUTPUT_MARKER, layout="failed")
    folder = failed / name
    n = 1
    while os.path.lexists(folder):
        n += 1
        folder = failed / f"{name}-{n}"
    folder.mkdir()
    write_marker(folder / OUTPUT_MARKER, layout="failed-run")
    _write_json(folder / "validation.json", validation)
    _write_json(folder / "failure.json", record)
    return folder


def failed_runs(out: Path) -> list[dict[str, Any]]:
    """The failure records under OUT/failed/ (hypomag's folders only), oldest first."""
    folder = out / FAILED
    if not folder.is_dir() or read_marker(folder / OUTPUT_MARKER) is None:
        return []
    records = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and not entry.is_symlink() and read_marker(entry / OUTPUT_MARKER):
            record = _read_json(entry / "failure.json") or {}
            records.append({**record, "name": entry.name})
    return records


# ---- published runs -----------------------------------------------------------------------------

def is_our_run_link(link: Path, store: Path) -> bool:
    """OUT/<name> is a link hypomag made into this store's `current/dated/<name>`."""
    return link.is_symlink() and link_target(link) == store / "current" / "dated" / link.name


def published(out: Path, store: Path) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, results.json, manifest.json) of every published run reachable under OUT, oldest first."""
    runs = []
    if not out.is_dir():
        return runs
    for entry in sorted(out.iterdir()):
        if not RUN_NAME.fullmatch(entry.name) or not (entry.is_symlink() or entry.is_dir()):
            continue
        results = _read_json(entry / "results.json")
        if results is not None:
            runs.append((entry.name, results, _read_json(entry / "manifest.json") or {}))
    return runs


def prune(out: Path, store: Path, keep: int) -> None:
    """After a commit: remove OUT/<name> links whose run the published history no longer lists,
    and failed records beyond the `keep` latest. Only hypomag's own links and marked folders."""
    if not out.is_dir():
        return
    for entry in out.iterdir():
        if RUN_NAME.fullmatch(entry.name) and is_our_run_link(entry, store) and not entry.exists():
            entry.unlink()
    records = failed_runs(out)
    for record in records[:max(len(records) - keep, 0)]:
        folder = out / FAILED / record["name"]
        if read_marker(folder / OUTPUT_MARKER):
            remove(folder)


# ---- the page -----------------------------------------------------------------------------------

def plotly_file(out: Path) -> str:
    """plotly.js beside the history page, written once per OUT folder (and per plotly version)."""
    from plotly import __version__ as plotly_version
    from plotly.offline import get_plotlyjs

    name = f"plotly-{plotly_version}.min.js"
    path = out / name
    if not path.is_file() or path.is_symlink():
        tmp = out / f".{name}.tmp-{os.getpid()}"
        tmp.write_text(get_plotlyjs(), encoding="utf-8")
        os.replace(tmp, path)
    for other in out.iterdir():  # an earlier plotly version's copy, which hypomag wrote
        if other.name != name and PLOTLY_FILE.fullmatch(other.name) and other.is_file() and not other.is_symlink():
            other.unlink()
    return name


def write_page(out: Path, store: Path) -> Path:
    """OUT/index.html: every published and failed run, newest first, and the headline trend."""
    runs = published(out, store)
    page = history_page([(name, results) for name, results, _ in runs],
                        manifests={name: manifest for name, _, manifest in runs},
                        failed=failed_runs(out), plotly_src=plotly_file(out))
    dest = out / "index.html"
    tmp = out / f".index-{os.getpid()}.html"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, dest)  # replaces the link of earlier versions, never what it pointed to
    return dest
