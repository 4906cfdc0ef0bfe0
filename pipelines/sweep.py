"""Sensitivity sweep over the co-occurrence window and each abnormality's threshold, both directions,
result level (docs/definitions.md section 8, Sweep; results.json `sweep`).

One pass finds, for every index result and partner, the distance in time to the nearest partner that
answers each question (measured, below each swept threshold); every (window, threshold) cell is then a
count of distances within the window. Windows are time windows only (+/- hours, inclusive; a shared
specimen does not count) and same-time results of a patient are partners as in section 4, so the cell
at the run's window and thresholds repeats the `cooccurrence` row of the co-occurrence window.
The swept values reach the query as bound parameters (temporary tables), never as SQL text.
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

SWEEP_SQL = """
with
defs as (
    select d.definition_id, d.abnormality, d.partner_analyte, d.value_source
    from param_abnormality_definitions as d
    cross join params as p
    where d.hypocalcemia_definition is null or d.hypocalcemia_definition = p.hypocalcemia_definition
),
reach as (select max(window_seconds) as max_s from tmp_sweep_windows),
partners as (
    select f.row_id, f.patient_id, epoch(f.collected_at) as at_s, d.definition_id, f.value_canonical as v
    from int_lab_flags as f inner join defs as d on d.partner_analyte = f.analyte
    where d.value_source = 'result'
    union all
    select f.row_id, f.patient_id, epoch(f.collected_at), d.definition_id, c.corrected_calcium_mmol_l
    from int_lab_flags as f
    inner join int_calcium_corrected as c on c.row_id = f.row_id
    inner join defs as d on d.partner_analyte = f.analyte
    where d.value_source = 'corrected_calcium'
),
mg as (
    select row_id, patient_id, epoch(collected_at) as at_s, is_hypomagnesemia as hypo
    from int_lab_flags where analyte = 'MG'
),
a_pairs as (
    select m.row_id, p.definition_id, abs(p.at_s - m.at_s) as dist, p.v
    from mg as m
    cross join reach as r
    inner join partners as p on p.patient_id = m.patient_id and p.at_s between m.at_s - r.max_s and m.at_s + r.max_s
    where m.hypo
),
a_measured as (
    select row_id, definition_id, min(dist) as d_measured from a_pairs group by row_id, definition_id
),
a_abnormal as (
    select a.row_id, a.definition_id, t.threshold_canonical, min(a.dist) as d_abnormal
    from a_pairs as a
    inner join tmp_sweep_thresholds as t on t.definition_id = a.definition_id and a.v < t.threshold_canonical
    group by a.row_id, a.definition_id, t.threshold_canonical
),
a_cells as (
    select m.definition_id, t.threshold_canonical, m.d_measured, ab.d_abnormal
    from a_measured as m
    inner join tmp_sweep_thresholds as t on t.definition_id = m.definition_id
    left join a_abnormal as ab on ab.row_id = m.row_id and ab.definition_id = m.definition_id
        and ab.threshold_canonical = t.threshold_canonical
),
b_near as (
    select p.row_id, p.definition_id, p.v, min(abs(m.at_s - p.at_s)) as d_mg,
        min(case when m.hypo then abs(m.at_s - p.at_s) end) as d_hypo
    from partners as p
    cross join reach as r
    left join mg as m on m.patient_id = p.patient_id and m.at_s between p.at_s - r.max_s and p.at_s + r.max_s
    group by p.row_id, p.definition_id, p.v
),
counted as (
    select 'abnormality_given_hypomg' as direction, a.definition_id, a.threshold_canonical, w.window_seconds,
        sum(case when a.d_measured <= w.window_seconds then 1 else 0 end) as denominator,
        sum(case when a.d_abnormal <= w.window_seconds then 1 else 0 end) as numerator
    from a_cells as a cross join tmp_sweep_windows as w
    group by a.definition_id, a.threshold_canonical, w.window_seconds
    union all
    select 'hypomg_given_abnormality', b.definition_id, t.threshold_canonical, w.window_seconds,
        sum(case when b.d_mg <= w.window_seconds then 1 else 0 end),
        sum(case when b.d_hypo <= w.window_seconds then 1 else 0 end)
    from b_near as b
    inner join tmp_sweep_thresholds as t on t.definition_id = b.definition_id and b.v < t.threshold_canonical
    cross join tmp_sweep_windows as w
    group by b.definition_id, t.threshold_canonical, w.window_seconds
)
select c.direction, d.abnormality, c.definition_id, c.threshold_canonical, c.window_seconds,
    cast(c.numerator as bigint) as numerator, cast(c.denominator as bigint) as denominator
from counted as c inner join defs as d on d.definition_id = c.definition_id
"""


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


def sweep_section(con: duckdb.DuckDBPyConnection, config: Config, document: dict[str, Any]) -> dict[str, Any]:
    """results.json `sweep`: one row per direction x abnormality x threshold x window, with suppression."""
    hours, thresholds = sweep_values(con, config)
    con.execute("CREATE OR REPLACE TEMP TABLE tmp_sweep_windows (window_seconds DOUBLE)")
    con.executemany("INSERT INTO tmp_sweep_windows VALUES (?)", [[h * SECONDS_PER_HOUR] for h in hours])
    con.execute("CREATE OR REPLACE TEMP TABLE tmp_sweep_thresholds (definition_id INTEGER, threshold_canonical DOUBLE)")
    if thresholds:
        con.executemany("INSERT INTO tmp_sweep_thresholds VALUES (?, ?)", [[d, c] for d, _, _, c in thresholds])
    found = {(r["direction"], r["definition_id"], r["threshold_canonical"], r["window_seconds"]): r
             for r in rows(con, SWEEP_SQL)}
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

