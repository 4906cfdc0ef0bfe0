"""Run configuration: one TOML file, every key optional, defaults from the analysis plan (v1).

The file is checked strictly: an unknown section or key, or a value of the wrong type, is a
`ConfigError` that names the file and the key. Thresholds are given in the unit named by the key
(as clinicians quote them) and converted to canonical units once, here, by the same
floating-point multiplication the SQL applies to values (docs/definitions.md section 3).
"""
from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipelines.errors import ConfigError
from pipelines.paths import SEEDS_DIR
from pipelines.seeds import read_seed, unit_factor
from pipelines.stats import INTERVAL_METHODS
from pipelines.validate import load_suites


@dataclass(frozen=True)
class Thresholds:
    """Abnormality thresholds, each in the unit its key names (docs/definitions.md section 3)."""

    hypomagnesemia_mg_dl: float = 1.7
    normomagnesemia_upper_mg_dl: float = 2.6
    hypokalemia_mmol_l: float = 3.5
    hyponatremia_mmol_l: float = 135.0
    hypophosphatemia_mg_dl: float = 2.5
    hypocalcemia_mg_dl: float = 8.5
    ionized_hypocalcemia_mmol_l: float = 1.15
    severe_hypokalemia_mmol_l: float = 2.5
    moderate_hypokalemia_mmol_l: float = 3.0


@dataclass(frozen=True)
class Windows:
    """Time windows in hours (docs/definitions.md section 4 and 5); all inclusive."""

    same_draw_hours: float = 1.0
    cooccurrence_hours: float = 24.0


@dataclass(frozen=True)
class Analysis:
    """Options of the co-occurrence analysis (docs/definitions.md section 4)."""

    hypocalcemia_definition: str = "total"
    sensitivity_mg_thresholds_mg_dl: tuple[float, ...] = (1.5, 1.6, 1.7, 1.8)
    albumin_reference_g_l: float = 40.0
    calcium_correction_per_g_l: float = 0.02


@dataclass(frozen=True)
class Audit:
    """Magnesium-check audit in hypokalemia (docs/definitions.md section 5)."""

    episode_gap_hours: float = 72.0
    mg_check_hours: float = 24.0
    refractory_after_hours: float = 24.0
    exposure_default_hours: float = 24.0
    # audit charts (docs/definitions.md section 5, Audit charts)
    period: str = "auto"
    baseline_start: str = ""  # ISO date; blank = from the first period
    baseline_end: str = ""  # ISO date; blank = to the last period
    # blank: the hypokalemia, moderate and severe thresholds ([thresholds]: 3.5, 3.0, 2.5 by default)
    reflex_k_thresholds_mmol_l: tuple[float, ...] = ()


@dataclass(frozen=True)
class Privacy:
    """Small-cell suppression (docs/definitions.md section 7); 0 turns it off."""

    min_cell_size: int = 11
    # column names verified as not identifying (exempt from the identifier guard), e.g. ["note_code"]
    allow_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Validation:
    """Great Expectations gates (issue: validation that blocks bad loads)."""

    max_quarantine_fraction: float = 0.05
    extract_at: str = ""  # ISO date-time of the extract; blank = the run's start (UTC)
    make_blocking: tuple[str, ...] = ()  # expectation ids (meta.id) to make blocking
    make_warning: tuple[str, ...] = ()  # expectation ids to downgrade to warnings
    # a file whose malformed lines exceed this fraction of its rows is a blocking failure
    max_malformed_fraction: float = 0.01
    # a new file whose out-of-scope share exceeds this multiple of the earlier files' share blocks
    max_out_of_scope_share_ratio: float = 2.0


@dataclass(frozen=True)
class Csv:
    """The CSV dialect of text inputs: fixed, never sniffed per file (docs/definitions.md section 2)."""

    delimiter: str = ","
    quote: str = '"'
    escape: str = '"'
    header: bool = True
    encoding: str = "utf-8"


@dataclass(frozen=True)
class Schedule:
    """The nightly deployment's schedule."""

    cron: str = "0 2 * * *"
    timezone: str = "UTC"
    keep_runs: int = 90  # published run folders kept under OUT (and failed-run records)
    keep_restricted_runs: int = 7  # of those, the newest whose restricted/ (row-level files) is kept
    max_hours_without_data: float = 36.0  # a night without new files past this emits hypomag.feed.stale


@dataclass(frozen=True)
class Engine:
    """The engine the models run on (docs/spark.md) and DuckDB's resources: large runs spill to
    temp_directory instead of failing. With name = "spark", the models run on a SparkSession on
    spark_master (local[N], spark://host:port or a Spark Connect URL sc://host:port) with the
    free-form spark_settings; DuckDB still holds the run's database."""

    memory_limit: str = "4GB"
    threads: int = 2
    name: str = "duckdb"
    spark_master: str = "local[2]"
    spark_settings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Statistics:
    """Interval method and repeated-measures options (docs/definitions.md section 8)."""

    interval_method: str = "wilson"  # wilson, clopper-pearson, jeffreys or agresti-coull


@dataclass(frozen=True)
class Strata:
    """Age bands and the standard population of age-sex standardisation (docs/definitions.md section 4)."""

    age_bands_years: tuple[float, ...] = (18.0, 45.0, 65.0, 80.0)  # lower bounds: 18-44, 45-64, 65-79, 80+
    standard_population: str = "pooled"  # pooled (the study's own) or seed (sql/seeds/standard_population.csv)


@dataclass(frozen=True)
class Sweep:
    """Sensitivity sweep of windows and thresholds (docs/definitions.md section 8, Sweep); the run's own
    window and thresholds are always added. Blank lists follow the run (pipelines/sweep.py): windows of
    1/24, 1/4, 1, 2 and 3 times the co-occurrence window (1, 6, 24, 48, 72 h at 24 h), and each
    threshold with one step below it (K 3.0 and 3.5 mmol/L by default)."""

    windows_hours: tuple[float, ...] = ()
    hypokalemia_mmol_l: tuple[float, ...] = ()
    hyponatremia_mmol_l: tuple[float, ...] = ()
    hypophosphatemia_mg_dl: tuple[float, ...] = ()
    hypocalcemia_mg_dl: tuple[float, ...] = ()
    ionized_hypocalcemia_mmol_l: tuple[float, ...] = ()


@dataclass(frozen=True)
class Config:
    thresholds: Thresholds = field(default_factory=Thresholds)
    windows: Windows = field(default_factory=Windows)
    analysis: Analysis = field(default_factory=Analysis)
    audit: Audit = field(default_factory=Audit)
    privacy: Privacy = field(default_factory=Privacy)
    validation: Validation = field(default_factory=Validation)
    csv: Csv = field(default_factory=Csv)
    schedule: Schedule = field(default_factory=Schedule)
    engine: Engine = field(default_factory=Engine)
    statistics: Statistics = field(default_factory=Statistics)
    strata: Strata = field(default_factory=Strata)
    sweep: Sweep = field(default_factory=Sweep)
    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    source_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Every parameter, for manifest.json and results.json."""
        out = dataclasses.asdict(self)
        out["analysis"]["sensitivity_mg_thresholds_mg_dl"] = list(
            self.analysis.sensitivity_mg_thresholds_mg_dl
        )
        out["validation"]["make_blocking"] = list(self.validation.make_blocking)
        out["validation"]["make_warning"] = list(self.validation.make_warning)
        out["privacy"]["allow_columns"] = list(self.privacy.allow_columns)
        out["audit"]["reflex_k_thresholds_mmol_l"] = list(self.audit.reflex_k_thresholds_mmol_l)
        out["strata"]["age_bands_years"] = list(self.strata.age_bands_years)
        out["sweep"] = {k: list(v) for k, v in out["sweep"].items()}
        out["canonical_thresholds"] = self.canonical_thresholds()
        return out

    def canonical_thresholds(self) -> dict[str, float]:
        """Thresholds in canonical units, by the same multiplication as values (docs/definitions.md section 3)."""
        t = self.thresholds
        mg = unit_factor("MG", "mg/dl")
        return {
            "hypomagnesemia_mmol_l": t.hypomagnesemia_mg_dl * mg,
            "normomagnesemia_upper_mmol_l": t.normomagnesemia_upper_mg_dl * mg,
            "hypokalemia_mmol_l": t.hypokalemia_mmol_l,
            "hyponatremia_mmol_l": t.hyponatremia_mmol_l,
            "hypophosphatemia_mmol_l": t.hypophosphatemia_mg_dl * unit_factor("PHOS", "mg/dl"),
            "hypocalcemia_mmol_l": t.hypocalcemia_mg_dl * unit_factor("CA", "mg/dl"),
            "ionized_hypocalcemia_mmol_l": t.ionized_hypocalcemia_mmol_l,
            "severe_hypokalemia_mmol_l": t.severe_hypokalemia_mmol_l,
            "moderate_hypokalemia_mmol_l": t.moderate_hypokalemia_mmol_l,
        }


_SECTIONS = {f.name: f for f in dataclasses.fields(Config) if f.name not in ("columns", "source_path")}
HYPOCALCEMIA_DEFINITIONS = ("total", "corrected", "ionized")
COLUMN_TABLES = ("labs", "medications")


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check one TOML value against a dataclass field type; ints are accepted for floats."""
    origin = get_origin(annotation)
    if origin is tuple:
        (item_type, _ellipsis) = get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return tuple(_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value))
    if annotation in (float, "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation in (bool, "bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation in (int, "int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return value
    if annotation in (str, "str"):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return value
    if origin is dict:  # a free-form table of text, number or true/false values (engine.spark_settings)
        if not isinstance(value, dict) or any(isinstance(v, (dict, list)) for v in value.values()):
            raise ConfigError(f"{where}: expected a table of name = value, got {value!r}")
        return {str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()}
    raise AssertionError(f"unsupported config type {annotation}")  # pragma: no cover


def _section(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table [{where.split(': ')[-1]}]")
    types = get_type_hints(cls)
    kwargs = {}
    for key, value in raw.items():
        if key not in types:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(types)})")
        kwargs[key] = _coerce(value, types[key], f"{where}.{key}")
    return cls(**kwargs)


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a TOML config; no path gives the defaults of docs/definitions.md."""
    if path is None:
        return Config()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    sections: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "columns":
            sections["columns"] = _columns(value, f"{path}: columns")
            continue
        if name not in _SECTIONS:
            known = ", ".join([*_SECTIONS, "columns"])
            raise ConfigError(f"{path}: unknown section [{name}] (known: {known})")
        cls = _SECTIONS[name].default_factory  # type: ignore[misc]
        sections[name] = _section(cls, value, f"{path}: {name}")
    config = Config(**sections, source_path=str(path))
    _check_values(config, path)
    return config


def _columns(raw: Any, where: str) -> dict[str, dict[str, str]]:
    """[columns.labs] / [columns.medications]: canonical field = "source column name"."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected tables [columns.labs] / [columns.medications]")
    out: dict[str, dict[str, str]] = {}
    for table, mapping in raw.items():
        if table not in COLUMN_TABLES or not isinstance(mapping, dict):
            raise ConfigError(f"{where}.{table}: unknown table (known: {', '.join(COLUMN_TABLES)})")
        for key, value in mapping.items():
            if not isinstance(value, str):
                raise ConfigError(f"{where}.{table}.{key}: expected a column name, got {value!r}")
        out[table] = dict(mapping)
    return out


def _check_values(config: Config, path: Path | str) -> None:
    """Range checks of every value; the first problem is a ConfigError naming the file and key."""
    problems = [
        *_finite_problems(config),
        *_choice_problems(config),
        *_window_problems(config),
        *_threshold_problems(config),
        *_fraction_problems(config),
        *_expectation_id_problems(config),
        *_schedule_problems(config),
        *_engine_problems(config),
        *_csv_problems(config),
        *_column_problems(config),
        *_audit_problems(config),
        *_statistics_problems(config),
    ]
    if problems:
        key, message = problems[0]
        raise ConfigError(f"{path}: {key}: {message}")


Problems = list[tuple[str, str]]


def _numbers(config: Config) -> list[tuple[str, float]]:
    """Every float of the configuration with its dotted key (list items as key[i])."""
    out = []
    for section in _SECTIONS:
        obj = getattr(config, section)
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            items = enumerate(value) if isinstance(value, tuple) else [(None, value)]
            for i, v in items:
                if isinstance(v, float):
                    out.append((f"{section}.{f.name}" + ("" if i is None else f"[{i}]"), v))
    return out


def _finite_problems(config: Config) -> Problems:
    """TOML allows nan and inf; no setting means anything with them."""
    return [(key, f"must be a finite number, got {value!r}") for key, value in _numbers(config)
            if not math.isfinite(value)]


def _choice_problems(config: Config) -> Problems:
    problems: Problems = []
    if config.analysis.hypocalcemia_definition not in HYPOCALCEMIA_DEFINITIONS:
        problems.append(("analysis.hypocalcemia_definition", f"must be one of {', '.join(HYPOCALCEMIA_DEFINITIONS)}, "
                         f"got {config.analysis.hypocalcemia_definition!r}"))
    if config.privacy.min_cell_size < 0:
        problems.append(("privacy.min_cell_size", f"must be >= 0 (0 turns suppression off), got "
                         f"{config.privacy.min_cell_size}"))
    if config.validation.extract_at:
        try:
            datetime.fromisoformat(config.validation.extract_at)
        except ValueError:
            problems.append(("validation.extract_at", f"not an ISO date-time: {config.validation.extract_at!r}"))
    return problems


# Windows of zero hours: a same-draw window of 0 means "the same timestamp" (meaningful); the others
# would define empty windows, episodes of one result or supplements that stop as they start.
NON_NEGATIVE_HOURS = ("windows.same_draw_hours",)
POSITIVE_HOURS = ("windows.cooccurrence_hours", "audit.episode_gap_hours", "audit.mg_check_hours",
                  "audit.refractory_after_hours", "audit.exposure_default_hours")


def _window_problems(config: Config) -> Problems:
    problems: Problems = []
    for key in NON_NEGATIVE_HOURS:
        if _get(config, key) < 0:
            problems.append((key, f"must be >= 0 hours, got {_get(config, key)!r}"))
    for key in POSITIVE_HOURS:
        if not _get(config, key) > 0:
            problems.append((key, f"must be > 0 hours, got {_get(config, key)!r}"))
    if not config.windows.cooccurrence_hours >= config.windows.same_draw_hours:
        problems.append(("windows.cooccurrence_hours", "must be at least windows.same_draw_hours"))
    if not config.analysis.albumin_reference_g_l > 0:
        problems.append(("analysis.albumin_reference_g_l", "must be > 0"))
    if config.analysis.calcium_correction_per_g_l < 0:
        problems.append(("analysis.calcium_correction_per_g_l", "must be >= 0"))
    return problems


# threshold key -> (analyte of sql/seeds/analytes.csv, unit the key is given in)
THRESHOLD_ANALYTES = {
    "hypomagnesemia_mg_dl": ("MG", "mg/dl"),
    "normomagnesemia_upper_mg_dl": ("MG", "mg/dl"),
    "hypokalemia_mmol_l": ("K", "mmol/l"),
    "hyponatremia_mmol_l": ("NA", "mmol/l"),
    "hypophosphatemia_mg_dl": ("PHOS", "mg/dl"),
    "hypocalcemia_mg_dl": ("CA", "mg/dl"),
    "ionized_hypocalcemia_mmol_l": ("ICA", "mmol/l"),
    "severe_hypokalemia_mmol_l": ("K", "mmol/l"),
    "moderate_hypokalemia_mmol_l": ("K", "mmol/l"),
}


def plausible_range(analyte: str, unit: str) -> tuple[float, float]:
    """The analyte's plausible range in canonical units (sql/seeds/analytes.csv)."""
    row = next(r for r in read_seed("analytes") if r["analyte"] == analyte)
    return float(row["plausible_low"]), float(row["plausible_high"])


def _in_range(key: str, value: float, analyte: str, unit: str) -> Problems:
    """A positive threshold within the plausible range, converted as canonical_thresholds converts it."""
    factor = 1.0 if unit == "mmol/l" else unit_factor(analyte, unit)
    low, high = plausible_range(analyte, unit)
    if value > 0 and low <= value * factor <= high:
        return []
    return [(key, f"must be within the plausible range of {analyte} ({low / factor:.3g}..{high / factor:.3g} "
                  f"{unit}), got {value!r}")]


def _threshold_problems(config: Config) -> Problems:
    t = config.thresholds
    problems: Problems = []
    for name, (analyte, unit) in THRESHOLD_ANALYTES.items():
        problems += _in_range(f"thresholds.{name}", getattr(t, name), analyte, unit)
    if not t.normomagnesemia_upper_mg_dl > t.hypomagnesemia_mg_dl:
        problems.append(("thresholds.normomagnesemia_upper_mg_dl", "must be above thresholds.hypomagnesemia_mg_dl"))
    if not t.severe_hypokalemia_mmol_l < t.moderate_hypokalemia_mmol_l <= t.hypokalemia_mmol_l:
        problems.append(("thresholds.severe_hypokalemia_mmol_l", "must be below moderate_hypokalemia_mmol_l, "
                         "which must be at most hypokalemia_mmol_l"))
    grid = config.analysis.sensitivity_mg_thresholds_mg_dl
    if not grid:
        problems.append(("analysis.sensitivity_mg_thresholds_mg_dl", "must list at least one threshold"))
    return problems + _threshold_list_problems("analysis.sensitivity_mg_thresholds_mg_dl", grid, "MG", "mg/dl")


def _threshold_list_problems(key: str, values, analyte: str, unit: str) -> Problems:
    """Each threshold of a list inside the analyte's plausible range (in `unit`), none listed twice."""
    problems: Problems = []
    for i, value in enumerate(values):
        problems += _in_range(f"{key}[{i}]", value, analyte, unit)
    if len(set(values)) != len(values):
        problems.append((key, "lists a threshold twice"))
    return problems


def _fraction_problems(config: Config) -> Problems:
    v = config.validation
    problems: Problems = []
    for name in ("max_quarantine_fraction", "max_malformed_fraction"):
        if not 0 <= getattr(v, name) <= 1:
            problems.append((f"validation.{name}", f"must be within 0..1, got {getattr(v, name)!r}"))
    if not v.max_out_of_scope_share_ratio >= 1:
        problems.append(("validation.max_out_of_scope_share_ratio",
                         f"must be >= 1, got {v.max_out_of_scope_share_ratio!r}"))
    return problems


def expectation_ids() -> set[str]:
    """The meta.id of every expectation in expectations/*.json."""
    return {e["meta"]["id"] for suite in load_suites() for e in suite["expectations"]}


def _expectation_id_problems(config: Config) -> Problems:
    v = config.validation
    if not (v.make_blocking or v.make_warning):
        return []
    known = expectation_ids()
    problems: Problems = []
    for name in ("make_blocking", "make_warning"):
        for i, ident in enumerate(getattr(v, name)):
            if ident not in known:
                problems.append((f"validation.{name}[{i}]", f"unknown expectation id {ident!r} "
                                 "(see meta.id in expectations/*.json)"))
    for ident in sorted(set(v.make_blocking) & set(v.make_warning)):
        problems.append(("validation.make_warning", f"{ident!r} is also in validation.make_blocking"))
    return problems


# (name, lowest, highest, names) of the five cron fields; day of week 7 is Sunday as in cron
CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day of week", 0, 7, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)
_CRON_ITEM = re.compile(r"^(\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/([0-9]+))?$")


def cron_problem(expression: str) -> str | None:
    """Why `expression` is not a 5-field cron expression (numbers, names, ranges, steps, lists), or None."""
    fields = expression.split()
    if len(fields) != 5:
        return f"expected 5 fields (minute hour day-of-month month day-of-week), got {expression!r}"
    for text, (name, low, high, names) in zip(fields, CRON_FIELDS):
        for item in text.split(","):
            match = _CRON_ITEM.match(item)
            if not match:
                return f"{name} field {text!r}: {item!r} is not a number, range, step, list or *"
            base, step = match.groups()
            if step is not None and int(step) < 1:
                return f"{name} field {text!r}: step must be >= 1"
            if base == "*":
                continue
            bounds = []
            for part in base.split("-"):
                value = _cron_value(part, low, names)
                if value is None:
                    return f"{name} field {text!r}: {part!r} is not a number or a name"
                if not low <= value <= high:
                    return f"{name} field {text!r}: {part!r} is outside {low}..{high}"
                bounds.append(value)
            if len(bounds) == 2 and bounds[0] > bounds[1]:
                return f"{name} field {text!r}: range {base!r} runs backwards"
    return None


def _cron_value(part: str, low: int, names: tuple[str, ...]) -> int | None:
    if part.isdigit():
        return int(part)
    if part.upper() in names:
        return names.index(part.upper()) + low
    return None


def _schedule_problems(config: Config) -> Problems:
    problems: Problems = []
    why = cron_problem(config.schedule.cron)
    if why:
        problems.append(("schedule.cron", why))
    try:
        ZoneInfo(config.schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        problems.append(("schedule.timezone", f"not an IANA time zone: {config.schedule.timezone!r}"))
    if config.schedule.keep_restricted_runs < 1:
        problems.append(("schedule.keep_restricted_runs", f"must be >= 1 (the latest run's files are always kept), "
                         f"got {config.schedule.keep_restricted_runs}"))
    if config.schedule.keep_runs < 1:
        problems.append(("schedule.keep_runs", f"must be >= 1 (the latest run is always kept), got "
                         f"{config.schedule.keep_runs}"))
    if not config.schedule.max_hours_without_data > 0:
        problems.append(("schedule.max_hours_without_data",
                         f"must be > 0 hours, got {config.schedule.max_hours_without_data!r}"))
    return problems


# DuckDB's memory sizes (a number and a unit), or a percentage of the machine's memory
_MEMORY_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)
_MEMORY_PERCENT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*$")
_MEMORY_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
                 "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
MIN_MEMORY_BYTES = 64 * 10**6


def memory_limit_problem(value: str) -> str | None:
    """Why `value` is not a memory limit DuckDB can run with (e.g. "4GB", "512 MiB", "80%"), or None.

    Checked here and again before the value reaches DuckDB, so nothing but a size is ever passed.
    """
    size, percent = _MEMORY_SIZE.match(value), _MEMORY_PERCENT.match(value)
    if percent:
        share = float(percent.group(1))
        return None if 0 < share <= 100 else f"a percentage must be within 0..100, got {value!r}"
    if not size:
        return f"expected a size such as \"4GB\", \"512MiB\" or \"80%\", got {value!r}"
    if float(size.group(1)) * _MEMORY_UNITS[size.group(2).lower()] < MIN_MEMORY_BYTES:
        return f"must be at least 64MB, got {value!r}"
    return None


def _engine_problems(config: Config) -> Problems:
    problems: Problems = []
    why = memory_limit_problem(config.engine.memory_limit)
    if why:
        problems.append(("engine.memory_limit", why))
    if config.engine.threads < 1:
        problems.append(("engine.threads", f"must be >= 1, got {config.engine.threads}"))
    if config.engine.name not in ENGINE_NAMES:
        problems.append(("engine.name", f"must be one of {', '.join(ENGINE_NAMES)}, got {config.engine.name!r}"))
    if not re.fullmatch(r"local(\[(\d+|\*)(,\d+)?\])?|spark://\S+|sc://\S+|yarn|k8s://\S+", config.engine.spark_master):
        problems.append(("engine.spark_master", "expected local[N], spark://host:port, sc://host:port, yarn or "
                         f"k8s://..., got {config.engine.spark_master!r}"))
    return problems


ENGINE_NAMES = ("duckdb", "spark")
# `hypomag run --engine NAME` sets this for the run it starts; it overrides `[engine] name` (pipelines/spark).
ENGINE_ENV = "HYPOMAG_ENGINE"


def _csv_problems(config: Config) -> Problems:
    c = config.csv
    problems: Problems = []
    for name in ("delimiter", "quote", "escape"):
        value = getattr(c, name)
        if len(value) != 1 or value in "\r\n":
            problems.append((f"csv.{name}", f"must be one character (not a line break), got {value!r}"))
    if c.delimiter == c.quote:
        problems.append(("csv.delimiter", f"must differ from csv.quote ({c.quote!r})"))
    return problems


def _column_problems(config: Config) -> Problems:
    return [(f"columns.{table}.{key}", "must name a column (got an empty name)")
            for table, mapping in config.columns.items() for key, value in mapping.items() if not value.strip()]


AUDIT_PERIODS = ("auto", "month", "quarter", "year")


def _audit_problems(config: Config) -> Problems:
    """[audit] period, baseline dates and reflex thresholds (docs/definitions.md section 5, Audit charts)."""
    a = config.audit
    problems: Problems = []
    if a.period not in AUDIT_PERIODS:
        problems.append(("audit.period", f"must be one of {', '.join(AUDIT_PERIODS)}, got {a.period!r}"))
    dates = {}
    for name in ("baseline_start", "baseline_end"):
        value = getattr(a, name)
        if value:
            try:
                dates[name] = date.fromisoformat(value)
            except ValueError:
                problems.append((f"audit.{name}", f"not an ISO date (YYYY-MM-DD): {value!r}"))
    if len(dates) == 2 and dates["baseline_start"] > dates["baseline_end"]:
        problems.append(("audit.baseline_end", "must not be before audit.baseline_start"))
    return problems + _threshold_list_problems("audit.reflex_k_thresholds_mmol_l", a.reflex_k_thresholds_mmol_l,
                                               "K", "mmol/l")


def _statistics_problems(config: Config) -> Problems:
    """[statistics] interval_method: one of the methods pipelines/stats.py implements."""
    method = config.statistics.interval_method
    problems: Problems = []
    if method not in INTERVAL_METHODS:
        problems.append(("statistics.interval_method", f"must be one of {', '.join(INTERVAL_METHODS)}, got {method!r}"))
    bands = config.strata.age_bands_years
    if not bands or list(bands) != sorted(set(bands)) or bands[0] < 0:
        problems.append(("strata.age_bands_years", f"must be increasing lower bounds >= 0, got {list(bands)}"))
    if config.strata.standard_population not in STANDARD_POPULATIONS:
        problems.append(("strata.standard_population", f"must be one of {', '.join(STANDARD_POPULATIONS)}, "
                         f"got {config.strata.standard_population!r}"))
    problems += _sweep_problems(config)
    return problems


STANDARD_POPULATIONS = ("pooled", "seed")
MAX_SWEEP_WINDOW_HOURS = 24.0 * 7


def _sweep_problems(config: Config) -> Problems:
    """[sweep]: windows within 0..a week (the sweep joins results that far apart), plausible thresholds."""
    problems: Problems = []
    for i, hours in enumerate(config.sweep.windows_hours):
        if not 0 <= hours <= MAX_SWEEP_WINDOW_HOURS:
            problems.append((f"sweep.windows_hours[{i}]", f"must be within 0..{MAX_SWEEP_WINDOW_HOURS:g} hours, "
                             f"got {hours!r}"))
    for f in dataclasses.fields(config.sweep):
        if f.name == "windows_hours":
            continue
        analyte, unit = THRESHOLD_ANALYTES[f.name]
        for i, value in enumerate(getattr(config.sweep, f.name)):
            problems += _in_range(f"sweep.{f.name}[{i}]", value, analyte, unit)
    return problems


def _get(config: Config, dotted: str) -> Any:
    section, key = dotted.split(".")
    return getattr(getattr(config, section), key)


__all__ = ["Config", "load_config", "SEEDS_DIR", "HYPOCALCEMIA_DEFINITIONS"]


# What each key means, in the unit its name carries: docs/configuration.md's parameters table and
# `hypomag config --defaults` are generated from this and the dataclasses' defaults (a test checks
# that every key has a meaning and that the README shows the generated table).
MEANINGS: dict[str, str] = {
    "thresholds.hypomagnesemia_mg_dl": "MG below this is hypomagnesemia (strict; x 0.4114 to mmol/L like the values)",
    "thresholds.normomagnesemia_upper_mg_dl": "comparison group: hypomagnesemia threshold <= MG <= this",
    "thresholds.hypokalemia_mmol_l": "K below this is hypokalemia",
    "thresholds.hyponatremia_mmol_l": "NA below this is hyponatremia",
    "thresholds.hypophosphatemia_mg_dl": "PHOS below this is hypophosphatemia (x 0.3229 to mmol/L)",
    "thresholds.hypocalcemia_mg_dl": "total (or corrected) CA below this is hypocalcemia (x 0.2495 to mmol/L)",
    "thresholds.ionized_hypocalcemia_mmol_l": "ICA below this is hypocalcemia under the `ionized` definition",
    "thresholds.severe_hypokalemia_mmol_l": "audit severity: lowest K below this is severe",
    "thresholds.moderate_hypokalemia_mmol_l": "audit severity: lowest K below this (and not severe) is moderate",
    "windows.same_draw_hours": "same draw: same specimen, or collected within +/- this (inclusive)",
    "windows.cooccurrence_hours": "the co-occurrence window, +/- this (inclusive)",
    "analysis.hypocalcemia_definition": "`total`, `corrected` (albumin of the same draw) or `ionized`",
    "analysis.sensitivity_mg_thresholds_mg_dl": "MG thresholds of the sensitivity grid",
    "analysis.albumin_reference_g_l": "corrected calcium: CA + factor x (this - ALB g/L)",
    "analysis.calcium_correction_per_g_l": "corrected calcium: the factor",
    "audit.episode_gap_hours": "low K results at most this far apart share an episode",
    "audit.mg_check_hours": "Mg checked: a Mg result within +/- this of the episode's start",
    "audit.refractory_after_hours": "refractory: a low K at least this long after the first K supplement",
    "audit.exposure_default_hours": "an order without stop_at counts as exposure for this long",
    "audit.period": "`auto`, `month`, `quarter` or `year`",
    "audit.baseline_start": "control limits from this ISO date (blank: first)",
    "audit.baseline_end": "... up to this ISO date (blank: last)",
    "audit.reflex_k_thresholds_mmol_l": "reflex simulator's K cut-offs (blank: the severity ones)",
    "privacy.min_cell_size": "cells of 1 .. this-1 are suppressed in shared outputs (0 turns it off)",
    "privacy.allow_columns": "column names a person verified as not identifying (skip the identifier guard)",
    "validation.max_quarantine_fraction": "blocking: quarantined share of a file's in-scope rows (duplicates aside)",
    "validation.extract_at": "the extract's date-time (results after it are flagged); blank = the run's start",
    "validation.make_blocking": "expectation ids to make blocking",
    "validation.make_warning": "expectation ids to make warnings only",
    "validation.max_malformed_fraction": "blocking: malformed lines as a share of a file's rows",
    "validation.max_out_of_scope_share_ratio": "blocking: a new file's out-of-scope share against earlier files'",
    "csv.delimiter": "field delimiter of CSV inputs (never guessed)",
    "csv.quote": "quote character of CSV inputs",
    "csv.escape": "escape character inside quotes",
    "csv.header": "CSV inputs have a header line",
    "csv.encoding": "text encoding of CSV inputs",
    "schedule.cron": "the nightly deployment's schedule (5-field cron)",
    "schedule.timezone": "the schedule's IANA time zone",
    "schedule.keep_runs": "run folders kept under OUT (older ones are removed; never `latest`)",
    "schedule.keep_restricted_runs": "of those, the newest that keep `restricted/` (older row-level copies are removed)",
    "schedule.max_hours_without_data": "a night with no new file this long after the last one warns: feed stale",
    "engine.memory_limit": "DuckDB's memory limit (beyond it, DuckDB spills to disk)",
    "engine.threads": "DuckDB's threads",
    "engine.name": "where the SQL models run: `duckdb` (embedded) or `spark` (docs/spark.md; `hypomag run --engine`)",
    "engine.spark_master": "Spark engine: `local[N]`, `spark://host:7077` or a Spark Connect URL `sc://host:15002`",
    "engine.spark_settings": "Spark engine: free-form Spark settings, `{ \"spark.executor.memory\" = \"2g\" }`",
    "statistics.interval_method": "95% intervals of rates: `wilson`, `clopper-pearson`, `jeffreys` or `agresti-coull`",
    "strata.age_bands_years": "lower bounds of the age bands (18-44, 45-64, 65-79, 80+; younger: `<18`)",
    "strata.standard_population": "age-sex standardisation: `pooled` (the study's own) or `seed` (standard_population.csv)",
    "sweep.windows_hours": "sensitivity sweep: windows, +/- hours (blank: 1/24, 1/4, 1, 2, 3 x the window)",
    "sweep.hypokalemia_mmol_l": "sensitivity sweep: K thresholds (blank: the run's and 0.5 below)",
    "sweep.hyponatremia_mmol_l": "sensitivity sweep: NA thresholds (blank: the run's and 5 below)",
    "sweep.hypophosphatemia_mg_dl": "sensitivity sweep: PHOS thresholds (blank: the run's and 0.5 below)",
    "sweep.hypocalcemia_mg_dl": "sensitivity sweep: total / corrected CA thresholds (blank: the run's and 0.5 below)",
    "sweep.ionized_hypocalcemia_mmol_l": "sensitivity sweep: ICA thresholds (blank: the run's and 0.15 below)",
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):  # an inline table (engine.spark_settings)
        return "{" + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def defaults() -> list[tuple[str, str, Any]]:
    """(section, key, default) of every configuration key, in file order."""
    out = []
    for name, section in _SECTIONS.items():
        for f in dataclasses.fields(section.default_factory):  # type: ignore[arg-type]
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
            out.append((name, f.name, default))
    return out


def defaults_toml() -> str:
    """A complete configuration file with every default and its meaning (`hypomag config --defaults`)."""
    lines = ["# hypomag configuration: every key with its default (analysis plan v1); every key is optional.",
             "# Column mappings go in [columns.labs] / [columns.medications]: canonical = \"source column\"."]
    current = None
    for section, key, value in defaults():
        if section != current:
            lines += ["", f"[{section}]"]
            current = section
        lines.append(f"{key} = {_toml_value(value)}  # {MEANINGS[f'{section}.{key}']}")
    return "\n".join(lines) + "\n"


def parameters_table() -> str:
    """The parameters table of docs/configuration.md (markdown), generated from the defaults and MEANINGS."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for section, key, value in defaults():
        shown = _toml_value(value).replace("|", "\\|")
        rows.append(f"| `{section}.{key}` | `{shown}` | {MEANINGS[f'{section}.{key}']} |")
    return "\n".join(rows) + "\n"
