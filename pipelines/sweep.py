"""Sensitivity sweep over the co-occurrence window and each abnormality's threshold, both directions,
result level (docs/definitions.md section 8, Sweep; results.json `sweep`).

The counts are the model sql/marts/mart_sweep.sql, over the swept values of the parameter tables
param_sweep_windows and param_sweep_thresholds (pipelines/db.py sweep_values: bound parameters, never SQL
text); this module publishes the counts with their intervals and suppression.
"""
from __future__ import annotations

from typing import Any

import duckdb

from pipelines.config import Config
from pipelines.db import SECONDS_PER_HOUR, rows, sweep_values
from pipelines.stats import is_small_cell, proportion_interval
from pipelines.suppression import PROPORTION_KEYS, Cell, Chain, State, check

DIRECTIONS = ("abnormality_given_hypomg", "hypomg_given_abnormality")
PROPORTION = ("n", "d", "d-n")


def sweep_section(con: duckdb.DuckDBPyConnection, config: Config, document: dict[str, Any]) -> dict[str, Any]:
    """results.json `sweep`: one row per direction x abnormality x threshold x window, with suppression."""
    hours, thresholds = sweep_values(con, config)
    found = {(r["direction"], r["definition_id"], r["threshold_canonical"], r["window_seconds"]): r
             for r in rows(con, "SELECT * FROM mart_sweep")}
    names = {d: a for d, a in con.execute("SELECT definition_id, abnormality FROM param_abnormality_definitions").fetchall()}
    run_hours = config.windows.cooccurrence_hours
    method = config.statistics.interval_method
    out = []
    for direction in DIRECTIONS:
        for definition_id, key, value, canonical in thresholds:
            run_value = getattr(config.thresholds, key)
            for h in hours:
                m = found.get((direction, definition_id, canonical, h * SECONDS_PER_HOUR))
                num, den = (int(m["numerator"]), int(m["denominator"])) if m else (0, 0)
                low, high = proportion_interval(num, den, method)
                out.append({"abnormality": names[definition_id], "direction": direction, "threshold": value,
                            "threshold_key": key, "window_hours": h,
                            "is_run_setting": value == run_value and h == run_hours,
                            "numerator": num, "denominator": den, "prevalence": num / den if den else None,
                            "ci_low": low, "ci_high": high, "suppressed": False, "_raw": (num, den)})
    _suppress(out, document, config.privacy.min_cell_size)
    for r in out:
        r.pop("_raw")
    return {"windows_hours": hours, "specimen_rule": "time windows only", "rows": out}


def _suppress(out: list[dict[str, Any]], document: dict[str, Any], min_cell: int) -> None:
    """Small cells withheld; neighbours along a window chain or a threshold chain must not differ by a
    small count; the run's own cell is withheld when its `cooccurrence` row is."""
    if min_cell <= 0:
        return
    state = State({}, min_cell)
    withheld_rows = {(r["abnormality"], r["direction"]) for r in document["cooccurrence"]
                     if r["level"] == "result" and r["window_hours"] == max(x["window_hours"] for x in document["cooccurrence"])
                     and r["suppressed"]}
    for i, r in enumerate(out):
        n, d = r["_raw"]
        # the run's own cell repeats a `cooccurrence` row: shown there, hiding it here would protect nothing,
        # so a derivation is fixed by hiding its neighbour (a higher weight makes the neighbour cheaper)
        pinned = r["is_run_setting"] and (r["abnormality"], r["direction"]) not in withheld_rows
        cell = Cell(f"sweep[{i}]", r, PROPORTION_KEYS, {"n": n, "d": d, "d-n": d - n}, weight=9 if pinned else 0,
                    order=i)
        cell.hidden = is_small_cell(n, d, min_cell) or (r["is_run_setting"] and not pinned)
        state.cells[cell.id] = cell
    chains: dict[tuple, list[tuple[float, str]]] = {}
    for i, r in enumerate(out):
        chains.setdefault(("w", r["abnormality"], r["direction"], r["threshold_key"], r["threshold"]), []).append(
            (r["window_hours"], f"sweep[{i}]"))
        chains.setdefault(("t", r["abnormality"], r["direction"], r["threshold_key"], r["window_hours"]), []).append(
            (r["threshold"], f"sweep[{i}]"))
    groups = [Chain([(cid, PROPORTION) for _, cid in sorted(members)]) for members in chains.values()
              if len(members) > 1]
    changed = True
    while changed:
        changed = False
        for group in groups:
            victim = check(group, state)
            if victim is not None:
                state.hide(victim, "derivable (Chain)")
                changed = True
    for cell in state.cells.values():
        if cell.hidden:
            for key in cell.keys:
                cell.row[key] = None
            cell.row["suppressed"] = True

