"""Epidemiology additions to results.json (docs/definitions.md section 8; docs/contract.md, Epidemiology).

Computed after the document's own suppression, from aggregate marts and the suppressed document:

- `statistics`: the interval method every interval of the run uses, and how repeated results are handled;
- `clustered`: each result-level co-occurrence row beside its patient-clustered (robust variance)
  interval, design effect, mean results per patient, and clustered p-values against the references;
- `strata`: every co-occurrence row by calendar year and by care unit, and the audit rate by year,
  with primary and complementary suppression (a stratum never gives a withheld one away);
- `table_one`: cohort characteristics by magnesium status (hypo- vs normomagnesemia results).

Nothing here is row-level: the clustered variance reads only sums over patients (mart_cooccurrence_clusters).
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import duckdb

from pipelines.adjusted import adjusted_ratio_rows
from pipelines.config import Config
from pipelines.db import rows
from pipelines.stats import (
    INTERVAL_LABELS, ClusterSums, clustered_p_value, clustered_proportion, is_small_cell, proportion_interval,
)
from pipelines.seeds import read_seed
from pipelines.stats import Z_95
from pipelines.sweep import sweep_section
from pipelines.suppression import PROPORTION_KEYS, Cell, Chain, State, Sum, check

CLUSTERED_METHOD = "robust_variance"
CLUSTERED_DESCRIPTION = ("patients as clusters: robust (sandwich) variance of the ratio estimator with the "
                         "m/(m-1) factor; the interval is the run's method at the effective sample size "
                         "n / max(1, design effect); p-values: Rao-Scott corrected score test")
STRATA = ("year", "care_unit", "age_band", "sex")  # published strata; the mart's `age` is grouped into bands
MAX_AGE_YEARS = 130  # an age outside 0..this (a birth year typed wrong) is unknown
PROPORTION = ("n", "d", "d-n")


def additions(con: duckdb.DuckDBPyConnection, config: Config, document: dict[str, Any]) -> dict[str, Any]:
    """The epidemiology keys for the suppressed `document` (its rows decide what may be shown)."""
    min_cell = config.privacy.min_cell_size
    method = config.statistics.interval_method
    hours = {r["window"]: r["window_hours"] for r in document["cooccurrence"]}
    names = _window_names(con, document)
    return {
        "statistics": statistics_section(method),
        "clustered": clustered_rows(con, document, method, min_cell, names),
        "strata": strata_section(con, document, method, min_cell, names, hours, config),
        "table_one": table_one(con, document, min_cell, config.strata.age_bands_years),
        "demographics": demographics_section(con, min_cell),
        "adjusted_ratios": adjusted_ratio_rows(con, list(dict.fromkeys(r["abnormality"] for r in document["cooccurrence"])),
                                               document["cooccurrence"][-1]["window"], min_cell),
        "sweep": sweep_section(con, config, document),
    }


def statistics_section(method: str) -> dict[str, Any]:
    """What results.json's intervals are: the method, its label, level, and the repeated-measures method."""
    return {"interval_method": method, "interval_label": INTERVAL_LABELS[method], "confidence_level": 0.95,
            "clustered_method": CLUSTERED_METHOD, "clustered_description": CLUSTERED_DESCRIPTION}


def _window_names(con: duckdb.DuckDBPyConnection, document: dict[str, Any]) -> dict[str, str]:
    """Mart window name (seed) -> published window name, by param_windows' order and the document's."""
    keys = [r[0] for r in con.execute("SELECT window_name FROM param_windows ORDER BY window_id").fetchall()]
    published: list[str] = []
    for r in document["cooccurrence"]:
        if r["window"] not in published:
            published.append(r["window"])
    return dict(zip(keys, published))


# ---- clustered intervals -------------------------------------------------------------------------

def cluster_sums(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str, str], ClusterSums]:
    """Per (abnormality, direction, mart window): the sums the robust variance needs, and nothing per patient."""
    out = {}
    for r in rows(con, "SELECT abnormality, direction, window_name, clusters, n, y, yy, yn, nn "
                       "FROM mart_cooccurrence_clusters"):
        out[(r["abnormality"], r["direction"], r["window_name"])] = ClusterSums(
            int(r["clusters"]), r["n"], r["y"], r["yy"], r["yn"], r["nn"])
    return out


def clustered_rows(con: duckdb.DuckDBPyConnection, document: dict[str, Any], method: str, min_cell: int,
                   names: dict[str, str]) -> list[dict[str, Any]]:
    """One row per result-level co-occurrence row: naive interval (the row's), clustered interval, design
    effect, patients and mean results per patient, and both p-values per reference. Withheld with its
    row; `patients` and `results_per_patient` also when the row's patient-level twin is withheld
    (its denominator is the number of patients)."""
    sums = {(a, d, names[w]): s for (a, d, w), s in cluster_sums(con).items() if w in names}
    patient_rows = {(r["abnormality"], r["direction"], r["window"]): r for r in document["cooccurrence"]
                    if r["level"] == "patient"}
    out = []
    for r in document["cooccurrence"]:
        if r["level"] != "result":
            continue
        key = (r["abnormality"], r["direction"], r["window"])
        s = sums.get(key, ClusterSums(0, 0, 0, 0, 0, 0))
        c = clustered_proportion(s, method)
        hidden = bool(r["suppressed"])
        patients_hidden = hidden or bool(patient_rows[key]["suppressed"]) or is_small_cell(0, s.clusters, min_cell)
        out.append({
            "abnormality": r["abnormality"], "direction": r["direction"], "window": r["window"],
            "window_hours": r["window_hours"], "level": "result",
            "prevalence": None if hidden else r["prevalence"],
            "naive_ci_low": None if hidden else r["ci_low"], "naive_ci_high": None if hidden else r["ci_high"],
            "clustered_ci_low": None if hidden else c.ci_low, "clustered_ci_high": None if hidden else c.ci_high,
            "design_effect": None if hidden else c.design_effect,
            "patients": None if patients_hidden else s.clusters,
            "results_per_patient": None if patients_hidden else c.results_per_patient,
            "references": [{"set": ref["set"], "value": ref["value"], "p_value": None if hidden else ref["p_value"],
                            "clustered_p_value": None if hidden else clustered_p_value(s, ref["value"])}
                           for ref in r["references"]],
            "suppressed": hidden, "patients_suppressed": patients_hidden,
        })
    return out


# ---- strata ----------------------------------------------------------------------------------------

def strata_section(con: duckdb.DuckDBPyConnection, document: dict[str, Any], method: str, min_cell: int,
                   names: dict[str, str], hours: dict[str, float], config: Config) -> dict[str, Any]:
    """`cooccurrence` (every row by year, care unit, age band and sex), `audit_by_year` and
    `standardised` (age-sex standardised prevalence of every row), suppressed together."""
    bands = config.strata.age_bands_years
    found = banded(rows(con, "SELECT * FROM mart_cooccurrence_strata"), bands)
    counts = {(names.get(m["window_name"]), m["abnormality"], m["direction"], m["level"], m["stratum"],
               m["stratum_value"]): m for m in found}
    values = {s: sorted({m["stratum_value"] for m in found if m["stratum"] == s}, key=_value_order) for s in STRATA}
    cooc = []
    for r in document["cooccurrence"]:
        for stratum in STRATA:
            for value in values[stratum]:
                m = counts.get((r["window"], r["abnormality"], r["direction"], r["level"], stratum, value))
                if m is None:  # no index result of this stratum: the row is absent (zero)
                    continue
                num, den = m["numerator"], m["denominator"]
                cooc.append({"abnormality": r["abnormality"], "direction": r["direction"], "window": r["window"],
                             "window_hours": hours[r["window"]], "level": r["level"], "stratum": stratum,
                             "value": value, **_proportion(num, den, method), "suppressed": False,
                             "_raw": (num, den)})
    audit = _audit_years(con, method)
    _suppress_strata(document, cooc, audit, min_cell)
    for row in cooc + audit:
        row.pop("_raw")
    weights = standard_weights(con, config)
    standardised = [standardised_row(r, counts, weights, names) for r in document["cooccurrence"]]
    return {"cooccurrence": cooc, "audit_by_year": audit, "standardised": standardised,
            "standard_population": config.strata.standard_population,
            "age_bands": [band_label(b, bands) for b in range(len(bands) + 1)]}


# ---- age bands and standardisation -------------------------------------------------------------------

def band_label(index: int, bands: tuple[float, ...]) -> str:
    """Band `index` of the lower bounds: 0 is below the first bound ("<18"), the last is open ("80+")."""
    if index == 0:
        return f"<{bands[0]:g}"
    if index == len(bands):
        return f"{bands[-1]:g}+"
    return f"{bands[index - 1]:g}-{bands[index] - 1:g}"


def age_band(age: Any, bands: tuple[float, ...]) -> str:
    """An age in whole years as its band's label; `unknown` when missing or outside 0..MAX_AGE_YEARS."""
    try:
        years = float(age)
    except (TypeError, ValueError):
        return "unknown"
    if not 0 <= years <= MAX_AGE_YEARS:
        return "unknown"
    return band_label(sum(1 for b in bands if years >= b), bands)


def banded(found: list[dict[str, Any]], bands: tuple[float, ...]) -> list[dict[str, Any]]:
    """The strata mart with its `age` rows summed into `age_band` rows and `age|sex` into `band|sex`."""
    out = [m for m in found if m["stratum"] not in ("age", "age_sex")]
    sums: dict[tuple, dict[str, Any]] = {}
    for m in found:
        if m["stratum"] == "age":
            stratum, value = "age_band", age_band(m["stratum_value"], bands)
        elif m["stratum"] == "age_sex":
            age, sex = m["stratum_value"].split("|", 1)
            stratum, value = "age_band_sex", f"{age_band(age, bands)}|{sex}"
        else:
            continue
        key = (m["window_name"], m["abnormality"], m["direction"], m["level"], stratum, value)
        total = sums.setdefault(key, {**m, "stratum": stratum, "stratum_value": value, "numerator": 0,
                                      "denominator": 0, "index_count": 0})
        for k in ("numerator", "denominator", "index_count"):
            total[k] += m[k]
    return out + list(sums.values())


def standard_weights(con: duckdb.DuckDBPyConnection, config: Config) -> dict[str, float]:
    """Weights of the standard population by `band|sex`, summing to 1 (empty without demographics).
    `pooled`: the study's patients with a loaded lab result, by age band at their first result and sex
    (unknown age or sex left out); `seed`: the rows of sql/seeds/standard_population.csv."""
    bands = config.strata.age_bands_years
    if config.strata.standard_population == "seed":
        raw = {f"{r['age_band']}|{r['sex']}": float(r["weight"]) for r in read_seed("standard_population")}
    else:
        raw = {}
        for r in rows(con, "WITH first AS (SELECT patient_id, min(collected_at) AS first_at FROM int_lab_results "
                           "GROUP BY patient_id) SELECT CAST(strftime(f.first_at, '%Y') AS DOUBLE) - d.birth_year AS age, "
                           "d.sex, count(*) AS patients FROM first AS f JOIN mart_patient_demographics AS d "
                           "ON d.patient_id = f.patient_id AND d.status = 'loaded' GROUP BY ALL ORDER BY ALL"):
            band = age_band(r["age"], bands)
            if band != "unknown" and r["sex"] in ("female", "male"):
                raw[f"{band}|{r['sex']}"] = raw.get(f"{band}|{r['sex']}", 0.0) + r["patients"]
    # in key order, so the floating-point sums of the weights (and of the standardised prevalence) are the
    # same on every run whatever order the engine returned the strata in
    total = sum(raw[k] for k in sorted(raw))
    return {k: raw[k] / total for k in sorted(raw)} if total > 0 else {}


def standardised_row(r: dict[str, Any], counts: dict[tuple, dict[str, Any]], weights: dict[str, float],
                     names: dict[str, str]) -> dict[str, Any]:
    """Direct age-sex standardisation of one co-occurrence row: sum_s w_s p_s over the standard's strata
    with index results measured, weights rescaled to 1 over those (`weight_covered` says how much of the
    standard they hold), normal-approximation 95% interval from sum_s w_s^2 p_s (1 - p_s) / n_s.
    Withheld with its row; null without demographics or strata."""
    out = {"abnormality": r["abnormality"], "direction": r["direction"], "window": r["window"],
           "window_hours": r["window_hours"], "level": r["level"], "crude": None if r["suppressed"] else r["prevalence"],
           "standardised": None, "ci_low": None, "ci_high": None, "weight_covered": None,
           "suppressed": bool(r["suppressed"])}
    if r["suppressed"] or not weights:
        return out
    cells = []
    for key, w in weights.items():
        m = counts.get((r["window"], r["abnormality"], r["direction"], r["level"], "age_band_sex", key))
        if m and m["denominator"] > 0:
            cells.append((w, m["numerator"] / m["denominator"], m["denominator"]))
    covered = sum(w for w, _, _ in cells)
    if covered <= 0:
        return out
    value = sum(w * p for w, p, _ in cells) / covered
    variance = sum((w / covered) ** 2 * p * (1 - p) / n for w, p, n in cells)
    half = Z_95 * variance ** 0.5
    out.update(standardised=value, ci_low=max(0.0, value - half), ci_high=min(1.0, value + half),
               weight_covered=covered)
    return out


def _value_order(value: str) -> tuple[int, float, str]:
    """Strata values in order: by their leading number (years, age bands; "<18" first), then text,
    with `other` and `unknown` last."""
    text = value.lstrip("<")
    digits = text[:len(text) - len(text.lstrip("0123456789."))]
    try:
        number = float(digits) - (0.5 if value.startswith("<") else 0)
    except ValueError:
        number = float("inf")
    return ({"other": 1, "unknown": 2}.get(value, 0), number, value)


def _proportion(numerator: int, denominator: int, method: str) -> dict[str, Any]:
    low, high = proportion_interval(numerator, denominator, method)
    return {"numerator": numerator, "denominator": denominator,
            "prevalence": numerator / denominator if denominator else None, "ci_low": low, "ci_high": high}


def _audit_years(con: duckdb.DuckDBPyConnection, method: str) -> list[dict[str, Any]]:
    """The audit's Mg-checked rate per calendar year of episode start: the sum of its months (mart_audit)."""
    years: dict[str, list[int]] = {}
    months: dict[str, dict[str, tuple[int, int]]] = {}
    for m in rows(con, "SELECT group_value, episodes, mg_checked FROM mart_audit WHERE grouping = 'month' "
                       "ORDER BY group_value"):
        year = str(m["group_value"])[:4]
        total = years.setdefault(year, [0, 0])
        total[0] += int(m["mg_checked"])
        total[1] += int(m["episodes"])
        months.setdefault(year, {})[str(m["group_value"])] = (int(m["mg_checked"]), int(m["episodes"]))
    out = []
    for year, (checked, episodes) in years.items():
        p = _proportion(checked, episodes, method)
        out.append({"year": year, "episodes": episodes, "mg_checked": checked, "rate": p["prevalence"],
                    "ci_low": p["ci_low"], "ci_high": p["ci_high"], "suppressed": False,
                    "_raw": (checked, episodes), "_months": months[year]})
    return out


def _suppress_strata(document: dict[str, Any], cooc: list[dict[str, Any]], audit: list[dict[str, Any]],
                     min_cell: int) -> None:
    """Primary suppression (a count of 1..min_cell-1), then complementary: the strata of a row add up to
    the row (hidden strata must not be recoverable, and a withheld row hides its strata); a stratum in
    the narrow window lies within the wide one (their difference must not be small); a year is the sum
    of its months (shown, it must not give away a lone withheld month or a small sum of withheld ones)
    and the years add up to the overall rate. Only the strata are ever hidden: the document is safe on its own."""
    if min_cell <= 0:
        for row in audit:
            row.pop("_months")
        return
    state = State({}, min_cell)
    cooc_ids = {}
    for i, r in enumerate(document["cooccurrence"]):
        cid = f"cooccurrence[{i}]"
        n, d = (r["numerator"], r["denominator"]) if not r["suppressed"] else (0, 0)
        state.cells[cid] = Cell(cid, r, (), {"n": n or 0, "d": d or 0, "d-n": (d or 0) - (n or 0)},
                                hidden=bool(r["suppressed"]), weight=9)
        cooc_ids[(r["abnormality"], r["direction"], r["window"], r["level"])] = cid
    mine: list[str] = []
    for i, row in enumerate(cooc):
        mine.append(_add(state, f"strata[{i}]", row, PROPORTION_KEYS, *row["_raw"]))
    month_hidden = {m["month"]: bool(m["suppressed"]) for m in (document.get("audit") or {}).get("by_month") or []}
    overall = (document.get("audit") or {}).get("overall") or {}
    state.cells["audit.overall"] = Cell("audit.overall", overall, (), {
        "n": overall.get("mg_checked") or 0, "d": overall.get("episodes") or 0,
        "d-n": (overall.get("episodes") or 0) - (overall.get("mg_checked") or 0)},
        hidden=bool(overall.get("suppressed")), weight=9)
    year_ids = []
    for i, row in enumerate(audit):
        cid = _add(state, f"audit_year[{i}]", row, ("episodes", "mg_checked", "rate", "ci_low", "ci_high"),
                   *row["_raw"])
        withheld = [counts for month, counts in row.pop("_months").items() if month_hidden.get(month, True)]
        sums = (sum(n for n, _ in withheld), sum(d for _, d in withheld))
        if len(withheld) == 1 or any(state.small(v) for v in (sums[0], sums[1], sums[1] - sums[0])):
            state.cells[cid].hidden = True
        mine.append(cid)
        year_ids.append(cid)
    groups = _strata_groups(cooc, cooc_ids)
    if year_ids:
        groups.append(Sum(("audit.overall", PROPORTION), [(cid, PROPORTION) for cid in year_ids]))
    changed = True
    while changed:
        changed = False
        for group in groups:
            total = state.cells[group.total[0]] if isinstance(group, Sum) else None
            if total is not None and total.hidden:
                victims = [p[0] for p in group.parts if not state.cells[p[0]].hidden and not state.cells[p[0]].zero]
            else:
                victim = check(group, state)
                victims = [victim] if victim in mine else (
                    [] if victim is None else [c for c, _ in _parts(group) if c in mine and
                                               not state.cells[c].hidden and not state.cells[c].zero])
            for victim in victims:
                state.hide(victim, f"derivable ({type(group).__name__})")
                changed = True
    for cid in mine:
        cell = state.cells[cid]
        if cell.hidden:
            for key in cell.keys:
                cell.row[key] = None
            cell.row["suppressed"] = True


def _add(state: State, cid: str, row: dict[str, Any], keys: tuple[str, ...], numerator: int, denominator: int) -> str:
    cell = Cell(cid, row, keys, {"n": numerator, "d": denominator, "d-n": denominator - numerator}, weight=0,
                order=len(state.cells))
    cell.hidden = any(state.small(v) for v in cell.values.values())
    state.cells[cid] = cell
    return cid


def _parts(group: Any) -> list[tuple[str, tuple[str, ...]]]:
    return group.parts if isinstance(group, Sum) else group.members


def _strata_groups(cooc: list[dict[str, Any]], cooc_ids: dict[tuple, str]) -> list[Any]:
    """Sum: a row's strata of one kind add up to it. Chain: one stratum's rows, narrow window first."""
    sums: dict[tuple, list[str]] = {}
    chains: dict[tuple, list[tuple[float, str]]] = {}
    for i, r in enumerate(cooc):
        row_key = (r["abnormality"], r["direction"], r["window"], r["level"])
        sums.setdefault((row_key, r["stratum"]), []).append(f"strata[{i}]")
        chain_key = (r["abnormality"], r["direction"], r["level"], r["stratum"], r["value"])
        chains.setdefault(chain_key, []).append((r["window_hours"], f"strata[{i}]"))
    out: list[Any] = [Sum((cooc_ids[row_key], PROPORTION), [(p, PROPORTION) for p in parts])
                      for (row_key, _), parts in sums.items()]
    out += [Chain([(cid, PROPORTION) for _, cid in sorted(members)]) for members in chains.values()
            if len(members) > 1]
    return out


# ---- table one -------------------------------------------------------------------------------------

TABLE_ONE_GROUPS = (("hypomagnesemia", "hypo"), ("normomagnesemia", "normo"))


def table_one(con: duckdb.DuckDBPyConnection, document: dict[str, Any], min_cell: int,
              bands: tuple[float, ...] = (18.0, 45.0, 65.0, 80.0)) -> dict[str, Any]:
    """Cohort characteristics by magnesium status: the magnesium results below the threshold
    (hypomagnesemia) and in the normal range (normomagnesemia), the index results of the analysis.
    Rows: results, patients, results per patient, care unit mix, drug class exposure at the result,
    and each abnormality's prevalence in the co-occurrence window (copied from `cooccurrence`, result
    and patient level). A patient with both kinds of result is in both columns. Counts of
    1..min_cell-1, and a count whose complement in its column is that small, are withheld."""
    groups = _group_counts(con, bands)
    out: list[dict[str, Any]] = []
    out.append(_count_row("magnesium results", None, "n", {k: (g["results"], None) for k, g in groups.items()},
                          min_cell))
    out.append(_count_row("patients", None, "n", {k: (g["patients"], None) for k, g in groups.items()}, min_cell))
    out.append(_mean_row(groups, min_cell))
    have_demographics = any(g["ages"] or set(g["sexes"]) - {"unknown"} for g in groups.values())
    if have_demographics:
        out.append(_age_row(groups, min_cell))
        for kind, label in (("bands", "age band at the result"), ("sexes", "sex")):
            values = sorted({v for g in groups.values() for v in g[kind]}, key=_value_order)
            part = [_count_row(label, v, "n (%)", {k: (g[kind].get(v, 0), g["results"]) for k, g in groups.items()},
                               min_cell) for v in values]
            _complement(part, {k: {"units": g[kind]} for k, g in groups.items()}, min_cell)
            out += part
    units = sorted({u for g in groups.values() for u in g["units"]}, key=_value_order)
    unit_rows = [_count_row("care unit", u, "n (%)", {k: (g["units"].get(u, 0), g["results"]) for k, g in
                                                       groups.items()}, min_cell) for u in units]
    _complement(unit_rows, groups, min_cell)
    out += unit_rows
    classes = sorted({c for g in groups.values() for c in g["exposed"]})
    out += [_count_row("exposed to drug class at the result", c, "n (%)",
                       {k: (g["exposed"].get(c, 0), g["results"]) for k, g in groups.items()}, min_cell)
            for c in classes]
    out += _prevalence_rows(document)
    demographics = ("age and sex from the patients table" if have_demographics
                    else "no patients table: no age or sex rows")
    return {"groups": [k for k, _ in TABLE_ONE_GROUPS], "unit": "magnesium result", "rows": out,
            "demographics": demographics}


# Table one's index results (int_lab_flags AS f): the magnesium results of its two classes.
TABLE_ONE_WHERE = "WHERE f.analyte = 'MG' AND (f.is_hypomagnesemia OR f.is_normomagnesemia)"
TABLE_ONE_CLASS = "CASE WHEN f.is_hypomagnesemia THEN 'hypo' ELSE 'normo' END"


def _group_counts(con: duckdb.DuckDBPyConnection, bands: tuple[float, ...]) -> dict[str, dict[str, Any]]:
    """Table one's counts of each index class (TABLE_ONE_GROUPS' keys): results, patients, care units,
    drug class exposures, ages, age bands and sexes, by three queries over both classes."""
    classes = [r[0] for r in con.execute("SELECT DISTINCT drug_class FROM ref_drug_classes").fetchall()]
    groups: dict[str, dict[str, Any]] = {
        cls: {"results": 0, "patients": 0, "units": Counter(), "exposed": dict.fromkeys(classes, 0), "ages": [],
              "bands": Counter(), "sexes": Counter()}
        for _, cls in TABLE_ONE_GROUPS}
    for cls, results, patients in con.execute(
            f"SELECT {TABLE_ONE_CLASS}, count(*), count(DISTINCT f.patient_id) FROM int_lab_flags AS f "
            f"{TABLE_ONE_WHERE} GROUP BY 1"
    ).fetchall():
        groups[cls]["results"], groups[cls]["patients"] = int(results), int(patients)
    for cls, unit, age, sex, n in con.execute(
            f"SELECT {TABLE_ONE_CLASS}, CASE WHEN f.care_unit IS NULL THEN 'unknown' "
            "WHEN u.patients >= p.min_cell_size THEN f.care_unit ELSE 'other' END, "
            "CAST(strftime(f.collected_at, '%Y') AS DOUBLE) - d.birth_year, coalesce(d.sex, 'unknown'), count(*) "
            "FROM int_lab_flags AS f LEFT JOIN int_care_unit_patients AS u ON u.care_unit = f.care_unit "
            "LEFT JOIN mart_patient_demographics AS d ON d.patient_id = f.patient_id AND d.status = 'loaded' "
            f"CROSS JOIN params AS p {TABLE_ONE_WHERE} GROUP BY ALL").fetchall():
        g, n, band = groups[cls], int(n), age_band(age, bands)
        g["units"][unit] += n
        g["bands"][band] += n
        g["sexes"][sex] += n
        if band != "unknown":
            g["ages"].append((float(age), n))
    for cls, drug_class, n in con.execute(
            f"SELECT {TABLE_ONE_CLASS}, x.drug_class, count(*) FILTER (WHERE x.is_exposed) FROM int_mg_exposures AS x "
            f"JOIN int_lab_flags AS f ON f.row_id = x.row_id {TABLE_ONE_WHERE} "
            "GROUP BY ALL").fetchall():
        if drug_class in groups[cls]["exposed"]:
            groups[cls]["exposed"][drug_class] = int(n)
    return {key: groups[cls] for key, cls in TABLE_ONE_GROUPS}


def _age_row(groups: dict[str, dict[str, Any]], min_cell: int) -> dict[str, Any]:
    """Mean age at the result (years) over the results of known age; withheld when those are few."""
    row: dict[str, Any] = {"characteristic": "age at the result, years", "category": None, "statistic": "mean"}
    for group, g in groups.items():
        known = sum(n for _, n in g["ages"])
        small = is_small_cell(0, known, min_cell)
        row[group] = None if small or not known else sum(a * n for a, n in g["ages"]) / known
        row[f"{group}_percent"] = None
        row[f"{group}_suppressed"] = small
    return row


def _count_row(characteristic: str, category: str | None, statistic: str,
               cells: dict[str, tuple[int, int | None]], min_cell: int) -> dict[str, Any]:
    row: dict[str, Any] = {"characteristic": characteristic, "category": category, "statistic": statistic}
    for group, (n, total) in cells.items():
        small = is_small_cell(n, total if total is not None else n, min_cell)
        row[group] = None if small else n
        row[f"{group}_percent"] = None if small or not total else 100.0 * n / total
        row[f"{group}_suppressed"] = small
    return row


def _mean_row(groups: dict[str, dict[str, Any]], min_cell: int) -> dict[str, Any]:
    row: dict[str, Any] = {"characteristic": "magnesium results per patient", "category": None, "statistic": "mean"}
    for group, g in groups.items():
        small = is_small_cell(0, g["patients"], min_cell) or is_small_cell(0, g["results"], min_cell)
        row[group] = None if small or not g["patients"] else g["results"] / g["patients"]
        row[f"{group}_percent"] = None
        row[f"{group}_suppressed"] = small
    return row


def _complement(unit_rows: list[dict[str, Any]], groups: dict[str, dict[str, Any]], min_cell: int) -> None:
    """Care units add up to the column's results: a lone withheld unit (or withheld units summing to a
    small count) would be the total minus the shown ones, so the next smallest unit is withheld too."""
    if min_cell <= 0:
        return
    for group, g in groups.items():
        raw = {id(r): g["units"].get(r["category"], 0) for r in unit_rows}
        while True:
            hidden = [r for r in unit_rows if r[f"{group}_suppressed"] and raw[id(r)]]
            shown = [r for r in unit_rows if not r[f"{group}_suppressed"] and raw[id(r)]]
            hidden_sum = sum(raw[id(r)] for r in hidden)
            if not hidden or not shown or (len(hidden) > 1 and not 1 <= hidden_sum < min_cell):
                break
            victim = min(shown, key=lambda r: raw[id(r)])
            victim[group] = victim[f"{group}_percent"] = None
            victim[f"{group}_suppressed"] = True


def _prevalence_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Each abnormality's prevalence among the column's results (and patients) in the co-occurrence window."""
    window = next((r["window"] for r in reversed(document["cooccurrence"])), None)
    by_key = {(r["abnormality"], r["direction"], r["window"], r["level"]): r for r in document["cooccurrence"]}
    abnormalities = list(dict.fromkeys(r["abnormality"] for r in document["cooccurrence"]))
    out = []
    for level in ("result", "patient"):
        for a in abnormalities:
            row: dict[str, Any] = {"characteristic": f"{a} ({window} window, {level} level)", "category": None,
                                   "statistic": "n / measured (%)"}
            for group, direction in (("hypomagnesemia", "abnormality_given_hypomg"),
                                     ("normomagnesemia", "abnormality_given_normomg")):
                r = by_key[(a, direction, window, level)]
                row[group] = r["numerator"]
                row[f"{group}_denominator"] = r["denominator"]
                row[f"{group}_percent"] = None if r["prevalence"] is None else 100.0 * r["prevalence"]
                row[f"{group}_suppressed"] = bool(r["suppressed"])
            out.append(row)
    return out


# ---- demographics row accounting -------------------------------------------------------------------

def demographics_section(con: duckdb.DuckDBPyConnection, min_cell: int) -> dict[str, Any]:
    """The patients table's row accounting (rows read = loaded + quarantined, quarantined by reason) and
    how many patients of the lab results have demographics. Counts of 1..min_cell-1 are withheld, and
    a count that would give a withheld one away by subtraction with it."""
    files = rows(con, "SELECT source_file, count(*) AS rows_read, count(*) FILTER (WHERE status = 'loaded') AS loaded, "
                      "count(*) FILTER (WHERE status = 'quarantined') AS quarantined FROM mart_patient_demographics "
                      "GROUP BY source_file ORDER BY source_file")
    reasons = rows(con, "SELECT reason, count(*) AS rows FROM mart_patient_demographics WHERE status = 'quarantined' "
                        "GROUP BY reason ORDER BY reason")
    with_, without = con.execute(
        "SELECT count(*) FILTER (WHERE d.patient_id IS NOT NULL), count(*) FILTER (WHERE d.patient_id IS NULL) "
        "FROM (SELECT DISTINCT patient_id FROM int_lab_results) AS l "
        "LEFT JOIN mart_patient_demographics AS d ON d.patient_id = l.patient_id AND d.status = 'loaded'").fetchone()
    read = sum(f["rows_read"] for f in files)
    loaded, quarantined = sum(f["loaded"] for f in files), sum(f["quarantined"] for f in files)
    pair = _pair(loaded, quarantined, min_cell)
    reason_rows = [{"reason": r["reason"], "rows": r["rows"]} for r in reasons]
    reasons_hidden = pair[1] is None or any(is_small_cell(0, r["rows"], min_cell) for r in reason_rows)
    patients = _pair(int(with_), int(without), min_cell)
    return {
        "patients_table": bool(files),
        "rows_read": None if is_small_cell(0, read, min_cell) else read,
        "rows_loaded": pair[0], "rows_quarantined": pair[1],
        "quarantine_reasons": [{"reason": r["reason"], "rows": None if reasons_hidden else r["rows"],
                                "suppressed": reasons_hidden} for r in reason_rows],
        "lab_patients_with_demographics": patients[0], "lab_patients_without_demographics": patients[1],
    }


def _pair(a: int, b: int, min_cell: int) -> tuple[int | None, int | None]:
    """Two counts that add up to a published total: both withheld when either is small."""
    hidden = is_small_cell(0, a, min_cell) or is_small_cell(0, b, min_cell)
    return (None, None) if hidden else (a, b)
