"""The DuckDB database of a run: connection settings and the run's parameter tables."""
from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from pipelines.config import THRESHOLD_ANALYTES, Config, memory_limit_problem
from pipelines.errors import ConfigError
from pipelines.seeds import load_seeds, read_seed, unit_factor


def connect(path: str | Path, config: Config) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file with bounded memory; large intermediates spill to a temp directory.

    Settings reach DuckDB as bound values, never as SQL text; the memory limit is checked against
    DuckDB's size grammar here too (a Config built in code skips load_config's checks).
    """
    problem = memory_limit_problem(config.engine.memory_limit)
    if problem:
        raise ConfigError(f"engine.memory_limit: {problem}")
    threads = config.engine.threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"engine.threads: must be a whole number >= 1, got {config.engine.threads!r}")
    con = duckdb.connect(str(path))
    spill = spill_directory(path)
    con.execute("SET memory_limit = ?", [config.engine.memory_limit.strip()])
    con.execute("SET threads = ?", [int(config.engine.threads)])
    con.execute("SET temp_directory = ?", [str(spill)])
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    return con


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict[str, Any]]:
    """A query's rows as dicts keyed by column name (parameters bound, never formatted in)."""
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def spill_directory(path: str | Path) -> Path:
    """Where DuckDB spills (row-level data): beside a database file, inside the run's owner-only
    folder (`<db>.tmp`, removed with the run); for an in-memory database a per-user temporary
    folder with owner-only permissions."""
    if str(path) == ":memory:":
        spill = Path(tempfile.gettempdir()) / f"hypomag-spill-{os.getuid()}"
    else:
        spill = Path(path).with_name(Path(path).name + ".tmp")
    spill.mkdir(mode=0o700, exist_ok=True)
    return spill


# Whitespace trimmed from both ends of every text field (docs/definitions.md section 2): what Python's str.isspace
# accepts (ASCII spaces and controls, no-break and other Unicode spaces, line and paragraph
# separators) plus the invisible zero-width space, Mongolian vowel separator and byte-order mark.
WHITESPACE_CHARS = (
    "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u180e"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u200b"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def create_parameter_tables(con: duckdb.DuckDBPyConnection, config: Config) -> None:
    """Load the seeds and write the run's parameters as tables the SQL models join.

    `params` is one row; `param_mg_thresholds` is the sensitivity grid's thresholds;
    `param_windows` and `param_abnormality_definitions` are the seeds' windows and definitions with
    their widths and thresholds (checked first). Values are bound parameters, never formatted into SQL text.
    """
    windows, definitions = window_rows(config), definition_rows(config)
    load_seeds(con)
    create_definition_tables(con, windows, definitions)
    canonical = config.canonical_thresholds()
    hours = 3600.0
    values = {
        **canonical,
        "same_draw_seconds": config.windows.same_draw_hours * hours,
        "cooccurrence_seconds": config.windows.cooccurrence_hours * hours,
        "episode_gap_seconds": config.audit.episode_gap_hours * hours,
        "mg_check_seconds": config.audit.mg_check_hours * hours,
        "refractory_after_seconds": config.audit.refractory_after_hours * hours,
        "exposure_default_seconds": config.audit.exposure_default_hours * hours,
        "albumin_reference_g_l": config.analysis.albumin_reference_g_l,
        "calcium_correction_per_g_l": config.analysis.calcium_correction_per_g_l,
        "max_quarantine_fraction": config.validation.max_quarantine_fraction,
        "min_cell_size": config.privacy.min_cell_size,
        "max_out_of_scope_share_ratio": config.validation.max_out_of_scope_share_ratio,
    }
    extract_at = (
        datetime.fromisoformat(config.validation.extract_at) if config.validation.extract_at
        else datetime.now(timezone.utc).replace(tzinfo=None)
    )
    columns = ", ".join(f"{name} DOUBLE" for name in values)
    con.execute(
        f"CREATE OR REPLACE TABLE params ({columns}, hypocalcemia_definition VARCHAR, extract_at TIMESTAMP, "
        "whitespace_chars VARCHAR)"
    )
    con.execute(
        f"INSERT INTO params VALUES ({', '.join('?' for _ in values)}, ?, ?, ?)",
        [*values.values(), config.analysis.hypocalcemia_definition, extract_at, WHITESPACE_CHARS],
    )
    thresholds = config.analysis.sensitivity_mg_thresholds_mg_dl
    if len(thresholds) > MAX_GRID_THRESHOLDS:
        raise ConfigError(f"analysis.sensitivity_mg_thresholds_mg_dl: at most {MAX_GRID_THRESHOLDS} thresholds "
                          f"(each is one flag bit), got {len(thresholds)}")
    con.execute("CREATE OR REPLACE TABLE param_mg_thresholds (threshold_mg_dl DOUBLE, threshold_mmol_l DOUBLE, "
                "grid_bit BIGINT)")
    factor = unit_factor("MG", "mg/dl")
    con.executemany(
        "INSERT INTO param_mg_thresholds VALUES (?, ?, ?)",
        [(t, t * factor, 1 << (GRID_FIRST_BIT + i)) for i, t in enumerate(thresholds)],
    )
    con.execute("CREATE OR REPLACE TABLE param_bits (mg_measured_bit BIGINT, hypomg_bit BIGINT, "
                "measured_mask BIGINT, abnormal_mask BIGINT)")
    con.execute("INSERT INTO param_bits VALUES (?, ?, ?, ?)",
                [1 << MG_MEASURED_BIT, 1 << HYPOMG_BIT, (1 << MAX_DEFINITIONS) - 1,
                 ((1 << MAX_DEFINITIONS) - 1) << ABNORMAL_FIRST_BIT])
    create_sweep_tables(con, config)
    # the lab rows this run reads first (raw_labs.row_id): checks of a file's own rows look at the files
    # a nightly run loads (pipelines/incremental.py sets it); every row otherwise
    con.execute("CREATE OR REPLACE TABLE run_scope (first_new_lab_row_id BIGINT)")
    con.execute("INSERT INTO run_scope VALUES (0)")
    # input columns verified as not identifying (config.privacy.allow_columns), read by the
    # identifier guard at ingest (pipelines/ingest/identifiers.py)
    con.execute("CREATE OR REPLACE TABLE param_allow_columns (column_name VARCHAR)")
    for column in config.privacy.allow_columns:
        con.execute("INSERT INTO param_allow_columns VALUES (?)", [column])


# Where an abnormality definition's value comes from, and the analyte it needs (None: any but MG):
# int_result_bits has one branch per source.
VALUE_SOURCES: dict[str, str | None] = {"result": None, "corrected_calcium": "CA"}
SECONDS_PER_HOUR = 3600.0
LAST_WINDOW_SETTING = "windows.cooccurrence_hours"

# Flag bits (docs/definitions.md section 4, "Flags as bits"): every result's flags are one BIGINT, so one
# window sort per patient answers every definition, direction and window at once. Definition d
# (1-based) owns bit d-1 (its partner measured) and bit 24+d-1 (abnormal); magnesium owns bit 48
# (measured), 49 (hypomagnesemia) and 50.. (below each sensitivity-grid threshold).
MAX_DEFINITIONS = 24
ABNORMAL_FIRST_BIT = 24
MG_MEASURED_BIT = 48
HYPOMG_BIT = 49
GRID_FIRST_BIT = 50
MAX_GRID_THRESHOLDS = 13

WindowRow = tuple[int, str, float, bool]
DefinitionRow = tuple[int, str, str | None, str, str, float]


def create_definition_tables(con: duckdb.DuckDBPyConnection, windows: list[WindowRow],
                             definitions: list[DefinitionRow]) -> None:
    """param_windows and param_abnormality_definitions, the rows the co-occurrence models group by."""
    con.execute("CREATE OR REPLACE TABLE param_windows (window_id INTEGER, window_name VARCHAR, "
                "window_seconds DOUBLE, uses_specimen BOOLEAN)")
    con.executemany("INSERT INTO param_windows VALUES (?, ?, ?, ?)", windows)
    con.execute("CREATE OR REPLACE TABLE param_abnormality_definitions (definition_id INTEGER, abnormality VARCHAR, "
                "hypocalcemia_definition VARCHAR, partner_analyte VARCHAR, value_source VARCHAR, "
                "threshold_canonical DOUBLE, measured_bit BIGINT, abnormal_bit BIGINT)")
    con.executemany("INSERT INTO param_abnormality_definitions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*d, 1 << (d[0] - 1), 1 << (ABNORMAL_FIRST_BIT + d[0] - 1)) for d in definitions])


def window_rows(config: Config) -> list[WindowRow]:
    """(window_id, window_name, window_seconds, uses_specimen) per row of seed cooccurrence_windows.

    A window's width is a [windows] setting (width_setting) or a fixed width_hours, never both;
    uses_specimen adds the same-specimen rule. Rows are listed narrowest first, ending with the
    co-occurrence window (windows.cooccurrence_hours, which the attrition table also uses):
    results.json keeps that order and its suppression treats each window as nested in the next.
    Any row that breaks these rules is a ConfigError naming it, so no window is counted with
    another's width.
    """
    settings = {f"windows.{f.name}": getattr(config.windows, f.name) for f in dataclasses.fields(config.windows)}
    out: list[WindowRow] = []
    last_setting = ""
    for number, row in enumerate(read_seed("cooccurrence_windows"), start=1):
        name = _field(row, "window_name")
        where = f"seed cooccurrence_windows.csv row {number} (window {name!r})"
        if not name:
            raise ConfigError(f"{where}: window_name is empty")
        if any(name == w[1] for w in out):
            raise ConfigError(f"{where}: window_name {name!r} is listed twice")
        seconds = _window_hours(row, settings, where) * SECONDS_PER_HOUR
        if out and seconds < out[-1][2]:
            raise ConfigError(f"{where}: narrower than the window before it ({out[-1][1]!r}); list windows "
                              "narrowest first")
        out.append((number, name, seconds, _boolean(row, "uses_specimen", where)))
        last_setting = _field(row, "width_setting")
    if not out or last_setting != LAST_WINDOW_SETTING:
        raise ConfigError(f"seed cooccurrence_windows.csv: the last window must be the co-occurrence window "
                          f"(width_setting {LAST_WINDOW_SETTING})")
    return out


def _window_hours(row: dict[str, str], settings: dict[str, float], where: str) -> float:
    """A window row's width in hours: its [windows] setting's value, or its own width_hours."""
    setting, fixed = _field(row, "width_setting"), _field(row, "width_hours")
    if bool(setting) == bool(fixed):
        raise ConfigError(f"{where}: give exactly one of width_setting and width_hours")
    if setting:
        if setting not in settings:
            raise ConfigError(f"{where}: width_setting {setting!r} is not one of {', '.join(settings)}")
        return settings[setting]
    try:
        hours = float(fixed)
    except ValueError:
        raise ConfigError(f"{where}: width_hours {fixed!r} is not a number") from None
    if not (math.isfinite(hours) and hours >= 0):
        raise ConfigError(f"{where}: width_hours must be a finite number >= 0, got {fixed!r}")
    return hours


def definition_rows(config: Config) -> list[DefinitionRow]:
    """(definition_id, abnormality, hypocalcemia_definition, partner_analyte, value_source,
    threshold_canonical) per row of seed abnormality_definitions.

    A result of partner_analyte is abnormal when its value (value_source) is below the config's
    canonical threshold named by `threshold`. An abnormality has one unnamed definition or several
    named ones, among them the configured analysis.hypocalcemia_definition. Any row the SQL cannot
    serve is a ConfigError naming it.
    """
    thresholds = config.canonical_thresholds()
    analytes = {r["analyte"] for r in read_seed("analytes")} - {"MG"}
    out: list[DefinitionRow] = []
    for number, row in enumerate(read_seed("abnormality_definitions"), start=1):
        abnormality, definition = _field(row, "abnormality"), _field(row, "hypocalcemia_definition") or None
        analyte, source, threshold = (_field(row, k) for k in ("partner_analyte", "value_source", "threshold"))
        where = f"seed abnormality_definitions.csv row {number} ({abnormality!r}, {definition or ''!r})"
        if not abnormality:
            raise ConfigError(f"{where}: abnormality is empty")
        if any((abnormality, definition) == d[1:3] for d in out):
            raise ConfigError(f"{where}: this abnormality and definition are listed twice")
        if analyte not in analytes:
            raise ConfigError(f"{where}: partner_analyte {analyte!r} is not one of {', '.join(sorted(analytes))}")
        if source not in VALUE_SOURCES:
            raise ConfigError(f"{where}: value_source {source!r} is not one of {', '.join(VALUE_SOURCES)}")
        if VALUE_SOURCES[source] not in (None, analyte):
            raise ConfigError(f"{where}: value_source {source!r} needs partner_analyte {VALUE_SOURCES[source]!r}")
        if threshold not in thresholds:
            raise ConfigError(f"{where}: threshold {threshold!r} is not one of {', '.join(thresholds)}")
        out.append((number, abnormality, definition, analyte, source, thresholds[threshold]))
    if not out:
        raise ConfigError("seed abnormality_definitions.csv: no definition")
    if len(out) > MAX_DEFINITIONS:
        raise ConfigError(f"seed abnormality_definitions.csv: at most {MAX_DEFINITIONS} definitions (each owns two "
                          f"flag bits), got {len(out)}")
    _check_named_definitions(out, config.analysis.hypocalcemia_definition)
    return out


def _check_named_definitions(definitions: list[DefinitionRow], configured: str) -> None:
    """Each abnormality: one unnamed definition, or named ones that include the configured choice."""
    for abnormality in dict.fromkeys(d[1] for d in definitions):
        names = [d[2] for d in definitions if d[1] == abnormality]
        where = f"seed abnormality_definitions.csv ({abnormality!r})"
        if None in names and len(names) > 1:
            raise ConfigError(f"{where}: an abnormality with several definitions must name each one")
        if None not in names and configured not in names:
            raise ConfigError(f"{where}: no definition {configured!r} (analysis.hypocalcemia_definition)")


def _field(row: dict[str, str | None], key: str) -> str:
    """One seed field, trimmed; a missing column or a short row reads as empty."""
    return (row.get(key) or "").strip()


def _boolean(row: dict[str, str | None], key: str, where: str) -> bool:
    value = _field(row, key).lower()
    if value not in ("true", "false"):
        raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
    return value == "true"


# The sensitivity sweep (docs/definitions.md section 8, Sweep; sql/marts/mart_sweep.sql).
# seed abnormality_definitions' canonical threshold key -> the [sweep] / [thresholds] key in the user's unit
SWEEP_KEYS = {"hypokalemia_mmol_l": "hypokalemia_mmol_l", "hyponatremia_mmol_l": "hyponatremia_mmol_l",
              "hypophosphatemia_mmol_l": "hypophosphatemia_mg_dl", "hypocalcemia_mmol_l": "hypocalcemia_mg_dl",
              "ionized_hypocalcemia_mmol_l": "ionized_hypocalcemia_mmol_l"}
# blank [sweep] lists follow the run: windows as multiples of the co-occurrence window, and each
# threshold with one clinically usual step below it (in the key's unit)
WINDOW_MULTIPLES = (1 / 24, 1 / 4, 1.0, 2.0, 3.0)
THRESHOLD_STEPS = {"hypokalemia_mmol_l": 0.5, "hyponatremia_mmol_l": 5.0, "hypophosphatemia_mg_dl": 0.5,
                   "hypocalcemia_mg_dl": 0.5, "ionized_hypocalcemia_mmol_l": 0.15}


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
