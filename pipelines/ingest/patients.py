"""Demographics, optional (docs/definitions.md section 1, Demographics): one patients table per source.

- generic: `patients.(csv|csv.gz|parquet)` with `patient_id`, `sex`, and `birth_year` or `age_at_first_result`;
- MIMIC-IV: `hosp/patients` (`subject_id`, `gender`, `anchor_age`, `anchor_year`);
- OMOP: `person` (`person_id`, `gender_concept_id`, `year_of_birth`).

Rows land in `raw_patients` as text with their file and row number, through the same reader and
identifier guard as the lab table (common.load_table); the model int_patients decides each row's fate
and mart_patient_accounting accounts for every row. Without the file, `raw_patients` is empty and
every stratum by age or sex is `unknown`: the figures are unchanged.
"""
from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.config import Config
from pipelines.errors import InputError
from pipelines.ingest.common import PATIENT_OPTIONAL, PATIENT_REQUIRED, InputFile, load_table
from pipelines.ingest.mimic_iv import find_hosp_file
from pipelines.ingest.omop import find_cdm_table

# source -> canonical field -> the source's column
MAPPINGS = {
    "generic": {},
    "mimic-iv": {"patient_id": "subject_id", "sex": "gender"},
    "omop": {"patient_id": "person_id", "sex": "gender_concept_id", "birth_year": "year_of_birth"},
}


def create_patients_table(con: duckdb.DuckDBPyConnection) -> None:
    """An empty `raw_patients` unless one exists (every model reads it, with or without demographics)."""
    cols = ", ".join(f"{f} VARCHAR" for f in (*PATIENT_REQUIRED, *PATIENT_OPTIONAL))
    con.execute(f"CREATE TABLE IF NOT EXISTS raw_patients (row_id BIGINT, source_file VARCHAR, source_row BIGINT, "
                f"{cols}, parse_error VARCHAR)")


def find_patients_file(source: str, input_dir: Path) -> Path | None:
    """The source's patients table, or None: it is optional."""
    input_dir = Path(input_dir)
    if source == "mimic-iv":
        return find_hosp_file(input_dir, "patients", required=False)
    if source == "omop":
        return find_cdm_table(input_dir, "person", required=False)
    found = [input_dir / f"patients{ext}" for ext in (".csv", ".csv.gz", ".parquet")
             if (input_dir / f"patients{ext}").is_file()]
    if len(found) > 1:
        raise InputError(f"{input_dir}: several patients files ({', '.join(p.name for p in found)}); keep one")
    return found[0] if found else None


def load_patients(con: duckdb.DuckDBPyConnection, source: str, input_dir: Path,
                  config: Config | None = None) -> InputFile | None:
    """Replace `raw_patients` with the source's patients table (empty without one)."""
    con.execute("DROP TABLE IF EXISTS raw_patients")
    create_patients_table(con)
    path = find_patients_file(source, input_dir)
    if path is None:
        return None
    return load_table(con, path, "raw_patients", PATIENT_REQUIRED, PATIENT_OPTIONAL, MAPPINGS[source], config)
