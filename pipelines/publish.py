"""Publishing: one run at a time per database, outputs swapped in by rename, and run history.

- `RunLock`: an exclusive, non-blocking `flock` on `<db>.lock`; a second run on the same database
  fails at once with a clear message instead of corrupting it. The kernel drops the lock when the
  process dies, so a killed run never leaves a stale lock.
- `swap_in`: move a finished folder over a published one by rename (never copy), so readers see
  either the old or the new outputs, never half of each.
- Dated publishing (the nightly job): `ROOT/<run date>/` plus `ROOT/latest` (a symlink replaced by
  rename) and `ROOT/index.html`, the list of every published run with the trend of the headline
  rates; a run whose headline rate leaves the previous run's 95% interval is flagged.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any

from pipelines.errors import InputError

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
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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


def swap_in(staged: Path, target: Path) -> None:
    """Replace `target` (a folder) by `staged` using renames only."""
    previous = target.with_name(f".{target.name}.previous-{os.getpid()}")
    if target.exists() or target.is_symlink():
        os.replace(target, previous)
    os.replace(staged, target)
    shutil.rmtree(previous, ignore_errors=True)


def point_latest(root: Path, name: str) -> None:
    """Make ROOT/latest point at ROOT/<name>, atomically (a new symlink renamed over the old)."""
    tmp = root / f".latest-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(name, tmp)
    os.replace(tmp, root / "latest")


def published_runs(root: Path) -> list[tuple[str, dict[str, Any]]]:
    """(run name, results.json) of every published dated run under root, oldest first."""
    runs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and not p.is_symlink()):
        results = folder / "results.json"
        if results.is_file():
            runs.append((folder.name, json.loads(results.read_text(encoding="utf-8"))))
    return runs


def headline(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The headline rates: low Mg among each abnormality (24 h, result level) and the Mg-check rate."""
    out = {}
    for row in results["cooccurrence"]:
        if (row["direction"] == "hypomg_given_abnormality" and row["window"] == "24h" and row["level"] == "result"
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


def write_index(root: Path) -> None:
    """ROOT/index.html: every published run and the headline trend across runs (aggregates only)."""
    import html

    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    runs = published_runs(root)
    fig = go.Figure()
    symbols = ["circle", "square", "diamond", "triangle-up", "x"]
    names = list(headline(runs[-1][1])) if runs else []
    for i, name in enumerate(names):
        xs = [r for r, _ in runs]
        ys = [headline(res).get(name, {}).get("prevalence") for _, res in runs]
        fig.add_trace(go.Scatter(x=xs, y=ys, name=name, mode="lines+markers", marker={"symbol": symbols[i % 5], "size": 8}))
    fig.update_layout(title="Headline rates across published runs", xaxis={"title": "run", "type": "category"},
                      yaxis={"title": "rate (%)", "tickformat": ".0%", "range": [0, 1]}, height=420,
                      template="plotly_white")
    rows = []
    for name, res in reversed(runs):
        flags = res.get("history_flags") or []
        flag_text = "; ".join(f"{f['measure']} {100 * f['rate']:.1f}% outside {100 * f['previous_ci_low']:.1f}"
                              f"&ndash;{100 * f['previous_ci_high']:.1f}%" for f in flags)
        c = res["counts"]
        rows.append(f"<tr><td><a href='{html.escape(name)}/report.html'>{html.escape(name)}</a></td>"
                    f"<td class='num'>{c['lab_rows_read']:,}</td><td class='num'>{c['mg_results']:,}</td>"
                    f"<td>{'&#9888; ' + flag_text if flags else ''}</td></tr>")
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>hypomag runs</title>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; script-src 'unsafe-inline' "
        "'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:\">"
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:auto;padding:1rem 2rem}"
        "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:.2rem .5rem}td.num{text-align:right}</style>"
        "</head><body><h1>hypomag: published runs</h1><p><a href='latest/report.html'>Latest report</a></p>"
        f"<div id='history-trend' class='hm-chart' style='min-height:420px'></div>"
        "<p>Flagged: a headline rate outside the previous run's 95% interval.</p>"
        "<table><thead><tr><th>run</th><th>lab rows read</th><th>Mg results</th><th>flags</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        f"<script>{get_plotlyjs()}</script>"
        f"<script>(function(){{var f={fig.to_json()};Plotly.newPlot('history-trend',f.data,f.layout,"
        "{displaylogo:false,responsive:true});})();</script></body></html>"
    )
    tmp = root / f".index-{os.getpid()}.html"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, root / "index.html")
