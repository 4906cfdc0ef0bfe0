"""The MIMIC-IV source (hosp module), read where it lies (docs/definitions.md section 1 and 2).

- `hosp/labevents` + `hosp/d_labitems`: the analyte and fluid come from the itemid (seed
  `mimic_iv_items.csv`: Mg 50960, K 50971, Na 50983, phosphate 50970, total Ca 50893, free Ca 50808
  (blood gas, whole blood), albumin 50862; whole-blood K 50822 and Na 50824, out of primary scope),
  never from d_labitems' free-text fluid (which calls serum chemistry "Blood"). Every other itemid
  is out of scope. The value is `valuenum` where present, else the text `value`; the unit is
  `valueuom`, or the item's fixed unit where it is blank; `labevent_id` is the result id and
  `specimen_id` is kept; `charttime` is the collection time.
- `hosp/transfers` (optional) gives each result the care unit the patient was in at charttime.
- `hosp/prescriptions` is the medication table (`starttime`, `stoptime`, `drug`, `route`).
- The identifier guard (identifiers.py) checks every column name of the three tables and scans the
  text values that reach the raw tables: subject_id, hadm_id, specimen_id, valueuom, careunit, drug, route.
Files may be plain `.csv` or `.csv.gz`; DuckDB streams them (a full 13 GB labevents is never held
in Python memory).
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

LABEVENTS_COLUMNS = ("labevent_id", "subject_id", "hadm_id", "specimen_id", "itemid", "charttime", "value",
                     "valuenum", "valueuom")
PRESCRIPTION_COLUMNS = ("subject_id", "hadm_id", "starttime", "stoptime", "drug", "route")


def find_hosp_file(root: Path, stem: str, required: bool = True) -> Path | None:
    hosp = root / "hosp"
    for name in (f"{stem}.csv", f"{stem}.csv.gz"):
        if (hosp / name).is_file():
            return hosp / name
    if required:
        raise InputError(f"{hosp}: MIMIC-IV table {stem} not found (expected {stem}.csv or {stem}.csv.gz)")
    return None


def ingest_mimic_iv(con: duckdb.DuckDBPyConnection, root: Path, config: Config | None = None) -> list[InputFile]:
    """Load labevents and prescriptions (CSVs read with the `[csv]` dialect of `config`)."""
    root = Path(root)
    if not (root / "hosp").is_dir():
        raise InputError(f"{root}: not a MIMIC-IV root (no hosp/ folder)")
    labevents = find_hosp_file(root, "labevents")
    d_labitems = find_hosp_file(root, "d_labitems")
    prescriptions = find_hosp_file(root, "prescriptions")
    transfers = find_hosp_file(root, "transfers", required=False)
    create_raw_tables(con)

    # the item dictionary must hold the items the analysis uses
    read_file_as_text(con, d_labitems, "mimic_d_labitems", config)
    source_columns(con, d_labitems, "mimic_d_labitems", ("itemid", "label"))
    missing = con.execute(
        "SELECT i.itemid FROM ref_mimic_iv_items AS i LEFT JOIN mimic_d_labitems AS d ON d.itemid = i.itemid "
        "WHERE d.itemid IS NULL ORDER BY 1"
    ).fetchall()
    if missing:
        raise InputError(f"{d_labitems}: itemids {', '.join(r[0] for r in missing)} are not in the item dictionary")

    columns = read_file_as_text(con, labevents, "mimic_labevents", config)
    source_columns(con, labevents, "mimic_labevents", LABEVENTS_COLUMNS)
    check_identifiers(con, labevents, "mimic_labevents", columns,
                      scan=["subject_id", "hadm_id", "specimen_id", "valueuom"])
    units = _care_units(con, transfers, config)
    lab_offset = row_offset(con, "raw_labs")
    con.execute(
        f"""
        INSERT INTO raw_labs
        SELECT
            ? + l.source_row, ?, l.source_row,
            l.subject_id,
            l.charttime,
            coalesce(i.analyte, concat('mimic-iv itemid ', l.itemid)),
            coalesce(nullif(trim(l.valuenum), ''), l.value),
            coalesce(nullif(trim(l.valueuom), ''), i.default_unit),
            l.labevent_id,
            l.specimen_id,
            l.hadm_id,
            i.fluid,
            {'u.careunit' if units else 'CAST(NULL AS VARCHAR)'},
            CAST(NULL AS VARCHAR)
        FROM mimic_labevents AS l
        LEFT JOIN ref_mimic_iv_items AS i ON i.itemid = trim(l.itemid)
        {'LEFT JOIN mimic_lab_units AS u ON u.source_row = l.source_row' if units else ''}
        WHERE l.parse_error IS NULL
        """,
        [lab_offset, str(labevents)],
    )
    insert_malformed(con, "mimic_labevents", "raw_labs", labevents, lab_offset)
    lab_rows = con.execute("SELECT count(*) FROM mimic_labevents").fetchone()[0]
    con.execute("DROP TABLE mimic_labevents")

    columns = read_file_as_text(con, prescriptions, "mimic_prescriptions", config)
    source_columns(con, prescriptions, "mimic_prescriptions", PRESCRIPTION_COLUMNS)
    check_identifiers(con, prescriptions, "mimic_prescriptions", columns,
                      scan=["subject_id", "hadm_id", "drug", "route"])
    med_offset = row_offset(con, "raw_medications")
    con.execute(
        """
        INSERT INTO raw_medications
        SELECT ? + source_row, ?, source_row, subject_id, starttime, drug, stoptime, route,
            NULL, NULL, NULL, NULL, hadm_id, parse_error
        FROM mimic_prescriptions
        """,
        [med_offset, str(prescriptions)],
    )
    med_rows = con.execute("SELECT count(*) FROM mimic_prescriptions").fetchone()[0]
    con.execute("DROP TABLE mimic_prescriptions")
    loaded = [
        InputFile("raw_labs", str(labevents), sha256_of(labevents), lab_rows),
        InputFile("raw_medications", str(prescriptions), sha256_of(prescriptions), med_rows),
    ]
    record_loaded(con, loaded)
    return loaded


def _care_units(con: duckdb.DuckDBPyConnection, transfers: Path | None, config: Config | None = None) -> bool:
    """mimic_lab_units(source_row, careunit): the transfer whose [intime, outtime) holds charttime.

    Care units are free text that reaches shared outputs, so transfers is scanned for identifiers.
    """
    if transfers is None:
        return False
    columns = read_file_as_text(con, transfers, "mimic_transfers_text", config)
    source_columns(con, transfers, "mimic_transfers_text", ("subject_id", "careunit", "intime", "outtime"))
    check_identifiers(con, transfers, "mimic_transfers_text", columns, scan=["subject_id", "careunit"])
    con.execute(
        "CREATE OR REPLACE TEMP TABLE mimic_transfers AS SELECT subject_id, careunit, "
        "try_cast(intime AS TIMESTAMP) AS intime, try_cast(outtime AS TIMESTAMP) AS outtime "
        "FROM mimic_transfers_text WHERE nullif(trim(careunit), '') IS NOT NULL "
        "AND try_cast(intime AS TIMESTAMP) IS NOT NULL"
    )
    con.execute("DROP TABLE mimic_transfers_text")
    # As-of join: the latest transfer that started at or before the result (ingest is DuckDB-side
    # code, outside the portable SQL models).
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE mimic_lab_units AS
        SELECT l.source_row, t.careunit
        FROM (SELECT source_row, subject_id, try_cast(charttime AS TIMESTAMP) AS charttime FROM mimic_labevents
              WHERE try_cast(charttime AS TIMESTAMP) IS NOT NULL) AS l
        ASOF JOIN mimic_transfers AS t ON t.subject_id = l.subject_id AND l.charttime >= t.intime
        WHERE t.outtime IS NULL OR l.charttime < t.outtime
        """
    )
    return True
