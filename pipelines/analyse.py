"""Analyse: turn the marts into results.json (docs/contract.md schema_version 1).

Counts come from SQL (sql/marts/); this module adds the statistics of docs/definitions.md section 8, the
reference comparisons of section 4 and the primary small-cell suppression of section 7 (the
complementary pass over the whole document is pipelines/suppression.py). It reads only
aggregate marts, never row-level tables, so nothing it returns identifies a patient.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import duckdb

from pipelines import audit_results, epi
from pipelines.config import Config
from pipelines.db import rows
from pipelines.seeds import read_seed
from pipelines.stats import binomial_p_value, is_small_cell, katz_ratio, proportion_interval
from pipelines.suppression import suppress

SCHEMA_VERSION = 1
DIRECTIONS = ("abnormality_given_hypomg", "hypomg_given_abnormality", "abnormality_given_normomg")
LEVELS = ("result", "patient")
# The sensitivity grid's directions (result level), in the order results.json lists them.
SENSITIVITY_DIRECTIONS = ("abnormality_given_hypomg", "hypomg_given_abnormality")
# The seed cooccurrence_windows' width_setting of the co-occurrence window, published by its hours.
COOCCURRENCE_SETTING = "windows.cooccurrence_hours"
SECONDS_PER_HOUR = 3600.0


def references_for(direction: str, abnormality: str) -> list[dict[str, Any]]:
    """Reference sets (seed reference_sets) that measured this direction."""
    return [
        {"set": r["reference_set"], "value": float(r["value"]), "citation": r["citation"]}
        for r in read_seed("reference_sets")
        if r["direction"] == direction and r["abnormality"] == abnormality
    ]


def proportion(numerator: int, denominator: int, min_cell_size: int, method: str = "wilson") -> dict[str, Any]:
    """A rate with its 95% interval (`method`: [statistics] interval_method, Wilson by default), or the
    suppressed form with null counts and rates."""
    if is_small_cell(numerator, denominator, min_cell_size):
        return {"numerator": None, "denominator": None, "prevalence": None, "ci_low": None,
                "ci_high": None, "suppressed": True}
    low, high = proportion_interval(numerator, denominator, method)
    return {
        "numerator": numerator,
        "denominator": denominator,
        "prevalence": numerator / denominator if denominator else None,
        "ci_low": low,
        "ci_high": high,
        "suppressed": False,
    }


def abnormality_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The abnormalities of the seed abnormality_definitions, in seed order (results.json's order)."""
    return [r[0] for r in con.execute("SELECT abnormality FROM param_abnormality_definitions "
                                      "GROUP BY abnormality ORDER BY min(definition_id)").fetchall()]


@dataclass(frozen=True)
class Window:
    """A row of param_windows as results.json publishes it.

    `key` is the name the marts use (the seed's window_name); `name` the published one: the
    co-occurrence window (width from windows.cooccurrence_hours) is named by its hours ("24h",
    "48h", "12.5h"), so the label always states the width the run used; other windows keep the seed's
    name. `hours` is the width the run used: the [windows] setting itself, or the seed's fixed hours.
    """

    key: str
    name: str
    hours: float


def windows(con: duckdb.DuckDBPyConnection, config: Config) -> list[Window]:
    """The windows of param_windows in their order (narrowest first), with published names and hours."""
    settings = {f"windows.{f.name}": getattr(config.windows, f.name) for f in dataclasses.fields(config.windows)}
    seed = {(r.get("window_name") or "").strip(): (r.get("width_setting") or "").strip()
            for r in read_seed("cooccurrence_windows")}
    table = con.execute("SELECT window_name, window_seconds FROM param_windows ORDER BY window_id").fetchall()
    out = []
    for key, seconds in table:
        setting = seed.get(key, "")
        hours = float(settings[setting]) if setting in settings else seconds / SECONDS_PER_HOUR
        name = f"{hours:g}h" if setting == COOCCURRENCE_SETTING else key
        if name != key and any(name == other for other, _ in table):
            name = key  # another window already bears that name: keep the seed's, window_hours tells the width
        out.append(Window(key, name, hours))
    return out


def cooccurrence_counts(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """mart_cooccurrence keyed by (abnormality, direction, window, level)."""
    return {
        (r["abnormality"], r["direction"], r["window_name"], r["level"]): r
        for r in rows(con, "SELECT * FROM mart_cooccurrence")
    }


def cooccurrence_rows(marts: dict, min_cell: int, abnormalities: list[str],
                      windows_: list[Window], method: str = "wilson") -> list[dict[str, Any]]:
    """One results.json `cooccurrence` row per abnormality x direction x window x level, in that order."""
    out = []
    for abnormality in abnormalities:
        for direction in DIRECTIONS:
            for window in windows_:
                for level in LEVELS:
                    m = marts[(abnormality, direction, window.key, level)]
                    num, den, idx = m["numerator"], m["denominator"], m["index_count"]
                    row = {"abnormality": abnormality, "direction": direction, "window": window.name,
                           "window_hours": window.hours, "level": level, **proportion(num, den, min_cell, method)}
                    row.update(mg_tested(direction, num, den, idx, min_cell))
                    row["references"] = [
                        {"set": ref["set"], "value": ref["value"],
                         "p_value": None if row["suppressed"] else binomial_p_value(num, den, ref["value"])}
                        for ref in references_for(direction, abnormality)
                    ]
                    out.append(_order(row))
    return out


def mg_tested(direction: str, numerator: int, denominator: int, index_count: int,
              min_cell: int) -> dict[str, Any]:
    """mg_tested_fraction (denominator / index results) of a hypomg_given_abnormality row, and whether
    it is withheld: with its row, or on its own when index - denominator is a small cell. Other
    directions, and rows without index results, have no fraction (null) and nothing withheld."""
    if direction != "hypomg_given_abnormality" or not index_count:
        return {"mg_tested_fraction": None, "mg_tested_suppressed": False}
    withheld = (is_small_cell(numerator, denominator, min_cell)
                or is_small_cell(denominator, index_count, min_cell))
    return {"mg_tested_fraction": None if withheld else denominator / index_count,
            "mg_tested_suppressed": withheld}


def _order(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("abnormality", "direction", "window", "window_hours", "level", "numerator", "denominator",
            "prevalence", "ci_low", "ci_high", "mg_tested_fraction", "mg_tested_suppressed", "references",
            "suppressed")
    return {k: row[k] for k in keys}


def prevalence_ratio_rows(counts: dict, min_cell: int, abnormalities: list[str],
                          windows_: list[Window]) -> list[dict[str, Any]]:
    """Hypo- vs normomagnesemia prevalence of each abnormality, Katz log 95% interval."""
    out = []
    for abnormality in abnormalities:
        for window in windows_:
            for level in LEVELS:
                hypo = counts[(abnormality, "abnormality_given_hypomg", window.key, level)]
                normo = counts[(abnormality, "abnormality_given_normomg", window.key, level)]
                suppressed = is_small_cell(hypo["numerator"], hypo["denominator"], min_cell) or is_small_cell(
                    normo["numerator"], normo["denominator"], min_cell
                )
                ratio, low, high = (None, None, None) if suppressed else katz_ratio(
                    hypo["numerator"], hypo["denominator"], normo["numerator"], normo["denominator"]
                )
                out.append({"abnormality": abnormality, "window": window.name, "window_hours": window.hours,
                            "level": level, "ratio": ratio, "ci_low": low, "ci_high": high,
                            "suppressed": suppressed})
    return out


def sensitivity_rows(con: duckdb.DuckDBPyConnection, min_cell: int,
                     windows_: list[Window], method: str = "wilson") -> list[dict[str, Any]]:
    """The sensitivity grid at result level, one direction after the other (SENSITIVITY_DIRECTIONS):
    abnormality x calcium definition x Mg threshold x window, each cell a rate with its Wilson interval."""
    by_key = {w.key: w for w in windows_}
    out = []
    for direction in SENSITIVITY_DIRECTIONS:
        for m in rows(
            con,
            "SELECT s.* FROM mart_sensitivity AS s JOIN param_windows AS w ON w.window_name = s.window_name "
            "WHERE s.direction = ? "
            "ORDER BY s.abnormality, s.hypocalcemia_definition NULLS FIRST, s.threshold_mg_dl, w.window_id",
            [direction],
        ):
            window = by_key[m["window_name"]]
            out.append({
                "abnormality": m["abnormality"],
                "direction": direction,
                "mg_threshold_mg_dl": m["threshold_mg_dl"],
                "window": window.name,
                "window_hours": window.hours,
                "hypocalcemia_definition": m["hypocalcemia_definition"],
                **proportion(m["numerator"], m["denominator"], min_cell, method),
            })
    return out


def counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    acc = {r["input_table"]: r for r in rows(
        con,
        "SELECT input_table, sum(rows_read) AS read, sum(rows_loaded) AS loaded, "
        "sum(rows_out_of_scope) AS out_of_scope, sum(rows_quarantined) AS quarantined, "
        "sum(rows_superseded) AS superseded "
        "FROM mart_row_accounting GROUP BY input_table",
    )}
    labs = acc.get("labs", {})
    meds = acc.get("medications", {})
    mg = rows(con, "SELECT count(*) AS n, count(*) FILTER (WHERE is_hypomagnesemia) AS low "
                   "FROM int_lab_flags WHERE analyte = 'MG'")[0]
    patients = con.execute("SELECT count(DISTINCT patient_id) FROM int_lab_results").fetchone()[0]
    return {
        "lab_rows_read": int(labs.get("read") or 0),
        "lab_rows_loaded": int(labs.get("loaded") or 0),
        "lab_rows_out_of_scope": int(labs.get("out_of_scope") or 0),
        "lab_rows_quarantined": int(labs.get("quarantined") or 0),
        "lab_rows_superseded": int(labs.get("superseded") or 0),
        "med_rows_read": int(meds.get("read") or 0),
        "med_rows_loaded": int(meds.get("loaded") or 0),
        "med_rows_quarantined": int(meds.get("quarantined") or 0),
        "patients": int(patients),
        "mg_results": int(mg["n"]),
        "hypomg_results": int(mg["low"]),
    }


PROPORTION_COLUMNS = ("kind", "abnormality", "direction", "window", "level", "numerator", "denominator",
                      "prevalence", "ci_low", "ci_high", "suppressed")


def store_proportions(con: duckdb.DuckDBPyConnection, results: dict[str, Any]) -> None:
    """Every published rate, back into DuckDB as `res_proportions`, so validation checks them in SQL."""
    con.execute(
        "CREATE OR REPLACE TABLE res_proportions (kind VARCHAR, abnormality VARCHAR, direction VARCHAR, "
        "window_name VARCHAR, level VARCHAR, numerator BIGINT, denominator BIGINT, prevalence DOUBLE, "
        "ci_low DOUBLE, ci_high DOUBLE, suppressed BOOLEAN)"
    )
    rows = [("cooccurrence", *(r[k] for k in PROPORTION_COLUMNS[1:])) for r in results["cooccurrence"]]
    # a sensitivity cell's `level` is its grid position: the Mg threshold, and the calcium definition if any
    rows += [("sensitivity", r["abnormality"], r["direction"], r["window"],
              "/".join(str(v) for v in (r["mg_threshold_mg_dl"], r["hypocalcemia_definition"]) if v is not None),
              *(r[k] for k in PROPORTION_COLUMNS[5:])) for r in results["sensitivity"]]
    if rows:
        con.executemany(f"INSERT INTO res_proportions VALUES ({', '.join('?' for _ in PROPORTION_COLUMNS)})", rows)


def build_results(con: duckdb.DuckDBPyConnection, config: Config) -> dict[str, Any]:
    """The whole results.json document, with primary and complementary suppression (docs/definitions.md section 7).

    The document is built twice: once with primary suppression, once without (`min_cell_size` 0),
    which gives the suppression pass the counts it needs to find derivable cells. Only the
    suppressed document leaves this function.
    """
    min_cell = config.privacy.min_cell_size
    reads = _ReadOnce(con)  # both builds read the marts once (some reads scan every loaded result)
    document = _document(reads, config, min_cell)
    if min_cell <= 0:
        return with_epi(con, config, finish_audit(document, document, config, 0))
    raw = _document(reads, config, 0)
    return with_epi(con, config, finish_audit(suppress(document, min_cell, raw=raw), raw, config, min_cell))


def with_epi(con: duckdb.DuckDBPyConnection, config: Config, document: dict[str, Any]) -> dict[str, Any]:
    """Additions: the interval method, clustered intervals, strata and table one (pipelines/epi.py),
    computed from the suppressed document so they show nothing it withholds."""
    document.update(epi.additions(con, config, document))
    return document


class _Fetched:
    """A query's rows as fetched, with the parts of a DuckDB result the readers use."""

    def __init__(self, description: Any, fetched: list[tuple]):
        self.description, self._rows = description, fetched

    def fetchall(self) -> list[tuple]:
        return list(self._rows)

    def fetchone(self) -> tuple | None:
        return self._rows[0] if self._rows else None


class _ReadOnce:
    """Runs each distinct read query once and answers repeats from what it fetched."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self._con, self._fetched = con, {}

    def execute(self, sql: str, params: list | None = None) -> _Fetched:
        key = (sql, tuple(params or ()))
        if key not in self._fetched:
            cursor = self._con.execute(sql, params or [])
            self._fetched[key] = _Fetched(cursor.description, cursor.fetchall())
        return self._fetched[key]


def _document(con: duckdb.DuckDBPyConnection, config: Config, min_cell: int) -> dict[str, Any]:
    marts = cooccurrence_counts(con)
    abnormalities, windows_ = abnormality_names(con), windows(con, config)
    method = config.statistics.interval_method
    return {
        "schema_version": SCHEMA_VERSION,
        "parameters": config.to_dict(),
        "counts": counts(con),
        "cooccurrence": cooccurrence_rows(marts, min_cell, abnormalities, windows_, method),
        "prevalence_ratios": prevalence_ratio_rows(marts, min_cell, abnormalities, windows_),
        "sensitivity": sensitivity_rows(con, min_cell, windows_, method),
        "audit": {**audit(con, min_cell, method), **audit_additions(con, config, min_cell)},
        "exposures": exposures(con, min_cell),
        # Additions to schema_version 1 (the contract allows adding): the report's other charts.
        "testing_rate_references": testing_rate_references(),
        "data_window": data_window(con),
        "attrition": attrition(con, min_cell),
        "quarantine_reasons": quarantine_reasons(con, min_cell),
        "mg_distribution": mg_distribution(con, min_cell),
    }


def _rate(numerator: int, denominator: int, min_cell: int, prefix: str = "", method: str = "wilson") -> dict[str, Any]:
    """A rate with its 95% interval (`method`) under `prefix` keys; null counts and rates if suppressed."""
    p = proportion(numerator, denominator, min_cell, method)
    return {f"{prefix}rate": p["prevalence"], f"{prefix}ci_low": p["ci_low"], f"{prefix}ci_high": p["ci_high"],
            "suppressed": p["suppressed"]}


def _audit_row(m: dict[str, Any], min_cell: int, method: str = "wilson") -> dict[str, Any]:
    checked = _rate(m["mg_checked"], m["episodes"], min_cell, method=method)
    row = {"episodes": m["episodes"], "mg_checked": m["mg_checked"], **checked}
    if checked["suppressed"]:
        row["episodes"] = row["mg_checked"] = None
    return row


def audit(con: duckdb.DuckDBPyConnection, min_cell: int, method: str = "wilson") -> dict[str, Any]:
    """Magnesium-check audit measures (docs/definitions.md section 5) with 95% intervals and suppression."""
    marts = rows(con, "SELECT * FROM mart_audit ORDER BY grouping, group_value")
    overall_mart = next((m for m in marts if m["grouping"] == "overall"), None) or {
        "episodes": 0, "mg_checked": 0, "low_mg_episodes": 0, "mg_repleted": 0, "refractory_episodes": 0,
        "refractory_mg_checked": 0}
    overall = _audit_row(overall_mart, min_cell, method)
    repleted = _rate(overall_mart["mg_repleted"], overall_mart["low_mg_episodes"], min_cell, "repleted_", method)
    refractory = _rate(overall_mart["refractory_mg_checked"], overall_mart["refractory_episodes"], min_cell,
                       "refractory_checked_", method)
    overall.update({
        "low_mg_episodes": None if repleted["suppressed"] else overall_mart["low_mg_episodes"],
        "mg_repleted": None if repleted["suppressed"] else overall_mart["mg_repleted"],
        "refractory_episodes": None if refractory["suppressed"] else overall_mart["refractory_episodes"],
        "refractory_mg_checked": None if refractory["suppressed"] else overall_mart["refractory_mg_checked"],
        **{k: v for k, v in repleted.items() if k != "suppressed"},
        "repleted_suppressed": repleted["suppressed"],
        **{k: v for k, v in refractory.items() if k != "suppressed"},
        "refractory_suppressed": refractory["suppressed"],
    })
    out: dict[str, Any] = {"overall": overall, "by_month": [], "by_severity": [], "by_care_unit": []}
    keys = {"month": ("by_month", "month"), "severity": ("by_severity", "severity"),
            "care_unit": ("by_care_unit", "care_unit")}
    for m in marts:
        if m["grouping"] in keys:
            section, name = keys[m["grouping"]]
            out[section].append({name: m["group_value"], **_audit_row(m, min_cell, method)})
    order = {"mild": 0, "moderate": 1, "severe": 2}
    out["by_severity"].sort(key=lambda r: order.get(r["severity"], 9))
    return out


def exposures(con: duckdb.DuckDBPyConnection, min_cell: int) -> list[dict[str, Any]]:
    """Hypomagnesemia among Mg results, exposed vs unexposed, per drug class (docs/definitions.md section 6)."""
    out = []
    for m in rows(con, "SELECT * FROM mart_exposures ORDER BY drug_class"):
        suppressed = is_small_cell(m["exposed_hypomg"], m["exposed_mg_results"], min_cell) or is_small_cell(
            m["unexposed_hypomg"], m["unexposed_mg_results"], min_cell)
        counts_ = {k: (None if suppressed else m[k]) for k in
                   ("exposed_mg_results", "exposed_hypomg", "unexposed_mg_results", "unexposed_hypomg")}
        out.append({"class": m["drug_class"], **counts_, "suppressed": suppressed})
    return out


MG_BIN_MMOL_L = 0.05


def quarantine_reasons(con: duckdb.DuckDBPyConnection, min_cell: int) -> list[dict[str, Any]]:
    """Quarantined rows per input table and reason; counts of 1..min_cell-1 suppressed."""
    out = []
    for r in rows(con, "SELECT input_table, reason, count(*) AS rows FROM int_quarantine GROUP BY ALL ORDER BY ALL"):
        small = is_small_cell(0, r["rows"], min_cell)
        out.append({"input_table": r["input_table"], "reason": r["reason"], "rows": None if small else r["rows"],
                    "suppressed": small})
    return out


def testing_rate_references() -> list[dict[str, Any]]:
    """Published magnesium-testing rates in hypokalemia (docs/definitions.md section 5), shown beside ours."""
    return [{"reference": r["reference"], "population": r["population"], "rate": float(r["rate"]),
             "citation": r["citation"]} for r in read_seed("testing_rate_references")]


def data_window(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    first, last = con.execute("SELECT min(collected_at), max(collected_at) FROM int_lab_results").fetchone()
    return {"first_collected_on": first.date().isoformat() if first else None,
            "last_collected_on": last.date().isoformat() if last else None}


def attrition(con: duckdb.DuckDBPyConnection, min_cell: int) -> list[dict[str, Any]]:
    """Rows and patients at each step; counts of 1..min_cell-1 are suppressed like any cell."""
    out = []
    for r in rows(con, "SELECT step_order, step, row_count, patient_count FROM mart_attrition ORDER BY step_order"):
        small = [is_small_cell(0, r[k], min_cell) for k in ("row_count", "patient_count")]
        out.append({"step": r["step"], "rows": None if small[0] else r["row_count"],
                    "patients": None if small[1] else r["patient_count"], "suppressed": any(small)})
    return out


def mg_distribution(con: duckdb.DuckDBPyConnection, min_cell: int) -> dict[str, Any]:
    """Histogram of magnesium results (mmol/L, bins of 0.05); bins of 1..min_cell-1 suppressed."""
    bins = rows(
        con,
        "SELECT floor(value_canonical / ?) AS bin, count(*) AS n FROM int_lab_flags WHERE analyte = 'MG' "
        "GROUP BY 1 ORDER BY 1",
        [MG_BIN_MMOL_L],
    )
    return {
        "bin_width_mmol_l": MG_BIN_MMOL_L,
        "bins": [{"from_mmol_l": round(b["bin"] * MG_BIN_MMOL_L, 4), "to_mmol_l": round((b["bin"] + 1) * MG_BIN_MMOL_L, 4),
                  "results": None if is_small_cell(0, b["n"], min_cell) else b["n"],
                  "suppressed": is_small_cell(0, b["n"], min_cell)} for b in bins],
    }


# ---- the quality team's audit (docs/definitions.md section 5, Audit charts) ---------------------
# Additions to results.json `audit`: period, spc, funnel, time_to_check, reflex_simulation, worklist.


def audit_additions(con: duckdb.DuckDBPyConnection, config: Config, min_cell: int) -> dict[str, Any]:
    """The audit's additions to results.json with primary suppression (pipelines/audit_results.py)."""
    return audit_results.additions(con, config, min_cell, data_window(con))


def finish_audit(document: dict[str, Any], raw: dict[str, Any], config: Config, min_cell: int) -> dict[str, Any]:
    """Complementary suppression of the audit's additions, then the control chart drawn on the shown periods."""
    return audit_results.finish(document, raw, config, min_cell)
