"""The DuckDB database of a run: connection settings and the run's parameter tables."""
from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from pipelines.config import Config, memory_limit_problem
from pipelines.errors import ConfigError
from pipelines.seeds import load_seeds, unit_factor


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


# Whitespace trimmed from both ends of every text field (plan section 2): what Python's str.isspace
# accepts (ASCII spaces and controls, no-break and other Unicode spaces, line and paragraph
# separators) plus the invisible zero-width space, Mongolian vowel separator and byte-order mark.
WHITESPACE_CHARS = (
    "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u180e"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u200b"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)


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
    con.execute("CREATE OR REPLACE TABLE param_mg_thresholds (threshold_mg_dl DOUBLE, threshold_mmol_l DOUBLE)")
    factor = unit_factor("MG", "mg/dl")
    con.executemany(
        "INSERT INTO param_mg_thresholds VALUES (?, ?)",
        [(t, t * factor) for t in config.analysis.sensitivity_mg_thresholds_mg_dl],
    )
    # input columns verified as not identifying (config.privacy.allow_columns), read by the
    # identifier guard at ingest (pipelines/ingest/identifiers.py)
    con.execute("CREATE OR REPLACE TABLE param_allow_columns (column_name VARCHAR)")
    for column in config.privacy.allow_columns:
        con.execute("INSERT INTO param_allow_columns VALUES (?)", [column])
