"""Incremental computation for the nightly run (`hypomag run --incremental`): the row-level models are
brought up to date for the patients with new or corrected rows only, in the nightly's one database.

A nightly run keeps one database, `<store>/live/hypomag.duckdb` (pipelines/publish.py), and changes it
in one DuckDB transaction that commits just before the run's outputs are published (steps.publish): a
run that fails or is killed leaves the database as the last run committed it, and nothing is copied.

Each table model is brought up to date in one of three ways (pipelines/models.py):

- by input row (the staging models): the rows to restage are the new rows, every row of an affected
  patient, and every row that shares a given result id with those (a correction supersedes by result
  id, across patients). Affected patients: those of the new rows (labs and medications) and those of
  earlier rows whose result id a new row gives again. The staging SQL runs on those raw rows only;
  the rows written back are the affected patients' and those without a patient (a row of another
  patient, restaged only because it shares a result id, keeps its fate: nothing of it changed);
- by patient: the model's SQL runs with every by-row and by-patient table it reads narrowed to the
  affected patients (temporary views of the same names shadow the tables; the views of the build
  read through them), and the patients' rows are replaced;
- additive (a sum over patients: counts of results and of patients, sums of per-patient sums): the
  model's SQL runs on the affected patients' rows twice, at the plan (before anything changes) and
  when the model's turn comes; the table gets the second answer added and the first subtracted, key
  by key. A model that also reads a whole-history property (the care units shown by name) is rebuilt
  whole when that property changed (models.ADDITIVE_GUARDS);
- whole: rebuilt from the full tables (one-row settings, the other aggregates and marts).

Where a whole property changes what every patient's rows hold (int_result_id_kind: result ids all
numeric or not), or the models, the code of the parameter and seed tables or the configuration differ
from those that built the database (the fingerprint in hypomag_meta), everything is rebuilt, still
inside the transaction.
tests/test_incremental.py shows that any sequence of nightly loads gives the tables and results.json
of one run on the same accepted files.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import duckdb

from pipelines import models
from pipelines.config import Config
from pipelines.models import (ADDITIVE, ADDITIVE_GUARDS, BY_INPUT_ROW, BY_PATIENT, VIEWS, model_sql, sql_sha256,
                              table_name)

LOG = logging.getLogger("hypomag")

FINGERPRINT_KEY = "models_fingerprint"
ID_KIND_MODEL = "intermediate/int_result_id_kind"
PATIENTS = "_inc_patients"  # temporary tables of the plan
PATIENT_ROWS = "_inc_rows_of_"  # + a table's name: a temporary copy of the affected patients' rows of it
ROWS = {"raw_labs": "_inc_lab_rows", "raw_medications": "_inc_med_rows"}


@dataclass
class Delta:
    """An incremental run's plan: the raw row ids read before this run (per raw table), and whether
    every model is rebuilt instead (`full`, with the reason)."""

    rows_before: dict[str, int] = field(default_factory=dict)
    full: bool = True
    reason: str = "first run"
    planned: bool = False
    patients: int = 0
    # additive models: the guard's answer before the night (models.ADDITIVE_GUARDS)
    guards: dict[str, list] = field(default_factory=dict)
    # tables whose affected patients' rows are copied (PATIENT_ROWS), as the table is now
    copied: set[str] = field(default_factory=set)

    def summary(self, con: duckdb.DuckDBPyConnection) -> str:
        if self.full:
            return f"every model rebuilt ({self.reason})"
        everyone = con.execute("SELECT count(DISTINCT patient_id) FROM int_lab_results").fetchone()[0]
        return f"{self.patients:,} of {everyone:,} patients recomputed"


# Configuration that no model reads: how and when a run runs, the statistics computed in Python, and
# where the configuration file is.
RUN_ONLY_SECTIONS = ("engine", "schedule", "statistics", "source_path")
# The code that fills the tables the models read besides the raw rows: parameter and seed tables.
TABLE_CODE = tuple(Path(__file__).with_name(name) for name in ("db.py", "seeds.py"))


def fingerprint(config: Config) -> str:
    """What the models' tables depend on besides the data: the SQL and seeds, the code that makes the
    parameter and seed tables, and the configuration."""
    code = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in TABLE_CODE}
    settings = {k: v for k, v in config.to_dict().items() if k not in RUN_ONLY_SECTIONS}
    text = json.dumps({"sql": sql_sha256(), "code": code, "config": settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stored_fingerprint(con: duckdb.DuckDBPyConnection) -> str | None:
    if not _exists(con, "hypomag_meta"):
        return None
    row = con.execute("SELECT value FROM hypomag_meta WHERE key = ?", [FINGERPRINT_KEY]).fetchone()
    return row[0] if row else None


def record_fingerprint(con: duckdb.DuckDBPyConnection, config: Config) -> None:
    """After a complete build: the database's tables are those of these models and this configuration."""
    con.execute("DELETE FROM hypomag_meta WHERE key = ?", [FINGERPRINT_KEY])
    con.execute("INSERT INTO hypomag_meta VALUES (?, ?)", [FINGERPRINT_KEY, fingerprint(config)])


def before_ingest(con: duckdb.DuckDBPyConnection, config: Config) -> Delta:
    """The plan's start, taken before the night's files are read: the raw row ids so far, and whether
    the database can be brought up to date (built before by the same models and configuration)."""
    rows_before = {raw: _max_row_id(con, raw) for raw in ROWS}
    if not _exists(con, "int_index_windows"):
        return Delta(rows_before, full=True, reason="no models built yet")
    if stored_fingerprint(con) != fingerprint(config):
        return Delta(rows_before, full=True, reason="the models or the configuration changed")
    # checks of a file's own rows (run_scope) read the night's files: earlier files were checked by the
    # same models and configuration when they were loaded
    con.execute("UPDATE run_scope SET first_new_lab_row_id = ?", [rows_before["raw_labs"] + 1])
    return Delta(rows_before, full=False, reason="")


def forget_new_rows(con: duckdb.DuckDBPyConnection, delta: Delta) -> None:
    """Before a retried ingest: drop the raw rows an earlier attempt of this run read (the ledger
    records a night's files only when all of them are read, so it holds none of them)."""
    for raw, before in delta.rows_before.items():
        if _exists(con, raw):
            con.execute(f"DELETE FROM {raw} WHERE row_id > ?", [before])


def build(con: duckdb.DuckDBPyConnection, names: tuple[str, ...], delta: Delta) -> None:
    """Bring the models `names` (in build order) up to date for the night's rows."""
    for name in names:
        if delta.full or name in VIEWS or (name not in BY_INPUT_ROW and name not in BY_PATIENT
                                           and name not in ADDITIVE):
            before = _id_kind(con) if name == ID_KIND_MODEL and not delta.full else None
            models.build_models(con, (name,))
            _forget(con, delta, table_name(name))
            if before is not None and _id_kind(con) != before:
                delta.full, delta.reason = True, "result ids changed between all numeric and not"
                LOG.info("incremental: %s; every patient is recomputed", delta.reason)
            continue
        if not delta.planned:
            plan(con, delta)
        started = time.perf_counter()
        models.PROGRESS.info("model %s", table_name(name))
        if name in BY_INPUT_ROW:
            _restage(con, name, delta)
        elif name in BY_PATIENT:
            _recompute_patients(con, name, delta)
        elif name in ADDITIVE_GUARDS and _guard(con, name) != delta.guards.get(name):
            models.build_models(con, (name,))
            LOG.info("model %s: rebuilt whole (what it reads of every patient changed)", table_name(name))
            continue
        else:
            _add_contribution(con, name, delta)
        LOG.info("model %s: %s patients recomputed in %.1f s", table_name(name), f"{delta.patients:,}",
                 time.perf_counter() - started)


def plan(con: duckdb.DuckDBPyConnection, delta: Delta) -> None:
    """The affected patients and the raw rows to restage (temporary tables _inc_*)."""
    con.execute("CREATE OR REPLACE TEMP TABLE _inc_before AS SELECT ? AS labs, ? AS meds",
                [delta.rows_before["raw_labs"], delta.rows_before["raw_medications"]])
    with shadows(con, {"raw_labs": "row_id > (SELECT labs FROM _inc_before)",
                       "raw_medications": "row_id > (SELECT meds FROM _inc_before)"}):
        con.execute(f"CREATE OR REPLACE TEMP TABLE _inc_new_labs AS {model_sql('staging/stg_lab_rows')}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE _inc_new_meds AS {model_sql('staging/stg_medication_rows')}")
    db = _catalog(con)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {PATIENTS} AS
        SELECT patient_id FROM _inc_new_labs WHERE patient_id IS NOT NULL
        UNION SELECT patient_id FROM _inc_new_meds WHERE patient_id IS NOT NULL
        UNION SELECT s.patient_id FROM {db}.main.stg_lab_rows AS s
        WHERE s.patient_id IS NOT NULL AND s.given_result_id IN (SELECT given_result_id FROM _inc_new_labs)""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _inc_lab_rows AS
        SELECT row_id FROM _inc_new_labs
        UNION SELECT row_id FROM {db}.main.stg_lab_rows WHERE patient_id IN (SELECT patient_id FROM {PATIENTS})
        UNION SELECT row_id FROM {db}.main.stg_lab_rows WHERE given_result_id IN (
            SELECT given_result_id FROM _inc_new_labs
            UNION SELECT given_result_id FROM {db}.main.stg_lab_rows
            WHERE patient_id IN (SELECT patient_id FROM {PATIENTS}))""")
    con.execute("CREATE OR REPLACE TEMP TABLE _inc_med_rows AS SELECT row_id FROM _inc_new_meds")
    delta.patients = con.execute(f"SELECT count(*) FROM {PATIENTS}").fetchone()[0]
    _old_contributions(con, delta)
    delta.planned = True
    restaged = con.execute("SELECT count(*) FROM _inc_lab_rows").fetchone()[0]
    LOG.info("incremental: %s patients affected, %s lab rows restaged", f"{delta.patients:,}", f"{restaged:,}")


def _restage(con: duckdb.DuckDBPyConnection, name: str, delta: Delta) -> None:
    """A staging model for the plan's raw rows; the rows written back: the affected patients' and
    those without a patient (a lab row restaged only for its result id keeps its fate)."""
    raw = BY_INPUT_ROW[name]
    filters = {t: f"row_id IN (SELECT row_id FROM {rows})" for t, rows in ROWS.items()}
    keep = f"row_id IN (SELECT row_id FROM {ROWS[raw]})"
    if raw == "raw_labs":
        keep += f" AND (patient_id IS NULL OR patient_id IN (SELECT patient_id FROM {PATIENTS}))"
    with shadows(con, filters):
        con.execute(f"CREATE OR REPLACE TEMP TABLE _inc_delta AS {model_sql(name)}")
    _replace(con, delta, table_name(name), keep)


def _recompute_patients(con: duckdb.DuckDBPyConnection, name: str, delta: Delta) -> None:
    """A by-patient model on the affected patients' rows of everything it reads; their rows replaced."""
    with patient_shadows(con, delta, name):
        con.execute(f"CREATE OR REPLACE TEMP TABLE _inc_delta AS {model_sql(name)}")
    _replace(con, delta, table_name(name), f"patient_id IN (SELECT patient_id FROM {PATIENTS})")


def _keyed_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The by-row and by-patient tables (those that hold rows of patients) built so far."""
    return [table_name(m) for m in (*BY_INPUT_ROW, *BY_PATIENT) if _exists(con, table_name(m))]


@lru_cache(maxsize=None)
def _reads(name: str) -> frozenset[str]:
    """The tables a model's SQL names, through the views of the build (a superset: a name in a comment
    counts too)."""
    text = model_sql(name)
    named = {m for m in models.BUILD_ORDER if m != name and re.search(rf"\b{table_name(m)}\b", text)}
    return frozenset({table_name(m) for m in named}.union(*(_reads(m) for m in named if m in VIEWS)))


@contextmanager
def patient_shadows(con: duckdb.DuckDBPyConnection, delta: Delta, name: str) -> Iterator[None]:
    """While the model `name` runs: every by-row and by-patient table narrowed to the affected patients.
    A table the model reads is narrowed once, into a temporary copy that serves every later model until
    the table is written again (each filter is a scan of the whole table); the others through a view."""
    db, reads, filters = _catalog(con), _reads(name), {}
    patients = f"patient_id IN (SELECT patient_id FROM {PATIENTS})"
    for table in _keyed_tables(con):
        if table == table_name(name) or table not in reads:
            filters[table] = patients
            continue
        if table not in delta.copied:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {PATIENT_ROWS}{table} AS "
                        f"SELECT * FROM {db}.main.{table} WHERE {patients}")
            delta.copied.add(table)
        filters[table] = None
    with shadows(con, filters):
        yield


def _forget(con: duckdb.DuckDBPyConnection, delta: Delta, table: str) -> None:
    """`table` is written: its copy of the affected patients' rows (if any) is stale."""
    if table in delta.copied:
        con.execute(f"DROP TABLE temp.main.{PATIENT_ROWS}{table}")
        delta.copied.discard(table)


def _old_contributions(con: duckdb.DuckDBPyConnection, delta: Delta) -> None:
    """At the plan, before any table changes: each additive model's SQL on the affected patients' rows
    (_inc_old_<table>), and its guard's answer."""
    for name in ADDITIVE:
        with patient_shadows(con, delta, name):
            con.execute(f"CREATE OR REPLACE TEMP TABLE _inc_old_{table_name(name)} AS {model_sql(name)}")
    delta.guards = {name: _guard(con, name) for name in ADDITIVE_GUARDS}


def _guard(con: duckdb.DuckDBPyConnection, name: str) -> list:
    return con.execute(ADDITIVE_GUARDS[name]).fetchall()


def _add_contribution(con: duckdb.DuckDBPyConnection, name: str, delta: Delta) -> None:
    """An additive model brought up to date: its rows plus the affected patients' contribution now
    minus their contribution at the plan, summed per key; the rows the model keeps (models.ADDITIVE)."""
    table = table_name(name)
    keys, keep = ADDITIVE[name]
    if not delta.patients:  # a night without new rows: nothing to add or subtract
        con.execute(f"DROP TABLE _inc_old_{table}")
        return
    with patient_shadows(con, delta, name):
        con.execute(f"CREATE OR REPLACE TEMP TABLE _inc_new_{table} AS {model_sql(name)}")
    target = f"{_catalog(con)}.main.{table}"
    columns = con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'main' "
                          "AND table_catalog = current_database() AND table_name = ? ORDER BY ordinal_position",
                          [table]).fetchall()
    measures = [(c, t) for c, t in columns if c not in keys]
    names = ", ".join(c for c, _ in columns)
    # the three parts of the union line up by position: every one in the table's column order
    negated = ", ".join(c if c in keys else f"-{c} AS {c}" for c, _ in columns)
    summed = ", ".join(keys + tuple(f"CAST(sum({c}) AS {t}) AS {c}" for c, t in measures))
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _inc_delta AS
        SELECT {summed} FROM (
            SELECT {names} FROM {target}
            UNION ALL SELECT {names} FROM _inc_new_{table}
            UNION ALL SELECT {negated} FROM _inc_old_{table})
        GROUP BY {", ".join(keys)}""")
    # every measure is a count or a sum of counts: below zero, the stored table and the contributions
    # disagree (a defect, never data), and the night must not publish it
    below = con.execute(f"SELECT count(*) FROM _inc_delta WHERE {' OR '.join(f'{c} < 0' for c, _ in measures)}"
                        ).fetchone()[0]
    if below:
        raise RuntimeError(f"incremental update of {table}: {below} keys would count below zero")
    con.execute(f"DELETE FROM {target}")
    con.execute(f"INSERT INTO {target} SELECT {names} FROM _inc_delta WHERE {keep or 'true'}")
    for temp in ("_inc_delta", f"_inc_new_{table}", f"_inc_old_{table}"):
        con.execute(f"DROP TABLE {temp}")


def _replace(con: duckdb.DuckDBPyConnection, delta: Delta, table: str, keep: str) -> None:
    """Replace the rows of `table` that `keep` selects by those of the recomputed _inc_delta."""
    target = f"{_catalog(con)}.main.{table}"
    _forget(con, delta, table)
    con.execute(f"DELETE FROM {target} WHERE {keep}")
    con.execute(f"INSERT INTO {target} SELECT * FROM _inc_delta WHERE {keep}")
    con.execute("DROP TABLE _inc_delta")


@contextmanager
def shadows(con: duckdb.DuckDBPyConnection, filters: dict[str, str | None]) -> Iterator[None]:
    """Temporary views named like the tables in `filters`, each the table narrowed by its filter (None:
    the table's copy PATIENT_ROWS): an unqualified name (a model's, or a view's of the build) reads the
    view while they exist."""
    db = _catalog(con)
    try:
        for table, where in filters.items():
            source = f"{PATIENT_ROWS}{table}" if where is None else f"{db}.main.{table} WHERE {where}"
            con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT * FROM {source}")
        yield
    finally:
        for table in filters:
            con.execute(f"DROP VIEW IF EXISTS temp.main.{table}")


def _catalog(con: duckdb.DuckDBPyConnection) -> str:
    """The database's own catalog name, quoted (temporary objects live in the catalog `temp`)."""
    name = con.execute("SELECT current_database()").fetchone()[0]
    return '"' + name.replace('"', '""') + '"'


def _exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' "
                       "AND table_catalog = current_database() AND table_name = ?", [table]).fetchone()[0] > 0


def _max_row_id(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"SELECT coalesce(max(row_id), 0) FROM {table}").fetchone()[0] if _exists(con, table) else 0


def _id_kind(con: duckdb.DuckDBPyConnection) -> bool | None:
    if not _exists(con, "int_result_id_kind"):
        return None
    row = con.execute("SELECT all_numeric FROM int_result_id_kind").fetchone()
    return None if row is None else bool(row[0])
