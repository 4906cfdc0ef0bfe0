"""The SparkSession of a run: from `[engine] spark_master` and `spark_settings` (docs/spark.md).

The settings hypomag's SQL relies on are fixed here and cannot be overridden (a ConfigError names the
key): UTC session time, naive timestamps (TIMESTAMP_NTZ, like DuckDB's TIMESTAMP) and ANSI mode (an
invalid cast or an overflow raises, as on DuckDB). Division by zero is handled in the transpiler
(pipelines/spark/transpile.py: `/` becomes try_divide, NULL on zero), not by turning ANSI mode off.
"""
from __future__ import annotations

import atexit
import logging
from typing import Any, Mapping

from pipelines.errors import ConfigError

LOG = logging.getLogger("hypomag")

# Settings the models' meaning depends on (docs/portable-sql.md rules 2 and 5).
REQUIRED: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
    "spark.sql.ansi.enabled": "true",
}
# Defaults a user may override (spark_settings): small shuffles suit one machine; Arrow collects.
DEFAULTS: dict[str, str] = {
    "spark.sql.shuffle.partitions": "8",
    "spark.driver.memory": "2g",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    # Spark 4.3's RemoveRedundantAliases leaves an unresolved plan on int_calcium_corrected
    # (PLAN_VALIDATION_FAILED_RULE_IN_BATCH); without the rule the plan is valid. An optimisation only.
    "spark.sql.optimizer.excludedRules": "org.apache.spark.sql.catalyst.optimizer.RemoveRedundantAliases",
}

_SESSIONS: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}


def session_settings(settings: Mapping[str, Any]) -> dict[str, str]:
    """DEFAULTS, then the user's settings (as text), then REQUIRED; a user setting that contradicts a
    required one is a ConfigError."""
    merged = {**DEFAULTS, **{str(k): _text(v) for k, v in settings.items()}}
    for key, value in REQUIRED.items():
        given = merged.get(key)
        if given is not None and given.lower() != value.lower():
            raise ConfigError(f"engine.spark_settings: {key} must be {value!r} (hypomag's SQL relies on it), "
                              f"got {given!r}")
        merged[key] = value
    return merged


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def get_session(master: str, settings: Mapping[str, Any]) -> Any:
    """A SparkSession on `master` (local[N], spark://host:port, or a Spark Connect URL sc://host:port),
    made once per process and (master, settings); stopped when the process exits."""
    merged = session_settings(settings)
    key = (master, tuple(sorted(merged.items())))
    session = _SESSIONS.get(key)
    if session is not None:
        return session
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError("engine.name = 'spark' needs pyspark: pip install 'hypomag[spark]'") from None
    for other in list(_SESSIONS):  # one JVM session per process: a new master or settings replace the old
        stop_session(other)
    builder = SparkSession.builder.appName("hypomag")
    builder = builder.remote(master) if master.startswith("sc://") else builder.master(master)
    for name, value in merged.items():
        builder = builder.config(name, value)
    session = builder.getOrCreate()
    for name, value in REQUIRED.items():  # a reused JVM keeps its runtime settings: set them again
        session.conf.set(name, value)
    if not master.startswith("sc://"):
        session.sparkContext.setLogLevel("ERROR")  # Spark's WARN lines would bury the run's console lines
    _SESSIONS[key] = session
    LOG.info("spark: session on %s (Spark %s)", master, session.version)
    return session


def stop_session(key: tuple[str, tuple[tuple[str, str], ...]] | None = None) -> None:
    """Stop one session (by its key) or every session this process made."""
    for k in [key] if key is not None else list(_SESSIONS):
        session = _SESSIONS.pop(k, None)
        if session is not None:
            try:
                session.stop()
            except Exception:  # noqa: BLE001 - a JVM already gone at exit
                pass


atexit.register(stop_session)
