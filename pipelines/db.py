"""The DuckDB database of a run: connection settings and the run's parameter tables."""
from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from pipelines.config import Config
from pipelines.seeds import load_seeds, unit_factor


def connect(path: str | Path, config: Config) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file with bounded memory; large intermediates spill to a temp directory."""
    con = duckdb.connect(str(path))
    spill = Path(tempfile.gettempdir()) / "hypomag-spill"
    spill.mkdir(exist_ok=True)
    con.execute(f"SET memory_limit = '{config.engine.memory_limit}'")
    con.execute(f"SET threads = {int(config.engine.threads)}")
    con.execute("SET temp_directory = ?", [str(spill)])
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    return con


def create_parameter_tables(con: duckdb.DuckDBPyConnection, config: Config) -> None:
    """Load the seeds and write the run's parameters as tables the SQL models join.

    `params` is one row; `param_mg_thresholds` is the sensitivity grid's thresholds. Values are
    bound parameters, never formatted into SQL text.
    """
    load_seeds(con)
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
    }
    extract_at = (
        datetime.fromisoformat(config.validation.extract_at) if config.validation.extract_at
        else datetime.now(timezone.utc).replace(tzinfo=None)
    )
    columns = ", ".join(f"{name} DOUBLE" for name in values)
    con.execute(
        f"CREATE OR REPLACE TABLE params ({columns}, hypocalcemia_definition VARCHAR, extract_at TIMESTAMP)"
    )
    con.execute(
        f"INSERT INTO params VALUES ({', '.join('?' for _ in values)}, ?, ?)",
        [*values.values(), config.analysis.hypocalcemia_definition, extract_at],
    )
    con.execute("CREATE OR REPLACE TABLE param_mg_thresholds (threshold_mg_dl DOUBLE, threshold_mmol_l DOUBLE)")
    factor = unit_factor("MG", "mg/dl")
    con.executemany(
        "INSERT INTO param_mg_thresholds VALUES (?, ?)",
        [(t, t * factor) for t in config.analysis.sensitivity_mg_thresholds_mg_dl],
    )
