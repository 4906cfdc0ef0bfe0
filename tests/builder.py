"""Hand-made test data: write tiny generic inputs and build a real DuckDB from them.

`make_db(tmp_path, labs=[...], meds=[...])` runs the real ingest and every SQL model on an
in-memory DuckDB (or a file, for Great Expectations) and returns the connection, so tests assert
exact counts on tables. `hypomag(...)` runs the command itself in a child process.
"""
from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
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


def make_db(tmp_path: Path, labs=(), meds=(), config: Config | None = None, models=BUILD_ORDER,
            db: str | Path = ":memory:"):
    """Ingest hand-made rows and build the models on a DuckDB (in memory unless `db` names a file)."""
    config = config or Config()
    folder = write_generic(tmp_path / "input", labs, meds)
    con = connect(db, config)
    create_parameter_tables(con, config)
    ingest_generic(con, folder, config.columns, config)
    build_models(con, models)
    return con


def scalar(con, sql: str, params=None):
    return con.execute(sql, params or []).fetchone()[0]


def fates(con) -> dict[int, tuple[str, str | None]]:
    """source_row -> (status, reason) of every lab row."""
    return {r[0]: (r[1], r[2]) for r in con.execute("SELECT source_row, status, reason FROM stg_lab_rows").fetchall()}


def hypomag(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The `hypomag` command in a child process of this Python, its output captured."""
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


def digest(path: Path) -> str:
    """A file's sha256, to show that a failed run left it byte for byte as it was."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
