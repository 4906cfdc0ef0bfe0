"""Sensitivity sweep over the co-occurrence window and each abnormality's threshold, both directions,
result level (docs/definitions.md section 8, Sweep; results.json `sweep`).

The counts are the model sql/marts/mart_sweep.sql; this module chooses the swept values, writes them as
the parameter tables that model reads (param_sweep_windows, param_sweep_thresholds: bound parameters,
never SQL text), and publishes the counts with their intervals and suppression.
"""
from __future__ import annotations

from typing import Any

import duckdb

from pipelines.config import THRESHOLD_ANALYTES, Config
from pipelines.db import rows
from pipelines.seeds import read_seed, unit_factor
from pipelines.stats import is_small_cell, proportion_interval
from pipelines.suppression import PROPORTION_KEYS, Cell, Chain, State, check

SECONDS_PER_HOUR = 3600.0
# seed abnormality_definitions' canonical threshold key -> the [sweep] / [thresholds] key in the user's unit
SWEEP_KEYS = {"hypokalemia_mmol_l": "hypokalemia_mmol_l", "hyponatremia_mmol_l": "hyponatremia_mmol_l",
              "hypophosphatemia_mmol_l": "hypophosphatemia_mg_dl", "hypocalcemia_mmol_l": "hypocalcemia_mg_dl",
              "ionized_hypocalcemia_mmol_l": "ionized_hypocalcemia_mmol_l"}
DIRECTIONS = ("abnormality_given_hypomg", "hypomg_given_abnormality")
# blank [sweep] lists follow the run: windows as multiples of the co-occurrence window, and each
# threshold with one clinically usual step below it (in the key's unit)
WINDOW_MULTIPLES = (1 / 24, 1 / 4, 1.0, 2.0, 3.0)
THRESHOLD_STEPS = {"hypokalemia_mmol_l": 0.5, "hyponatremia_mmol_l": 5.0, "hypophosphatemia_mg_dl": 0.5,
                   "hypocalcemia_mg_dl": 0.5, "ionized_hypocalcemia_mmol_l": 0.15}
PROPORTION = ("n", "d", "d-n")

def sweep_values(con: duckdb.DuckDBPyConnection, config: Config) -> tuple[list[float], list[tuple[int, str, float, float]]]:
    """(window hours, [(definition_id, sweep key, threshold in the key's unit, canonical threshold)]):
    the configured lists plus the run's own window and thresholds, each once, in order."""
    window = config.windows.cooccurrence_hours
    listed = config.sweep.windows_hours or tuple(round(window * m, 6) for m in WINDOW_MULTIPLES)
    hours = sorted(set(listed) | {window})
    seed = read_seed("abnormality_definitions")
    thresholds = []
    for definition_id, in con.execute("SELECT d.definition_id FROM param_abnormality_definitions AS d CROSS JOIN "
                                      "params AS p WHERE d.hypocalcemia_definition IS NULL OR "
                                      "d.hypocalcemia_definition = p.hypocalcemia_definition").fetchall():
        key = SWEEP_KEYS.get(seed[definition_id - 1]["threshold"])
        if key is None:
            continue
        analyte, unit = THRESHOLD_ANALYTES[key]
        factor = 1.0 if unit == "mmol/l" else unit_factor(analyte, unit)
        run = getattr(config.thresholds, key)
        listed = getattr(config.sweep, key) or (round(run - THRESHOLD_STEPS[key], 6),)
        for value in sorted(set(listed) | {run}):
            thresholds.append((definition_id, key, value, value * factor))
    return hours, thresholds


def create_sweep_tables(con: duckdb.DuckDBPyConnection, config: Config) -> None:
    """param_sweep_windows (window_seconds) and param_sweep_thresholds (definition_id, threshold_canonical):
    the swept values of sweep_values, read by mart_sweep (after param_abnormality_definitions and params)."""
    hours, thresholds = sweep_values(con, config)
    con.execute("CREATE OR REPLACE TABLE param_sweep_windows (window_seconds DOUBLE)")
    con.executemany("INSERT INTO param_sweep_windows VALUES (?)", [[h * SECONDS_PER_HOUR] for h in hours])
    con.execute("CREATE OR REPLACE TABLE param_sweep_thresholds (definition_id INTEGER, threshold_canonical DOUBLE)")
    if thresholds:
        con.executemany("INSERT INTO param_sweep_thresholds VALUES (?, ?)", [[d, c] for d, _, _, c in thresholds])


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

