"""Small-cell suppression over the whole results document (docs/definitions.md section 7).

Primary suppression hides a cell whose count lies in 1..min_cell_size-1. That alone is not enough:
a hidden cell can often be recovered by subtraction (overall minus the shown months; the Mg
results minus the shown histogram bins; the rows at 1.8 mg/dL minus the rows at 1.7 mg/dL). This
module finds every such derivation and suppresses further cells until none is left.

The document is plain dicts as `analyse.build_results` writes it. A *cell* is the part of a row that
is shown or hidden as one unit (a proportion, a count, an audit measure); its *measures* are the
raw counts an attacker could subtract (for a proportion: numerator `n`, denominator `d` and `d-n`).
Cells are related by four kinds of *group*, all listed in `groups()`:

- `Sum`: a total and the parts it is made of (months of the overall audit row, bins of the Mg
  results, quarantine reasons of a table's quarantined rows). Whatever the parts do not cover is a
  hidden remainder (episodes without a care unit). With the total shown, the parts that are not
  shown must be at least two published cells, and their sum (the total minus the shown parts) must
  not be small; with the total hidden, at least one part must be hidden too.
- `Chain`: nested cells, smallest first (sensitivity rows at rising thresholds; same draw within the
  co-occurrence window; attrition steps). The difference of two shown neighbours must not be small.
- `Same`: cells that publish the same count in two places; all shown or all hidden.
- `Depends`: a cell computed from others (a prevalence ratio and its Katz interval give back both
  inputs); hidden when any input is.

A fix suppresses the cheapest eligible cell: the lowest weight first (headline co-occurrence rows
weigh more than counts and attrition), then the smallest count, which is "the next-smallest cell of
the group". A cell whose counts are all zero is never suppressed (zero stays zero). The pass repeats
until no group finds a derivation (a fixed point: cells are only ever added to the hidden set).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

PROPORTION_KEYS = ("numerator", "denominator", "prevalence", "ci_low", "ci_high")
AUDIT_KEYS = ("episodes", "mg_checked", "rate", "ci_low", "ci_high")
AUDIT_SECTIONS = (("by_month", "month"), ("by_severity", "severity"), ("by_care_unit", "care_unit"))
QUARANTINE_TOTALS = {"labs": "lab_rows_quarantined", "medications": "med_rows_quarantined"}
COUNT_SUMS = (
    ("lab_rows_read", ("lab_rows_loaded", "lab_rows_out_of_scope", "lab_rows_quarantined", "lab_rows_superseded")),
    ("med_rows_read", ("med_rows_loaded", "med_rows_out_of_scope", "med_rows_quarantined", "med_rows_superseded")),
)
# attrition step (mart_attrition) -> the counts key that publishes the same number of rows
ATTRITION_COUNTS = {
    "lab rows read": "lab_rows_read",
    "loaded (not quarantined)": "lab_rows_loaded",
    "magnesium results": "mg_results",
    "hypomagnesemia results": "hypomg_results",
}
ATTRITION_HYPOMG_STEP = "hypomagnesemia results"
ATTRITION_WITH_K_PREFIX = "hypomagnesemia results with potassium measured"
HEADLINE_WEIGHT = 2


@dataclass
class Cell:
    """One unit of suppression: where it is published, what it nulls, and its raw counts."""

    id: str
    row: dict[str, Any]
    keys: tuple[str, ...]
    values: dict[str, int]
    flag: str | None = "suppressed"
    weight: int = 1
    order: int = 0
    hidden: bool = False

    @property
    def zero(self) -> bool:
        return all(v == 0 for v in self.values.values())


@dataclass
class Sum:
    """total = sum of parts, for each measure; `measures[i]` names measure i in each member."""

    total: tuple[str, tuple[str, ...]]
    parts: list[tuple[str, tuple[str, ...]]]


@dataclass
class Chain:
    """Nested cells, smallest first: each member's measures are at most the next member's."""

    members: list[tuple[str, tuple[str, ...]]]


@dataclass
class Same:
    """Cells publishing the same counts: shown together or hidden together."""

    members: list[str]


@dataclass
class Depends:
    """`cell` is computed from `inputs` and gives them back: hidden when any input is."""

    cell: str
    inputs: list[str]


Group = Sum | Chain | Same | Depends


@dataclass
class State:
    cells: dict[str, Cell]
    min_cell: int
    log: list[str] = field(default_factory=list)

    def small(self, value: int) -> bool:
        return 1 <= value < self.min_cell

    def hide(self, cell_id: str, why: str) -> None:
        self.cells[cell_id].hidden = True
        self.log.append(f"{cell_id}: {why}")

    def cheapest(self, ids: Iterable[tuple[str, tuple[str, ...]]]) -> str | None:
        """The shown, non-zero cell to suppress next: lowest weight, then smallest first measure."""
        candidates = [(self.cells[i], m) for i, m in ids if not self.cells[i].hidden and not self.cells[i].zero]
        if not candidates:
            return None
        cell, _ = min(candidates, key=lambda c: (c[0].weight, c[0].values[c[1][0]], c[0].order))
        return cell.id


# ---- cells --------------------------------------------------------------------------------------

def _proportion(n: Any, d: Any) -> dict[str, int]:
    n, d = int(n or 0), int(d or 0)
    return {"n": n, "d": d, "d-n": d - n}


def _rows(doc: dict[str, Any], *path: str) -> list[dict[str, Any]]:
    node: Any = doc
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            return []
    return node if isinstance(node, list) else []


def cells(shown: dict[str, Any], raw: dict[str, Any]) -> dict[str, Cell]:
    """Every suppressible cell of the document, with its raw counts (from `raw`, same layout)."""
    out: dict[str, Cell] = {}

    def add(cell: Cell, hidden: bool | None = None) -> None:
        """`hidden` overrides the row's flag for cells that share a row flag (null = hidden)."""
        cell.order = len(out)
        cell.hidden = bool(cell.flag and cell.row.get(cell.flag)) if hidden is None else hidden
        out[cell.id] = cell

    for key, value in (raw.get("counts") or {}).items():
        if isinstance(value, int) and not isinstance(value, bool):
            add(Cell(f"counts.{key}", shown["counts"], (key,), {"n": value}, flag=None),
                hidden=shown["counts"].get(key) is None and value != 0)
    for i, (row, r) in enumerate(zip(_rows(shown, "cooccurrence"), _rows(raw, "cooccurrence"))):
        add(Cell(f"cooccurrence[{i}]", row, (*PROPORTION_KEYS, "mg_tested_fraction", "references"),
                 _proportion(r["numerator"], r["denominator"]), weight=HEADLINE_WEIGHT))
    for i, row in enumerate(_rows(shown, "prevalence_ratios")):
        add(Cell(f"prevalence_ratios[{i}]", row, ("ratio", "ci_low", "ci_high"), {}, weight=HEADLINE_WEIGHT))
    for i, (row, r) in enumerate(zip(_rows(shown, "sensitivity"), _rows(raw, "sensitivity"))):
        add(Cell(f"sensitivity[{i}]", row, PROPORTION_KEYS, _proportion(r["numerator"], r["denominator"])))
    _audit_cells(shown, raw, add)
    for i, (row, r) in enumerate(zip(_rows(shown, "exposures"), _rows(raw, "exposures"))):
        exposed = _proportion(r["exposed_hypomg"], r["exposed_mg_results"])
        unexposed = _proportion(r["unexposed_hypomg"], r["unexposed_mg_results"])
        values = {**{f"exposed {k}": v for k, v in exposed.items()},
                  **{f"unexposed {k}": v for k, v in unexposed.items()}}
        add(Cell(f"exposures[{i}]", row, ("exposed_mg_results", "exposed_hypomg", "unexposed_mg_results",
                                          "unexposed_hypomg"), values))
    for i, (row, r) in enumerate(zip(_rows(shown, "attrition"), _rows(raw, "attrition"))):
        for key in ("rows", "patients"):  # two cells sharing the row's flag
            value = int(r[key] or 0)
            add(Cell(f"attrition[{i}].{key}", row, (key,), {"n": value}), hidden=row.get(key) is None and value != 0)
    for i, (row, r) in enumerate(zip(_rows(shown, "quarantine_reasons"), _rows(raw, "quarantine_reasons"))):
        add(Cell(f"quarantine_reasons[{i}]", row, ("rows",), {"n": int(r["rows"] or 0)}))
    for i, (row, r) in enumerate(zip(_rows(shown, "mg_distribution", "bins"), _rows(raw, "mg_distribution", "bins"))):
        add(Cell(f"mg_distribution.bins[{i}]", row, ("results",), {"n": int(r["results"] or 0)}))
    return out


def _audit_cells(shown: dict[str, Any], raw: dict[str, Any], add: Callable[[Cell], None]) -> None:
    """The overall audit row holds three cells (checked, repleted, refractory); breakdown rows one."""
    overall, r = (shown.get("audit") or {}).get("overall"), (raw.get("audit") or {}).get("overall")
    if overall is not None and r is not None:
        add(Cell("audit.overall", overall, AUDIT_KEYS, _audit_values(r["episodes"], r["mg_checked"])))
        add(Cell("audit.overall.repleted", overall, (
            "low_mg_episodes", "mg_repleted", "repleted_rate", "repleted_ci_low", "repleted_ci_high"),
            _proportion(r["mg_repleted"], r["low_mg_episodes"]), flag="repleted_suppressed"))
        add(Cell("audit.overall.refractory", overall, (
            "refractory_episodes", "refractory_mg_checked", "refractory_checked_rate", "refractory_checked_ci_low",
            "refractory_checked_ci_high"),
            _proportion(r["refractory_mg_checked"], r["refractory_episodes"]), flag="refractory_suppressed"))
    for section, _name in AUDIT_SECTIONS:
        for i, (row, rr) in enumerate(zip(_rows(shown, "audit", section), _rows(raw, "audit", section))):
            add(Cell(f"audit.{section}[{i}]", row, AUDIT_KEYS, _audit_values(rr["episodes"], rr["mg_checked"])))


def _audit_values(episodes: Any, checked: Any) -> dict[str, int]:
    p = _proportion(checked, episodes)
    return {"episodes": p["d"], "mg_checked": p["n"], "unchecked": p["d-n"]}


# ---- groups -------------------------------------------------------------------------------------

PROPORTION = ("n", "d", "d-n")
AUDIT = ("episodes", "mg_checked", "unchecked")


def groups(doc: dict[str, Any], cells_: dict[str, Cell]) -> list[Group]:
    """Every relation between published cells that lets one be computed from others."""
    out: list[Group] = []
    out += _audit_groups(doc, cells_)
    out += _counts_groups(doc, cells_)
    out += _distribution_groups(doc, cells_)
    out += _quarantine_groups(doc, cells_)
    out += _attrition_groups(doc, cells_)
    out += _sensitivity_groups(doc, cells_)
    out += _cooccurrence_groups(doc, cells_)
    _share_weights(out, cells_)
    return out


def _share_weights(relations: list[Group], cells_: dict[str, Cell]) -> None:
    """Cells publishing the same count weigh as much as the heaviest of them (headline rows)."""
    changed = True
    while changed:
        changed = False
        for group in relations:
            if isinstance(group, Same):
                weight = max(cells_[c].weight for c in group.members)
                for c in group.members:
                    if cells_[c].weight < weight:
                        cells_[c].weight, changed = weight, True


def _audit_groups(doc: dict[str, Any], cells_: dict[str, Cell]) -> list[Group]:
    if "audit.overall" not in cells_:
        return []
    out: list[Group] = []
    for section, _name in AUDIT_SECTIONS:
        parts = [(f"audit.{section}[{i}]", AUDIT) for i in range(len(_rows(doc, "audit", section)))]
        if parts:
            out.append(Sum(("audit.overall", AUDIT), parts))
    # repleted episodes are low-Mg episodes, which were checked; refractory episodes are episodes
    out.append(Chain([("audit.overall.repleted", ("d",)), ("audit.overall", ("mg_checked",))]))
    out.append(Chain([("audit.overall.refractory", ("d",)), ("audit.overall", ("episodes",))]))
    out.append(Chain([("audit.overall.refractory", ("n",)), ("audit.overall", ("mg_checked",))]))
    return out


def _counts_groups(doc: dict[str, Any], cells_: dict[str, Cell]) -> list[Group]:
    out: list[Group] = []
    for total, parts in COUNT_SUMS:
        present = [(f"counts.{p}", ("n",)) for p in parts if f"counts.{p}" in cells_]
        if f"counts.{total}" in cells_ and present:
            out.append(Sum((f"counts.{total}", ("n",)), present))
    if "counts.hypomg_results" in cells_ and "counts.mg_results" in cells_:
        out.append(Chain([("counts.hypomg_results", ("n",)), ("counts.mg_results", ("n",))]))
    return out


def _distribution_groups(doc: dict[str, Any], cells_: dict[str, Cell]) -> list[Group]:
    bins = [(f"mg_distribution.bins[{i}]", ("n",)) for i in range(len(_rows(doc, "mg_distribution", "bins")))]
    return [Sum(("counts.mg_results", ("n",)), bins)] if bins and "counts.mg_results" in cells_ else []


def _quarantine_groups(doc: dict[str, Any], cells_: dict[str, Cell]) -> list[Group]:
    out: list[Group] = []
    reasons = _rows(doc, "quarantine_reasons")
    for table, total in QUARANTINE_TOTALS.items():
        parts = [(f"quarantine_reasons[{i}]", ("n",)) for i, r in enumerate(reasons) if r["input_table"] == table]
        if parts and f"counts.{total}" in cells_:
            out.append(Sum((f"counts.{total}", ("n",)), parts))
    return out


def _attrition_groups(doc: dict[str, Any], cells_: dict[str, Cell]) -> list[Group]:
    steps = _rows(doc, "attrition")
    if not steps:
        return []
    out: list[Group] = [Chain([(f"attrition[{i}].{key}", ("n",)) for i in reversed(range(len(steps)))])
                         for key in ("rows", "patients")]
    for i, step in enumerate(steps):
        key = ATTRITION_COUNTS.get(step["step"])
        if key and f"counts.{key}" in cells_:
            out.append(Same([f"attrition[{i}].rows", f"counts.{key}"]))
        if step["step"].startswith(ATTRITION_WITH_K_PREFIX):
            window = _cooccurrence_window(doc)
            for level, key in (("result", "rows"), ("patient", "patients")):
                cid = _cooccurrence_id(doc, "hypokalemia", "abnormality_given_hypomg", window, level)
                if cid:
                    out.append(Same([f"attrition[{i}].{key}", cid]))
    return out


SENSITIVITY_DEFAULT_DIRECTION = "abnormality_given_hypomg"
# Measures compared along a sensitivity direction's chains (thresholds, windows). Given
# hypomagnesemia, a higher threshold adds index results, so numerator, denominator and their
# difference all grow (all three are checked on both chains). Given the abnormality, the index and
# the denominator stay as the threshold rises and only the numerator grows (the difference shrinks by
# as much, so the numerator's step is the one to check); a wider window adds to both.
SENSITIVITY_MEASURES = {"abnormality_given_hypomg": PROPORTION, "hypomg_given_abnormality": ("n", "d")}


def _sensitivity_groups(doc: dict[str, Any], cells_: dict[str, Cell]) -> list[Group]:
    """Rows at rising thresholds are nested, and so are same draw and the co-occurrence window, within
    each direction; the row at the configured threshold (and calcium definition) publishes the counts
    of the co-occurrence row of its direction and window at result level."""
    rows = _rows(doc, "sensitivity")
    out: list[Group] = []
    by_window: dict[tuple, list[tuple[float, int]]] = {}
    by_threshold: dict[tuple, list[tuple[int, int]]] = {}
    for i, r in enumerate(rows):
        direction = r.get("direction", SENSITIVITY_DEFAULT_DIRECTION)
        by_window.setdefault((direction, r["abnormality"], r["window"], r["hypocalcemia_definition"]), []).append(
            (r["mg_threshold_mg_dl"], i))
        by_threshold.setdefault((direction, r["abnormality"], r["mg_threshold_mg_dl"], r["hypocalcemia_definition"]),
                                []).append((0 if r["window"] == "same_draw" else 1, i))
    for key, members in [*by_window.items(), *by_threshold.items()]:
        if len(members) > 1:
            measures = SENSITIVITY_MEASURES.get(key[0], PROPORTION)
            out.append(Chain([(f"sensitivity[{i}]", measures) for _, i in sorted(members)]))
    threshold, definition = _parameter(doc, "thresholds", "hypomagnesemia_mg_dl"), _parameter(
        doc, "analysis", "hypocalcemia_definition")
    for i, r in enumerate(rows):
        if threshold is None or not math.isclose(r["mg_threshold_mg_dl"], threshold):
            continue
        if r["abnormality"] == "hypocalcemia" and r["hypocalcemia_definition"] != definition:
            continue
        direction = r.get("direction", SENSITIVITY_DEFAULT_DIRECTION)
        cid = _cooccurrence_id(doc, r["abnormality"], direction, r["window"], "result")
        if cid:
            cells_[f"sensitivity[{i}]"].weight = HEADLINE_WEIGHT
            out.append(Same([f"sensitivity[{i}]", cid]))
    return out


def _cooccurrence_groups(doc: dict[str, Any], cells_: dict[str, Cell]) -> list[Group]:
    """Same draw within the window; hypomg denominators within the hypomg results; ratio inputs."""
    rows = _rows(doc, "cooccurrence")
    out: list[Group] = []
    by_key: dict[tuple, list[tuple[int, int]]] = {}
    for i, r in enumerate(rows):
        by_key.setdefault((r["abnormality"], r["direction"], r["level"]), []).append(
            (0 if r["window"] == "same_draw" else 1, i))
        if r["direction"] == "abnormality_given_hypomg":
            if r["level"] == "result" and "counts.hypomg_results" in cells_:
                out.append(Chain([(f"cooccurrence[{i}]", ("d",)), ("counts.hypomg_results", ("n",))]))
            step = _attrition_index(doc, ATTRITION_HYPOMG_STEP)
            if r["level"] == "patient" and step is not None:
                out.append(Chain([(f"cooccurrence[{i}]", ("d",)), (f"attrition[{step}].patients", ("n",))]))
    for members in by_key.values():
        if len(members) > 1:
            out.append(Chain([(f"cooccurrence[{i}]", PROPORTION) for _, i in sorted(members)]))
    for i, r in enumerate(_rows(doc, "prevalence_ratios")):
        inputs = [_cooccurrence_id(doc, r["abnormality"], d, r["window"], r["level"])
                  for d in ("abnormality_given_hypomg", "abnormality_given_normomg")]
        out.append(Depends(f"prevalence_ratios[{i}]", [c for c in inputs if c]))
    return out


def _cooccurrence_id(doc: dict[str, Any], abnormality: str, direction: str, window: str | None,
                     level: str) -> str | None:
    for i, r in enumerate(_rows(doc, "cooccurrence")):
        if (r["abnormality"], r["direction"], r["window"], r["level"]) == (abnormality, direction, window, level):
            return f"cooccurrence[{i}]"
    return None


def _cooccurrence_window(doc: dict[str, Any]) -> str | None:
    """The co-occurrence window of the attrition table: the last, widest window (pipelines/db.py window_rows)."""
    return next((r["window"] for r in reversed(_rows(doc, "cooccurrence")) if r["window"] != "same_draw"), None)


def _attrition_index(doc: dict[str, Any], step: str) -> int | None:
    return next((i for i, r in enumerate(_rows(doc, "attrition")) if r["step"] == step), None)


def _parameter(doc: dict[str, Any], section: str, key: str) -> Any:
    return ((doc.get("parameters") or {}).get(section) or {}).get(key)


# ---- checks -------------------------------------------------------------------------------------

def _value(state: State, member: tuple[str, tuple[str, ...]], k: int) -> int:
    cell_id, measures = member
    return state.cells[cell_id].values[measures[k]]


def check(group: Group, state: State) -> str | None:
    """The cell to suppress next for this group, or None when nothing in it can be derived."""
    if isinstance(group, Sum):
        return _check_sum(group, state)
    if isinstance(group, Chain):
        return _check_chain(group, state)
    if isinstance(group, Same):
        if any(state.cells[c].hidden for c in group.members):
            return next((c for c in group.members if not state.cells[c].hidden and not state.cells[c].zero), None)
        return None
    if any(state.cells[c].hidden for c in group.inputs) and not state.cells[group.cell].hidden:
        return group.cell
    return None


def _check_sum(group: Sum, state: State) -> str | None:
    total = state.cells[group.total[0]]
    measures = range(len(group.total[1]))
    shown = [p for p in group.parts if not state.cells[p[0]].hidden]
    unshown = [p for p in group.parts if state.cells[p[0]].hidden]
    remainder = [_value(state, group.total, k) - sum(_value(state, p, k) for p in group.parts) for k in measures]
    if total.hidden:
        # the total is the sum of the parts when every part is shown and nothing else is in it
        if not unshown and not any(remainder):
            return state.cheapest(shown)
        return None
    residual = [_value(state, group.total, k) - sum(_value(state, p, k) for p in shown) for k in measures]
    exact_single = len(unshown) == 1 and not any(remainder)
    if exact_single or any(state.small(v) for v in residual):
        return state.cheapest(shown) or (None if total.zero else total.id)
    return None


def _check_chain(group: Chain, state: State) -> str | None:
    shown = [m for m in group.members if not state.cells[m[0]].hidden]
    for inner, outer in zip(shown, shown[1:]):
        if any(state.small(_value(state, outer, k) - _value(state, inner, k)) for k in range(len(inner[1]))):
            return state.cheapest([inner, outer])
    return None


# ---- the pass -----------------------------------------------------------------------------------

def _null(cell: Cell) -> None:
    for key in cell.keys:
        if key == "references":
            for ref in cell.row.get("references") or []:
                ref["p_value"] = None
        elif key in cell.row:
            if key == "mg_tested_fraction" and cell.row[key] is not None and "mg_tested_suppressed" in cell.row:
                cell.row["mg_tested_suppressed"] = True
            cell.row[key] = None
    if cell.flag:
        cell.row[cell.flag] = True


def suppress(document: dict[str, Any], min_cell_size: int, raw: dict[str, Any] | None = None) -> dict[str, Any]:
    """Primary and complementary suppression of `document`; returns a new document.

    `document` may already carry primary suppression (null counts, `suppressed: true`); `raw` is
    then the same document built without suppression, which supplies the hidden counts. Without
    `raw`, `document` itself must hold every count. Rows keep their keys; a suppressed cell's
    counts, rates and p-values become null. `min_cell_size` 0 returns the document unchanged.
    """
    shown = copy.deepcopy(document)
    if min_cell_size <= 0:
        return shown
    state = State(cells(shown, raw if raw is not None else document), min_cell_size)
    for cell in state.cells.values():
        if not cell.hidden and any(state.small(v) for v in cell.values.values()):
            state.hide(cell.id, "small cell")
    relations = groups(shown, state.cells)
    changed = True
    while changed:
        changed = False
        for group in relations:
            victim = check(group, state)
            if victim is not None:
                state.hide(victim, f"derivable ({type(group).__name__})")
                changed = True
    for cell in state.cells.values():
        if cell.hidden:
            _null(cell)
    return shown


def leaks(document: dict[str, Any], raw: dict[str, Any], min_cell_size: int) -> list[str]:
    """The groups of a suppressed document in which a hidden cell could still be derived (for tests)."""
    state = State(cells(document, raw), min_cell_size)
    return [repr(g) for g in groups(document, state.cells) if check(g, state) is not None]


ACCOUNTING_PARTS = ("rows_loaded", "rows_out_of_scope", "rows_quarantined", "rows_superseded")


def suppress_accounting(inputs: list[dict[str, Any]], min_cell: int) -> list[dict[str, Any]]:
    """manifest.json's per-file row accounting with the same rule as the results document.

    Each file is a `Sum` group: rows_read = loaded + out of scope + quarantined + superseded. A part
    in 1..min_cell-1 is hidden (null), then the next-smallest non-zero part too, until at least two
    parts are hidden and their sum (rows_read minus the shown parts) is not itself small. The exact
    figures stay in the run's restricted/accounting.json.
    """
    out = []
    for item in inputs:
        row = dict(item)
        if min_cell > 0:
            hidden = {k for k in ACCOUNTING_PARTS if 1 <= (row[k] or 0) < min_cell}
            while hidden:
                shown = [k for k in ACCOUNTING_PARTS if k not in hidden and row[k]]
                rest = sum(row[k] for k in hidden)
                if len(hidden) >= 2 and not 1 <= rest < min_cell:
                    break
                if not shown:
                    break
                hidden.add(min(shown, key=lambda k: row[k]))
            for k in hidden:
                row[k] = None
            row["suppressed"] = bool(hidden)
        out.append(row)
    return out
