"""Run configuration: one TOML file, every key optional, defaults from the analysis plan (v1).

The file is checked strictly: an unknown section or key, or a value of the wrong type, is a
`ConfigError` that names the file and the key. Thresholds are given in the unit named by the key
(as clinicians quote them) and converted to canonical units once, here, by the same
floating-point multiplication the SQL applies to values (analysis plan section 3).
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from pipelines.errors import ConfigError
from pipelines.paths import SEEDS_DIR
from pipelines.seeds import unit_factor


@dataclass(frozen=True)
class Thresholds:
    """Abnormality thresholds, each in the unit its key names (plan section 3)."""

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
    """Time windows in hours (plan sections 4 and 5); all inclusive."""

    same_draw_hours: float = 1.0
    cooccurrence_hours: float = 24.0


@dataclass(frozen=True)
class Analysis:
    """Options of the co-occurrence analysis (plan section 4)."""

    hypocalcemia_definition: str = "total"
    sensitivity_mg_thresholds_mg_dl: tuple[float, ...] = (1.5, 1.6, 1.7, 1.8)
    albumin_reference_g_l: float = 40.0
    calcium_correction_per_g_l: float = 0.02


@dataclass(frozen=True)
class Audit:
    """Magnesium-check audit in hypokalemia (plan section 5)."""

    episode_gap_hours: float = 72.0
    mg_check_hours: float = 24.0
    refractory_after_hours: float = 24.0
    exposure_default_hours: float = 24.0


@dataclass(frozen=True)
class Privacy:
    """Small-cell suppression (plan section 7); 0 turns it off."""

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
    """The CSV dialect of text inputs: fixed, never sniffed per file (plan section 2)."""

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


@dataclass(frozen=True)
class Engine:
    """DuckDB resources: large runs spill to temp_directory instead of failing."""

    memory_limit: str = "4GB"
    threads: int = 2


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
        out["canonical_thresholds"] = self.canonical_thresholds()
        return out

    def canonical_thresholds(self) -> dict[str, float]:
        """Thresholds in canonical units, by the same multiplication as values (plan section 3)."""
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
    """Read and validate a TOML config; no path gives the analysis plan's defaults."""
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


def _check_values(config: Config, path: Path) -> None:
    if config.analysis.hypocalcemia_definition not in HYPOCALCEMIA_DEFINITIONS:
        raise ConfigError(
            f"{path}: analysis.hypocalcemia_definition: must be one of "
            f"{', '.join(HYPOCALCEMIA_DEFINITIONS)}, got {config.analysis.hypocalcemia_definition!r}"
        )
    if config.privacy.min_cell_size < 0:
        raise ConfigError(f"{path}: privacy.min_cell_size: must be >= 0")
    if not 0 <= config.validation.max_quarantine_fraction <= 1:
        raise ConfigError(f"{path}: validation.max_quarantine_fraction: must be within 0..1")
    for name in ("same_draw_hours", "cooccurrence_hours"):
        if getattr(config.windows, name) < 0:
            raise ConfigError(f"{path}: windows.{name}: must be >= 0")
    if config.validation.extract_at:
        from datetime import datetime

        try:
            datetime.fromisoformat(config.validation.extract_at)
        except ValueError:
            raise ConfigError(f"{path}: validation.extract_at: not an ISO date-time: {config.validation.extract_at!r}") from None
    if len(config.schedule.cron.split()) != 5:
        raise ConfigError(f"{path}: schedule.cron: expected 5 fields, got {config.schedule.cron!r}")


__all__ = ["Config", "load_config", "SEEDS_DIR", "HYPOCALCEMIA_DEFINITIONS"]
