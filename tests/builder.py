"""Hand-made test data: write tiny generic inputs and build a real DuckDB from them.

`make_db(tmp_path, labs=[...], meds=[...])` runs the real ingest and every SQL model on an
in-memory DuckDB and returns the connection, so tests assert exact counts on tables.
"""
from __future__ import annotations

import csv
from pathlib import Path

from pipelines.config import Config
from pipelines.db import connect, create_parameter_tables
from pipelines.ingest import LAB_OPTIONAL, LAB_REQUIRED, MED_OPTIONAL, MED_REQUIRED, ingest_generic
from pipelines.models import BUILD_ORDER, build_models

LAB_COLUMNS = (*LAB_REQUIRED, *LAB_OPTIONAL)
MED_COLUMNS = (*MED_REQUIRED, *MED_OPTIONAL)


def lab(patient, at, analyte, value, unit, **extra) -> dict:
    """One lab row; `extra` may set result_id, specimen_id, encounter_id, fluid, care_unit."""
    return {"patient_id": patient, "collected_at": at, "analyte": analyte, "value": value, "unit": unit, **extra}


def med(patient, start, drug, stop="", **extra) -> dict:
    return {"patient_id": patient, "start_at": start, "stop_at": stop, "drug": drug, **extra}


def write_csv(path: Path, columns, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


def write_generic(folder: Path, labs=(), meds=()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "labs.csv", LAB_COLUMNS, labs)
    write_csv(folder / "medications.csv", MED_COLUMNS, meds)
    return folder


def make_db(tmp_path: Path, labs=(), meds=(), config: Config | None = None, models=BUILD_ORDER):
    """Ingest hand-made rows and build the models on an in-memory DuckDB."""
    config = config or Config()
    folder = write_generic(tmp_path / "input", labs, meds)
    con = connect(":memory:", config)
    create_parameter_tables(con, config)
    ingest_generic(con, folder, config.columns, config)
    build_models(con, models)
    return con


def scalar(con, sql: str, params=None):
    return con.execute(sql, params or []).fetchone()[0]


def fates(con) -> dict[int, tuple[str, str | None]]:
    """source_row -> (status, reason) of every lab row."""
    return {r[0]: (r[1], r[2]) for r in con.execute("SELECT source_row, status, reason FROM stg_lab_rows").fetchall()}
