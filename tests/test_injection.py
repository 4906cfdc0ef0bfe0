"""Injection attempts through the names a user controls: column names become SQL identifiers, so
a quote in one (CSV header or Parquet schema) is refused before any SQL is built."""
from __future__ import annotations

import duckdb
import pytest

from builder import LAB_COLUMNS, MED_COLUMNS, lab, med, write_csv
from pipelines.config import Config
from pipelines.db import connect, create_parameter_tables
from pipelines.errors import InputError
from pipelines.ingest import ingest_generic


def evil(target) -> str:
    """A column name that would close the identifier and write a file if pasted into SQL."""
    return f'value" AS x FROM (SELECT 1); COPY (SELECT 1) TO \'{target}\'; --'


def _inputs(folder, lab_columns):
    folder.mkdir()
    write_csv(folder / "medications.csv", MED_COLUMNS, [med("p", "2024-01-01 08:00", "KCl")])
    return folder


def test_quote_in_a_parquet_column_name_is_refused(tmp_path):
    folder = _inputs(tmp_path / "in", LAB_COLUMNS)
    name = evil(tmp_path / "pwned.csv")
    with duckdb.connect() as con:
        con.execute(f"""COPY (SELECT 'p' AS patient_id, '2024-01-01 08:00' AS collected_at, 'MG' AS analyte,
                     '1.2' AS value, 'mg/dL' AS unit, 'x' AS "{name.replace('"', '""')}") TO '{folder / 'labs.parquet'}'""")
    con = connect(":memory:", Config())
    create_parameter_tables(con, Config())
    with pytest.raises(InputError, match="holds a quote"):
        ingest_generic(con, folder, {}, Config())
    assert not (tmp_path / "pwned.csv").exists()
    assert not (tmp_path / "pwned.csv").exists()


def test_quote_in_a_csv_header_is_refused(tmp_path):
    folder = _inputs(tmp_path / "in", LAB_COLUMNS)
    write_csv(folder / "labs.csv", (*LAB_COLUMNS, evil(tmp_path / "pwned.csv")), [lab("p", "2024-01-01 08:00", "MG", "1.2", "mg/dL")])
    con = connect(":memory:", Config())
    create_parameter_tables(con, Config())
    with pytest.raises(InputError, match="holds a quote"):
        ingest_generic(con, folder, {}, Config())
    assert not (tmp_path / "pwned.csv").exists()
