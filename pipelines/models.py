"""Build the SQL models of sql/ in one fixed order.

Each file `sql/<layer>/<stem>.sql` is one SELECT; the runner wraps it as
`CREATE OR REPLACE TABLE <stem> AS ...` (STYLE.md), or a view for the few models in VIEWS.
BUILD_ORDER is the only place the order is written; a test checks that every sql/**/*.sql file
appears in it exactly once.
"""
from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import duckdb

from pipelines.paths import SQL_DIR

LOG = logging.getLogger("hypomag")
# The model being built, for the console's progress display (pipelines/cli.py): not a log line, so it
# reaches no log handler unless the console attaches one.
PROGRESS = logging.getLogger("hypomag.progress")
PROGRESS.propagate = False
PROGRESS.setLevel(logging.INFO)

# normalise: the fate of every input row, canonical units, the quarantine
NORMALISE_MODELS: tuple[str, ...] = (
    "staging/stg_lab_fields",
    "staging/stg_lab_rows",
    "staging/stg_medication_rows",
    "intermediate/int_result_id_kind",
    "intermediate/int_lab_results",
    "intermediate/int_quarantine",
    "intermediate/int_result_corrections",
)
# flag: abnormality flags, partner windows, drug classes, exposures, hypokalemia episodes
FLAG_MODELS: tuple[str, ...] = (
    "intermediate/int_lab_flags",
    "intermediate/int_calcium_corrected",
    "intermediate/int_result_bits",
    "intermediate/int_index_windows",
    "intermediate/int_index_patterns",
    "intermediate/int_index_answers",
    "intermediate/int_medication_classes",
    "intermediate/int_mg_exposures",
    "intermediate/int_hypokalemia_episodes",
    "intermediate/int_care_unit_patients",
)
# analyse: the marts that results.json and the report read
MART_MODELS: tuple[str, ...] = (
    "marts/mart_row_accounting",
    "marts/mart_attrition",
    "marts/mart_cooccurrence",
    "marts/mart_sensitivity",
    "marts/mart_audit",
    "marts/mart_audit_times",
    "marts/mart_audit_reflex",
    "marts/mart_audit_worklist",
    "marts/mart_exposures",
    "marts/mart_cooccurrence_clusters",
    "marts/mart_patient_demographics",
    "marts/mart_cooccurrence_strata",
    "marts/mart_sweep",
    "marts/mart_adjusted_patterns",
)
BUILD_ORDER: tuple[str, ...] = NORMALISE_MODELS + FLAG_MODELS + MART_MODELS
# Views: models whose rows are a projection of one table, cheaper to compute inside each reader's
# query than to write once more (millions of rows each; docs/performance.md measures int_lab_flags).
VIEWS: frozenset[str] = frozenset({
    "staging/stg_lab_fields",
    "intermediate/int_lab_results",
    "intermediate/int_lab_flags",
    "intermediate/int_result_bits",
    "intermediate/int_index_answers",
})

# How an incremental run (pipelines/incremental.py) brings each table model up to date:
# - by input row: the staging models, keyed by their raw table's row_id (a row's fate depends on its
#   own fields, the other rows of its patient and the rows that share its result id);
# - by patient: every row belongs to one patient and depends only on that patient's rows, so only
#   the patients with new or corrected rows are recomputed;
# - additive: an aggregate that is a sum over patients (counts, distinct patients, sums of per-patient
#   sums), brought up to date by adding the affected patients' new contribution and subtracting their
#   old one (each the model's own SQL on their rows only); the keys, and which rows the model keeps;
# - whole: every other table (one-row settings, other aggregates, marts), rebuilt from the tables above.
BY_INPUT_ROW: dict[str, str] = {
    "staging/stg_lab_rows": "raw_labs",
    "staging/stg_medication_rows": "raw_medications",
}
BY_PATIENT: frozenset[str] = frozenset({
    "intermediate/int_calcium_corrected",
    "intermediate/int_index_windows",
    "intermediate/int_medication_classes",
    "intermediate/int_mg_exposures",
    "intermediate/int_hypokalemia_episodes",
})
ADDITIVE: dict[str, tuple[tuple[str, ...], str | None]] = {
    "intermediate/int_index_patterns": (("window_id", "index_class", "own_bits", "partner_bits"), "row_count > 0"),
    "intermediate/int_care_unit_patients": (("care_unit",), "patients > 0"),
    "marts/mart_cooccurrence": (("abnormality", "direction", "window_name", "level"), None),
    "marts/mart_cooccurrence_clusters": (("abnormality", "direction", "window_name"), "clusters > 0"),
    "marts/mart_cooccurrence_strata": (("abnormality", "direction", "window_name", "level", "stratum", "stratum_value"),
                                       "index_count > 0 or denominator > 0"),
    "marts/mart_sweep": (("direction", "abnormality", "definition_id", "threshold_canonical", "window_seconds"),
                         "numerator > 0 or denominator > 0"),
    "marts/mart_adjusted_patterns": (("abnormality", "hypo", "is_abnormal", "age", "sex", "present", "exposed"),
                                     "patients > 0"),
}
# What an additive model reads whole besides the patients' rows: the answer of this query must be the
# same before and after the night, or the model is rebuilt whole (a care unit that reaches or leaves
# min_cell_size patients changes how every patient's results in it are grouped).
ADDITIVE_GUARDS: dict[str, str] = {
    "marts/mart_cooccurrence_strata": "SELECT care_unit FROM int_care_unit_patients CROSS JOIN params "
                                      "WHERE patients >= min_cell_size ORDER BY care_unit",
}


def model_path(name: str) -> Path:
    return SQL_DIR / f"{name}.sql"


def model_sql(name: str) -> str:
    return model_path(name).read_text(encoding="utf-8")


def table_name(name: str) -> str:
    return Path(name).name


def build_models(con: duckdb.DuckDBPyConnection, names: tuple[str, ...] = BUILD_ORDER) -> None:
    """Create or replace each model's table (or view, for VIEWS), in order.

    Models order explicitly wherever order matters; not keeping insertion order lets DuckDB build
    100M-row tables in bounded memory (ingest, which uses a CSV's rowid as its row number, is done).
    """
    con.execute("SET preserve_insertion_order = false")
    for name in names:
        sql = model_sql(name)
        kind = "VIEW" if name in VIEWS else "TABLE"
        started = time.perf_counter()
        PROGRESS.info("model %s", table_name(name))
        try:
            _drop_other_kind(con, table_name(name), kind)
            con.execute(f"CREATE OR REPLACE {kind} {table_name(name)} AS {sql}")
        except duckdb.Error as exc:
            raise RuntimeError(f"model {name}.sql failed: {exc}") from exc
        if kind == "TABLE":  # progress on long runs (a view's rows are computed by its reader)
            rows = con.execute(f"SELECT count(*) FROM {table_name(name)}").fetchone()[0]
            LOG.info("model %s: %s rows in %.1f s", table_name(name), f"{rows:,}", time.perf_counter() - started)


def _drop_other_kind(con: duckdb.DuckDBPyConnection, name: str, kind: str) -> None:
    """A database built by an earlier version may hold the model as the other kind of object."""
    found = con.execute("SELECT table_type FROM information_schema.tables WHERE table_schema = 'main' "
                        "AND table_name = ?", [name]).fetchone()
    existing = found and ("VIEW" if found[0] == "VIEW" else "TABLE")
    if existing and existing != kind:
        con.execute(f"DROP {existing} {name}")


SQL_SUFFIXES = (".sql", ".csv")


def sql_sha256(folder: Path = SQL_DIR) -> str:
    """sha256 over the SQL models and seeds under `folder` (sql/, its seeds/ included): each file's
    path relative to `folder` and its bytes' sha256, in sorted path order, so the digest changes when
    any model or seed changes, is added, removed or renamed, and not when the folder moves."""
    digest = hashlib.sha256()
    files = sorted((p for p in folder.rglob("*") if p.is_file() and p.suffix in SQL_SUFFIXES),
                   key=lambda p: p.relative_to(folder).as_posix())
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).hexdigest().encode("ascii") + b"\n")
    return digest.hexdigest()
