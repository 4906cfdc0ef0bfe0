"""The OMOP CDM v5.4 source: `measurement` and `drug_exposure`, resolved through `concept`
(docs/definitions.md section 1). Tables are CSV or Parquet files named as the tables (`measurement.csv`, ...).

- Analyte: `measurement_concept_id` -> `concept` -> its LOINC code (vocabulary_id 'LOINC'), matched
  against the same analyte code seed as every source; never a hard-coded list of concept ids. Whole
  blood and serum are told apart by the LOINC code itself (seed `analyte_codes.code_fluid`).
- Unit: `unit_concept_id` -> `concept` -> its UCUM code; where the concept is 0 or unknown,
  `unit_source_value`.
- Value: `value_as_number`, prefixed by `operator_concept_id`'s `<`, `<=`, `>`, `>=` (censored);
  where there is no number, `value_source_value` (so text results are quarantined, not lost).
- Time: `measurement_datetime`; a row with only `measurement_date` has no time of day and is
  quarantined as bad_timestamp (plan 1.1). `measurement_id` is the result id.
- Drugs: the drug concept's name, falling back to `drug_source_value` when the concept is 0 or
  unknown; start `drug_exposure_start_datetime` (else the start date, 00:00); stop the end
  datetime, else the inclusive end date's last second; ATC code the most specific ATC ancestor
  (`concept_ancestor`) or related concept (`concept_relationship`) where those tables are present.
- Identifier guard (identifiers.py): every column name of measurement and drug_exposure is checked;
  the text values that reach the raw tables from the patient's record are scanned (person_id,
  visit_occurrence_id, unit_source_value, drug_source_value); concept names come from the vocabulary.
"""
from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.config import Config
from pipelines.errors import InputError
from pipelines.ingest.common import (
    InputFile,
    check_identifiers,
    create_raw_tables,
    insert_malformed,
    read_file_as_text,
    record_loaded,
    row_offset,
    sha256_of,
    source_columns,
)

MEASUREMENT_COLUMNS = ("measurement_id", "person_id", "measurement_concept_id", "measurement_datetime",
                       "value_as_number", "unit_concept_id")
DRUG_COLUMNS = ("drug_exposure_id", "person_id", "drug_concept_id", "drug_exposure_start_date")
OPTIONAL = {
    "measurement": ("measurement_date", "operator_concept_id", "unit_source_value", "value_source_value",
                    "visit_occurrence_id"),
    "drug_exposure": ("drug_exposure_start_datetime", "drug_exposure_end_date", "drug_exposure_end_datetime",
                      "route_concept_id", "drug_source_value", "visit_occurrence_id"),
}


def find_cdm_table(root: Path, table: str, required: bool = True) -> Path | None:
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        stem = path.name.lower()
        if stem in (f"{table}.csv", f"{table}.csv.gz", f"{table}.parquet"):
            return path
    if required:
        raise InputError(f"{root}: OMOP table {table} not found (expected {table}.csv or {table}.parquet)")
    return None


def _col(cols: dict[str, str | None], name: str, alias: str = "m") -> str:
    return f'{alias}."{cols[name]}"' if cols.get(name) else "CAST(NULL AS VARCHAR)"


def _refuse_repeated_concepts(con: duckdb.DuckDBPyConnection, concept: Path, column: str) -> None:
    """concept_id is the key of CONCEPT: a repeated one would join each measurement and drug row to
    both, reading one input row twice (row accounting would no longer add up)."""
    found = con.execute(f'SELECT trim("{column}"), min(source_row), max(source_row) FROM omop_concept '
                        f'WHERE parse_error IS NULL GROUP BY trim("{column}") HAVING count(*) > 1 '
                        'ORDER BY min(source_row) LIMIT 1').fetchone()
    if found:
        raise InputError(f"{concept}: column {column!r}: concept_id {found[0]} repeats (rows {found[1]} and "
                         f"{found[2]}); each concept must appear once")


def ingest_omop(con: duckdb.DuckDBPyConnection, root: Path, config: Config | None = None) -> list[InputFile]:
    """Load measurement and drug_exposure (CSVs read with the `[csv]` dialect of `config`)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: input folder not found")
    measurement = find_cdm_table(root, "measurement")
    drug_exposure = find_cdm_table(root, "drug_exposure")
    concept = find_cdm_table(root, "concept")
    create_raw_tables(con)

    read_file_as_text(con, concept, "omop_concept", config)
    names = source_columns(con, concept, "omop_concept",
                           ("concept_id", "concept_name", "vocabulary_id", "concept_code"), ())
    _refuse_repeated_concepts(con, concept, names["concept_id"])
    _atc_table(con, root, config)

    columns = read_file_as_text(con, measurement, "omop_measurement", config)
    cols = source_columns(con, measurement, "omop_measurement", MEASUREMENT_COLUMNS, OPTIONAL["measurement"])
    check_identifiers(con, measurement, "omop_measurement", columns,
                      scan=[c for c in (cols["person_id"], cols["visit_occurrence_id"], cols["unit_source_value"])
                            if c])
    lab_offset = row_offset(con, "raw_labs")
    when = f"coalesce(nullif(trim({_col(cols, 'measurement_datetime')}), ''), {_col(cols, 'measurement_date')})"
    con.execute(
        f"""
        INSERT INTO raw_labs
        SELECT
            ? + m.source_row, ?, m.source_row,
            {_col(cols, 'person_id')},
            {when},
            coalesce(lc.concept_code, concat('omop concept ', {_col(cols, 'measurement_concept_id')})),
            CASE
                WHEN nullif(trim({_col(cols, 'value_as_number')}), '') IS NOT NULL
                    THEN concat(CASE WHEN oc.concept_name IN ('<', '<=', '>', '>=') THEN oc.concept_name ELSE '' END,
                                trim({_col(cols, 'value_as_number')}))
                ELSE {_col(cols, 'value_source_value')}
            END,
            CASE WHEN uc.concept_code IS NOT NULL AND trim({_col(cols, 'unit_concept_id')}) <> '0' THEN uc.concept_code
                 ELSE {_col(cols, 'unit_source_value')} END,
            {_col(cols, 'measurement_id')},
            CAST(NULL AS VARCHAR),
            {_col(cols, 'visit_occurrence_id')},
            CAST(NULL AS VARCHAR),
            CAST(NULL AS VARCHAR),
            CAST(NULL AS VARCHAR)
        FROM omop_measurement AS m
        LEFT JOIN omop_concept AS lc
            ON lc.concept_id = trim({_col(cols, 'measurement_concept_id')}) AND lc.vocabulary_id = 'LOINC'
        LEFT JOIN omop_concept AS uc
            ON uc.concept_id = trim({_col(cols, 'unit_concept_id')}) AND uc.vocabulary_id = 'UCUM'
        LEFT JOIN omop_concept AS oc ON oc.concept_id = trim({_col(cols, 'operator_concept_id')})
        WHERE m.parse_error IS NULL
        """,
        [lab_offset, str(measurement)],
    )
    insert_malformed(con, "omop_measurement", "raw_labs", measurement, lab_offset)
    lab_rows = con.execute("SELECT count(*) FROM omop_measurement").fetchone()[0]

    columns = read_file_as_text(con, drug_exposure, "omop_drug", config)
    cols = source_columns(con, drug_exposure, "omop_drug", DRUG_COLUMNS, OPTIONAL["drug_exposure"])
    check_identifiers(con, drug_exposure, "omop_drug", columns,
                      scan=[c for c in (cols["person_id"], cols["visit_occurrence_id"], cols["drug_source_value"])
                            if c])
    end_date = _col(cols, "drug_exposure_end_date", "d")
    med_offset = row_offset(con, "raw_medications")
    con.execute(
        f"""
        INSERT INTO raw_medications
        SELECT
            ? + d.source_row, ?, d.source_row,
            {_col(cols, 'person_id', 'd')},
            coalesce(nullif(trim({_col(cols, 'drug_exposure_start_datetime', 'd')}), ''),
                     {_col(cols, 'drug_exposure_start_date', 'd')}),
            CASE WHEN dc.concept_id IS NOT NULL AND trim({_col(cols, 'drug_concept_id', 'd')}) <> '0'
                 THEN dc.concept_name ELSE {_col(cols, 'drug_source_value', 'd')} END,
            coalesce(nullif(trim({_col(cols, 'drug_exposure_end_datetime', 'd')}), ''),
                     CASE WHEN nullif(trim({end_date}), '') IS NOT NULL THEN concat(trim({end_date}), ' 23:59:59') END),
            rc.concept_name,
            atc.atc_code,
            CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR),
            {_col(cols, 'visit_occurrence_id', 'd')},
            CAST(NULL AS VARCHAR)
        FROM omop_drug AS d
        LEFT JOIN omop_concept AS dc ON dc.concept_id = trim({_col(cols, 'drug_concept_id', 'd')})
        LEFT JOIN omop_concept AS rc ON rc.concept_id = trim({_col(cols, 'route_concept_id', 'd')})
        LEFT JOIN omop_atc AS atc ON atc.drug_concept_id = trim({_col(cols, 'drug_concept_id', 'd')})
        WHERE d.parse_error IS NULL
        """,
        [med_offset, str(drug_exposure)],
    )
    insert_malformed(con, "omop_drug", "raw_medications", drug_exposure, med_offset)
    med_rows = con.execute("SELECT count(*) FROM omop_drug").fetchone()[0]
    for table in ("omop_measurement", "omop_drug"):
        con.execute(f"DROP TABLE {table}")
    loaded = [
        InputFile("raw_labs", str(measurement), sha256_of(measurement), lab_rows),
        InputFile("raw_medications", str(drug_exposure), sha256_of(drug_exposure), med_rows),
    ]
    record_loaded(con, loaded)
    return loaded


def _atc_table(con: duckdb.DuckDBPyConnection, root: Path, config: Config | None = None) -> None:
    """omop_atc(drug_concept_id, atc_code): the most specific ATC code related to each drug concept."""
    sources = []
    ancestor = find_cdm_table(root, "concept_ancestor", required=False)
    if ancestor is not None:
        read_file_as_text(con, ancestor, "omop_concept_ancestor", config)
        sources.append("SELECT descendant_concept_id AS drug_concept_id, ancestor_concept_id AS atc_concept_id "
                       "FROM omop_concept_ancestor")
    relationship = find_cdm_table(root, "concept_relationship", required=False)
    if relationship is not None:
        read_file_as_text(con, relationship, "omop_concept_relationship", config)
        sources.append("SELECT concept_id_1 AS drug_concept_id, concept_id_2 AS atc_concept_id "
                       "FROM omop_concept_relationship")
    if not sources:
        con.execute("CREATE OR REPLACE TEMP TABLE omop_atc (drug_concept_id VARCHAR, atc_code VARCHAR)")
        return
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE omop_atc AS
        SELECT r.drug_concept_id, arg_max(c.concept_code, length(c.concept_code)) AS atc_code
        FROM ({' UNION ALL '.join(sources)}) AS r
        JOIN omop_concept AS c ON c.concept_id = r.atc_concept_id AND c.vocabulary_id = 'ATC'
        GROUP BY r.drug_concept_id
        """
    )
