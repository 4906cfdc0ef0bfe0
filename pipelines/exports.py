"""Tidy exports of results.json: results.csv and results.parquet, one row per estimate.

Researchers and quality teams paste tables into papers and spreadsheets; nested JSON does not paste.
`tidy_rows` flattens the results document (already suppressed: it adds nothing and recomputes
nothing, so a suppressed cell is suppressed here exactly as there) into rows of the columns of
docs/contract.md "results.csv and results.parquet"; the writers put those rows into a file.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Iterator

COLUMNS = ("section", "abnormality", "direction", "window", "window_hours", "level", "stratum", "numerator",
           "denominator", "estimate", "ci_low", "ci_high", "reference_set", "reference_value", "p_value",
           "suppressed")
# Column types (pyarrow type factories); every column may be null except section and suppressed.
TYPES = {"section": "string", "abnormality": "string", "direction": "string", "window": "string",
         "window_hours": "float64", "level": "string", "stratum": "string", "numerator": "int64",
         "denominator": "int64", "estimate": "float64", "ci_low": "float64", "ci_high": "float64",
         "reference_set": "string", "reference_value": "float64", "p_value": "float64", "suppressed": "bool_"}
AUDIT_ABNORMALITY = "hypokalemia"
AUDIT_LEVEL = "episode"
AUDIT_BREAKDOWNS = (("by_month", "month"), ("by_severity", "severity"), ("by_care_unit", "care_unit"))


def row(section: str, **values: Any) -> dict[str, Any]:
    """One export row: every column, null where `values` does not name it."""
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise ValueError(f"not export columns: {sorted(unknown)}")
    out = {c: values.get(c) for c in COLUMNS}
    out["section"] = section
    out["suppressed"] = bool(values.get("suppressed", False))
    return out


def tidy_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every estimate of a results document, one row each, in the document's order.

    Sections: cooccurrence (one row per reference set of the row, or once without one),
    mg_tested (mg_tested_fraction of hypomg_given_abnormality rows), prevalence_ratio, sensitivity,
    audit, exposure; then the audit charts: audit_spc, audit_funnel, audit_time, audit_reflex.
    """
    out: list[dict[str, Any]] = []
    for r in results.get("cooccurrence") or []:
        out += _cooccurrence(r)
    out += [_mg_tested(r) for r in results.get("cooccurrence") or []
            if r.get("direction") == "hypomg_given_abnormality"]
    out += [_prevalence_ratio(r) for r in results.get("prevalence_ratios") or []]
    out += [_sensitivity(r) for r in results.get("sensitivity") or []]
    out += list(_audit(results.get("audit") or {}))
    for r in results.get("exposures") or []:
        out += _exposure(r)
    out += list(_audit_charts(results.get("audit") or {}))  # added last: the v1 rows keep their places
    out += list(_epi(results))  # then the epidemiology additions (pipelines/epi.py)
    return out


def _cooccurrence(r: dict[str, Any]) -> list[dict[str, Any]]:
    base = dict(abnormality=r["abnormality"], direction=r["direction"], window=r["window"],
                window_hours=r.get("window_hours"), level=r["level"], numerator=r["numerator"],
                denominator=r["denominator"], estimate=r["prevalence"], ci_low=r["ci_low"], ci_high=r["ci_high"],
                suppressed=r["suppressed"])
    references = r.get("references") or []
    if not references:
        return [row("cooccurrence", **base)]
    return [row("cooccurrence", **base, reference_set=ref["set"], reference_value=ref["value"],
                p_value=ref["p_value"]) for ref in references]


def _mg_tested(r: dict[str, Any]) -> dict[str, Any]:
    """The share of index results with magnesium measured; its counts are not published (estimate only)."""
    return row("mg_tested", abnormality=r["abnormality"], direction=r["direction"], window=r["window"],
               window_hours=r.get("window_hours"), level=r["level"], estimate=r["mg_tested_fraction"],
               suppressed=bool(r.get("mg_tested_suppressed")))


def _prevalence_ratio(r: dict[str, Any]) -> dict[str, Any]:
    return row("prevalence_ratio", abnormality=r["abnormality"], direction="abnormality_given_hypomg_vs_normomg",
               window=r["window"], window_hours=r.get("window_hours"), level=r["level"], estimate=r["ratio"],
               ci_low=r["ci_low"], ci_high=r["ci_high"], suppressed=r["suppressed"])


def sensitivity_stratum(r: dict[str, Any]) -> str:
    """A sensitivity cell's place in the grid: `mg_threshold_mg_dl=1.7`, with
    `; hypocalcemia_definition=total` where the abnormality has definitions."""
    stratum = f"mg_threshold_mg_dl={r['mg_threshold_mg_dl']:g}"
    if r.get("hypocalcemia_definition"):
        stratum += f"; hypocalcemia_definition={r['hypocalcemia_definition']}"
    return stratum


def _sensitivity(r: dict[str, Any]) -> dict[str, Any]:
    return row("sensitivity", abnormality=r["abnormality"], direction=r.get("direction", "abnormality_given_hypomg"),
               window=r["window"], window_hours=r.get("window_hours"), level="result", stratum=sensitivity_stratum(r),
               numerator=r["numerator"], denominator=r["denominator"], estimate=r["prevalence"], ci_low=r["ci_low"],
               ci_high=r["ci_high"], suppressed=r["suppressed"])


def _audit(audit: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Mg checked per episode (overall and each breakdown), low-Mg episodes repleted, refractory
    episodes checked; `direction` names the measure, `stratum` the breakdown."""
    overall = audit.get("overall")
    if overall:
        yield _audit_row("mg_checked", "overall", overall["mg_checked"], overall["episodes"], overall["rate"],
                         overall["ci_low"], overall["ci_high"], overall["suppressed"])
        yield _audit_row("mg_repleted_given_low_mg", "overall", overall.get("mg_repleted"),
                         overall.get("low_mg_episodes"), overall.get("repleted_rate"), overall.get("repleted_ci_low"),
                         overall.get("repleted_ci_high"), overall.get("repleted_suppressed"))
        yield _audit_row("mg_checked_given_refractory", "overall", overall.get("refractory_mg_checked"),
                         overall.get("refractory_episodes"), overall.get("refractory_checked_rate"),
                         overall.get("refractory_checked_ci_low"), overall.get("refractory_checked_ci_high"),
                         overall.get("refractory_suppressed"))
    for section, name in AUDIT_BREAKDOWNS:
        for r in audit.get(section) or []:
            yield _audit_row("mg_checked", f"{name}={r[name]}", r["mg_checked"], r["episodes"], r["rate"],
                             r["ci_low"], r["ci_high"], r["suppressed"])


def _audit_row(measure: str, stratum: str, numerator: Any, denominator: Any, estimate: Any, low: Any, high: Any,
               suppressed: Any) -> dict[str, Any]:
    return row("audit", abnormality=AUDIT_ABNORMALITY, direction=measure, level=AUDIT_LEVEL, stratum=stratum,
               numerator=numerator, denominator=denominator, estimate=estimate, ci_low=low, ci_high=high,
               suppressed=bool(suppressed))


def _audit_charts(audit: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The audit charts (docs/contract.md additions): control-chart points with their centre and
    limits (section audit_spc), care units against the funnel (audit_funnel), time to the Mg check and
    to repletion (audit_time), and the reflex simulator (audit_reflex). A withheld row is withheld here."""
    spc = audit.get("spc") or {}
    for p in spc.get("points") or []:
        stratum, hidden = f"{spc['period']}={p['period']}", bool(p.get("suppressed"))
        yield _chart_row("audit_spc", "mg_checked", stratum, p["mg_checked"], p["episodes"], p["rate"], hidden)
        for key in ("centre", "lcl", "ucl"):
            yield _chart_row("audit_spc", f"control_{key}", stratum, None, None, p[key], hidden)
    for u in (audit.get("funnel") or {}).get("units") or []:
        yield _chart_row("audit_funnel", "mg_checked", f"care_unit={u['care_unit']}", u["mg_checked"], u["episodes"],
                         u["rate"], u["suppressed"], u["ci_low"], u["ci_high"])
    for t in (audit.get("time_to_check") or {}).get("rows") or []:
        stratum = "overall" if t["grouping"] == "overall" else f"{t['grouping']}={t['group']}"
        for key in ("q1_hours", "median_hours", "q3_hours"):
            yield _chart_row("audit_time", f"{t['measure']}_{key}", stratum, None, None, t[key], t["suppressed"])
        yield _chart_row("audit_time", f"never_{t['measure']}", stratum, t["never"], t["episodes"], t["never_share"],
                         t["suppressed"])
    for r in (audit.get("reflex_simulation") or {}).get("rules") or []:
        stratum = f"k_below_mmol_l={r['k_below_mmol_l']:g}"
        yield _chart_row("audit_reflex", "extra_mg_tests_per_month", stratum, None, None,
                         r["extra_mg_tests_per_month"], r["suppressed"])
        unsure = r.get("detections_suppressed", r["suppressed"])
        yield _chart_row("audit_reflex", "expected_hypomg_detections", stratum, None, None,
                         r["expected_hypomg_detections"], unsure, r["expected_ci_low"], r["expected_ci_high"])
        yield _chart_row("audit_reflex", "tests_per_detection", stratum, None, None, r["tests_per_detection"], unsure)


def _chart_row(section: str, measure: str, stratum: str, numerator: Any, denominator: Any, estimate: Any,
               suppressed: Any, low: Any = None, high: Any = None) -> dict[str, Any]:
    return row(section, abnormality=AUDIT_ABNORMALITY, direction=measure, level=AUDIT_LEVEL, stratum=stratum,
               numerator=numerator, denominator=denominator, estimate=estimate, ci_low=low, ci_high=high,
               suppressed=bool(suppressed))


def _exposure(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Hypomagnesemia among Mg results exposed and not exposed to the class; results.json gives the
    counts only, so the estimate is their quotient and there is no interval."""
    out = []
    for group in ("exposed", "unexposed"):
        numerator, denominator = r[f"{group}_hypomg"], r[f"{group}_mg_results"]
        estimate = numerator / denominator if numerator is not None and denominator else None
        out.append(row("exposure", direction=f"hypomg_given_{group}", level="result", stratum=f"class={r['class']}",
                       numerator=numerator, denominator=denominator, estimate=estimate, suppressed=r["suppressed"]))
    return out


def _epi(results: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Sections `clustered` (the patient-clustered interval and p-value of each result-level row, one
    row per reference set), `design_effect` (its design effect and, as `results_per_patient`, the mean
    results per patient), `strata` (co-occurrence rows by `year=` / `care_unit=`) and `audit_strata`
    (the audit rate by `year=`), `standardised` (age-sex standardised prevalence) and `adjusted_ratio`
    (`model=crude` / `model=adjusted`; numerator and denominator: the hypomagnesemia group's events
    and patients) and `sweep` (stratum `hypokalemia_mmol_l=3.5`, the window in window_hours)."""
    for r in results.get("clustered") or []:
        base = dict(abnormality=r["abnormality"], direction=r["direction"], window=r["window"],
                    window_hours=r["window_hours"], level=r["level"], estimate=r["prevalence"],
                    ci_low=r["clustered_ci_low"], ci_high=r["clustered_ci_high"], suppressed=r["suppressed"])
        refs = r.get("references") or []
        for ref in refs or [None]:
            extra = {} if ref is None else dict(reference_set=ref["set"], reference_value=ref["value"],
                                                p_value=ref["clustered_p_value"])
            yield row("clustered", **base, **extra)
        for measure in ("design_effect", "results_per_patient"):
            hidden = r["suppressed"] if measure == "design_effect" else r["patients_suppressed"]
            yield row("design_effect", abnormality=r["abnormality"], direction=r["direction"], window=r["window"],
                      window_hours=r["window_hours"], level=r["level"], stratum=measure, estimate=r[measure],
                      suppressed=hidden)
    strata = results.get("strata") or {}
    for r in strata.get("cooccurrence") or []:
        yield row("strata", abnormality=r["abnormality"], direction=r["direction"], window=r["window"],
                  window_hours=r["window_hours"], level=r["level"], stratum=f"{r['stratum']}={r['value']}",
                  numerator=r["numerator"], denominator=r["denominator"], estimate=r["prevalence"],
                  ci_low=r["ci_low"], ci_high=r["ci_high"], suppressed=r["suppressed"])
    for r in strata.get("audit_by_year") or []:
        yield _audit_row("mg_checked", f"year={r['year']}", r["mg_checked"], r["episodes"], r["rate"], r["ci_low"],
                         r["ci_high"], r["suppressed"]) | {"section": "audit_strata"}
    for r in strata.get("standardised") or []:
        yield row("standardised", abnormality=r["abnormality"], direction=r["direction"], window=r["window"],
                  window_hours=r["window_hours"], level=r["level"],
                  stratum=f"standard={strata.get('standard_population')}", estimate=r["standardised"],
                  ci_low=r["ci_low"], ci_high=r["ci_high"], suppressed=r["suppressed"])
    for r in results.get("adjusted_ratios") or []:
        for kind in ("crude", "adjusted"):
            yield row("adjusted_ratio", abnormality=r["abnormality"], direction="abnormality_given_hypomg_vs_normomg",
                      window=r["window"], level=r["level"], stratum=f"model={kind}",
                      numerator=r["exposed_events"], denominator=r["exposed"], estimate=r[f"{kind}_ratio"],
                      ci_low=r[f"{kind}_ci_low"], ci_high=r[f"{kind}_ci_high"],
                      p_value=r["adjusted_p_value"] if kind == "adjusted" else None, suppressed=r["suppressed"])
    for r in (results.get("sweep") or {}).get("rows") or []:
        yield row("sweep", abnormality=r["abnormality"], direction=r["direction"], window_hours=r["window_hours"],
                  level="result", stratum=f"{r['threshold_key']}={r['threshold']:g}", numerator=r["numerator"],
                  denominator=r["denominator"], estimate=r["prevalence"], ci_low=r["ci_low"], ci_high=r["ci_high"],
                  suppressed=r["suppressed"])


TABLE_ONE_COLUMNS = ("characteristic", "category", "statistic", "group", "value", "denominator", "percent",
                     "suppressed")


def table_one_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Table 1 of results.json (`table_one`) in long form: one row per characteristic x magnesium group."""
    t = results.get("table_one") or {}
    out = []
    for r in t.get("rows") or []:
        for group in t.get("groups") or []:
            out.append({"characteristic": r["characteristic"], "category": r["category"], "statistic": r["statistic"],
                        "group": group, "value": r[group], "denominator": r.get(f"{group}_denominator"),
                        "percent": r[f"{group}_percent"], "suppressed": bool(r[f"{group}_suppressed"])})
    return out


# ---- writers ------------------------------------------------------------------------------------

def _csv_value(value: Any) -> str:
    """Empty for null, true/false as in JSON, floats in full (repr) so the file equals results.json."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def write_csv(rows: list[dict[str, Any]], path: Path, columns: tuple[str, ...] = COLUMNS) -> None:
    """results.csv: a header of `columns`, one line per row, RFC 4180 quoting, UTF-8, \\n line ends."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_csv_value(r[c]) for c in columns])


def write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    """results.parquet: the same rows with typed columns (TYPES), built in memory by pyarrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, getattr(pa, TYPES[c])()) for c in COLUMNS])
    columns = {c: [r[c] for r in rows] for c in COLUMNS}
    pq.write_table(pa.Table.from_pydict(columns, schema=schema), str(path))


def write_exports(results: dict[str, Any], folder: Path) -> list[Path]:
    """results.csv, results.parquet and table_one.csv of `results` in `folder`; returns their paths."""
    rows = tidy_rows(results)
    csv_path, parquet_path = folder / "results.csv", folder / "results.parquet"
    write_csv(rows, csv_path)
    write_parquet(rows, parquet_path)
    paths = [csv_path, parquet_path]
    if results.get("table_one"):
        paths.append(folder / "table_one.csv")
        write_csv(table_one_rows(results), paths[-1], TABLE_ONE_COLUMNS)
    return paths
