"""CSV reading with a fixed dialect: malformed lines become rows with `parse_error`, never a guess.

Every file here is written byte by byte; the expected rows, positions and counts were worked out
by hand from those bytes.
"""
from __future__ import annotations

import dataclasses
import gzip
import time

import duckdb
import pytest

from pipelines.config import Config, Csv
from pipelines.db import connect, create_parameter_tables
from pipelines.errors import InputError, ValidationFailed
from pipelines.ingest import create_raw_tables, ingest_generic, ingest_inbox

HEADER = b"patient_id,collected_at,analyte,value,unit,care_unit\n"
AT = b"2024-01-01 08:00:00"


def lab_line(patient: str, value: str = "0.7", care_unit: str = '""') -> bytes:
    return b",".join([patient.encode(), AT, b"magnesium", value.encode(), b"mmol/L", care_unit.encode()]) + b"\n"


def config(fraction: float = 0.5, **csv) -> Config:
    """Defaults, with a lenient malformed-line gate unless a test is about the gate."""
    base = Config()
    return dataclasses.replace(base, csv=Csv(**csv),
                               validation=dataclasses.replace(base.validation, max_malformed_fraction=fraction))


def write_input(folder, labs: bytes, name: str = "labs.csv", delimiter: str = ","):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(gzip.compress(labs) if name.endswith(".gz") else labs)
    (folder / "medications.csv").write_text(delimiter.join(["patient_id", "start_at", "drug"]) + "\n")
    return folder


def ingest(folder, cfg: Config):
    con = connect(":memory:", cfg)
    create_parameter_tables(con, cfg)
    files = ingest_generic(con, folder, cfg.columns, cfg)
    return con, files[0]


def rows(con, columns: str = "patient_id, value, care_unit, parse_error"):
    return {r[0]: r[1:] for r in con.execute(f"SELECT source_row, {columns} FROM raw_labs ORDER BY source_row").fetchall()}


def test_unterminated_quote_is_one_malformed_row_and_later_rows_keep_their_positions(tmp_path):
    # row 3's value opens a quote that is never closed; every other row has a quoted empty care unit
    labs = HEADER + lab_line("p1") + lab_line("p2") + lab_line("p3", '"0.9') + lab_line("p4") \
        + lab_line("p5", care_unit='"ICU"') + lab_line("p6")
    con, read = ingest(write_input(tmp_path / "in", labs), config())
    assert rows(con) == {
        1: ("p1", "0.7", None, None),
        2: ("p2", "0.7", None, None),
        3: (None, None, None, "unterminated or stray quote (column 'value')"),
        4: ("p4", "0.7", None, None),
        5: ("p5", "0.7", "ICU", None),
        6: ("p6", "0.7", None, None),
    }
    assert read.rows_read == 6
    assert con.execute("SELECT count(*) FROM raw_labs WHERE care_unit = '\"\"' OR patient_id LIKE '%\"%'").fetchone()[0] == 0
    # row ids stay unique and follow the positions
    assert con.execute("SELECT list(row_id ORDER BY source_row) FROM raw_labs").fetchone()[0] == [1, 2, 3, 4, 5, 6]


def test_two_stray_quotes_and_a_quoted_line_break(tmp_path):
    # row 2 holds a legitimate quoted line break (one row over two lines); rows 3 and 6 open quotes
    labs = HEADER + lab_line("p1") + lab_line("p2", care_unit='"ward\nA"') + lab_line('"p3') + lab_line("p4") \
        + lab_line("p5") + lab_line("p6", '"1.0') + lab_line("p7")
    con, read = ingest(write_input(tmp_path / "in", labs), config())
    got = rows(con, "patient_id, care_unit, parse_error IS NOT NULL")
    assert got == {1: ("p1", None, False), 2: ("p2", "ward\nA", False), 3: (None, None, True), 4: ("p4", None, False),
                   5: ("p5", None, False), 6: (None, None, True), 7: ("p7", None, False)}
    assert read.rows_read == 7


def test_too_many_and_too_few_fields(tmp_path):
    labs = HEADER + lab_line("p1") + lab_line("p2", care_unit='"ICU","extra"') \
        + b"p3," + AT + b",magnesium,0.8,mmol/L\n" + lab_line("p4")
    con, read = ingest(write_input(tmp_path / "in", labs), config())
    assert rows(con) == {
        1: ("p1", "0.7", None, None),
        2: (None, None, None, "too many fields"),
        3: (None, None, None, "too few fields (column 'care_unit')"),
        4: ("p4", "0.7", None, None),
    }
    assert read.rows_read == 4


def test_invalid_utf8_is_one_malformed_row(tmp_path):
    labs = HEADER + lab_line("p1") + lab_line("p2", "0.\xff".encode("latin-1").decode("latin-1")).replace(
        "0.\xff".encode("utf-8"), b"0.\xff") + lab_line("p3")
    assert b"0.\xff," in labs
    con, read = ingest(write_input(tmp_path / "in", labs), config())
    assert rows(con) == {
        1: ("p1", "0.7", None, None),
        2: (None, None, None, "invalid encoding (column 'value')"),
        3: ("p3", "0.7", None, None),
    }
    assert read.rows_read == 3


def test_semicolon_delimiter_from_the_config(tmp_path):
    # a decimal comma inside a field: only the configured delimiter splits fields
    labs = b"patient_id;collected_at;analyte;value;unit\n" \
        b"p1;2024-01-01 08:00:00;magnesium;0,7;mmol/L\n" \
        b'p2;2024-01-01 09:00:00;magnesium;"0,8";mmol/L\n'
    con, read = ingest(write_input(tmp_path / "in", labs, delimiter=";"), config(delimiter=";"))
    assert rows(con, "patient_id, value, parse_error") == {1: ("p1", "0,7", None), 2: ("p2", "0,8", None)}
    assert read.rows_read == 2
    # the same file with the default comma has no patient_id column: an input error naming it
    with pytest.raises(InputError, match="required column 'patient_id' is missing"):
        ingest(write_input(tmp_path / "in", labs), config())


def test_too_many_malformed_rows_is_a_blocking_failure_naming_the_first(tmp_path):
    # 2 malformed of 100 rows = 2% > 1% (the default gate); the first is row 40
    lines = [lab_line(f"p{i}") for i in range(1, 101)]
    lines[39] = lab_line("p40", care_unit='"ICU","x"')
    lines[69] = lab_line("p70", '"0.7')
    folder = write_input(tmp_path / "in", HEADER + b"".join(lines))
    with pytest.raises(ValidationFailed) as failed:
        ingest(folder, dataclasses.replace(Config(), csv=Csv()))
    message = str(failed.value)
    assert failed.value.exit_code == 1
    assert "labs.csv: 2 of 100 rows are malformed (2.0%" in message
    assert "the first is row 40: too many fields" in message
    assert "\n" not in message and "ICU" not in message
    # one malformed row of 100 (1%) is within the gate
    lines[69] = lab_line("p70")
    con, read = ingest(write_input(tmp_path / "ok", HEADER + b"".join(lines)), Config())
    assert read.rows_read == 100
    assert con.execute("SELECT count(parse_error) FROM raw_labs").fetchone()[0] == 1


def test_a_2_mb_header_line_is_an_input_error_before_duckdb_reads_it(tmp_path):
    folder = write_input(tmp_path / "in", b"patient_id," + b"x" * (2 << 20) + b"\n" + lab_line("p1"))
    started = time.monotonic()
    with pytest.raises(InputError, match=r"labs\.csv: the first line is longer than 1 MB") as failed:
        ingest(folder, Config())
    assert failed.value.exit_code == 2
    assert time.monotonic() - started < 5


def test_csv_gz_with_a_stray_quote(tmp_path):
    labs = HEADER + lab_line("p1") + lab_line("p2", '"0.7') + lab_line("p3") + lab_line("p4", care_unit='"ICU"')
    con, read = ingest(write_input(tmp_path / "in", labs, "labs.csv.gz"), config())
    assert rows(con, "patient_id, care_unit, parse_error") == {
        1: ("p1", None, None),
        2: (None, None, "unterminated or stray quote (column 'value')"),
        3: ("p3", None, None),
        4: ("p4", "ICU", None),
    }
    assert read.rows_read == 4


def test_gz_header_guard(tmp_path):
    folder = write_input(tmp_path / "in", b"a" * (2 << 20), "labs.csv.gz")
    with pytest.raises(InputError, match="first line is longer than 1 MB"):
        ingest(folder, Config())


def test_ragged_row_does_not_hide_the_header(tmp_path):
    # a short first data row used to make the sniffer report present columns as missing
    labs = HEADER + b"p1,2024-01-01\n" + lab_line("p2")
    con, read = ingest(write_input(tmp_path / "in", labs), config())
    assert rows(con, "patient_id, parse_error") == {1: (None, "too few fields (column 'analyte')"), 2: ("p2", None)}
    assert read.rows_read == 2


def test_a_truly_missing_required_column_names_file_and_column(tmp_path):
    labs = b"patient_id,collected_at,analyte,value\np1,2024-01-01 08:00:00,magnesium,0.7\n"
    with pytest.raises(InputError, match=r"labs\.csv: required column 'unit' is missing"):
        ingest(write_input(tmp_path / "in", labs), Config())


def test_incremental_database_without_parse_error_gains_the_column(tmp_path):
    cfg = config()
    con = connect(":memory:", cfg)
    create_parameter_tables(con, cfg)
    create_raw_tables(con)
    for table in ("raw_labs", "raw_medications"):
        con.execute(f"ALTER TABLE {table} DROP COLUMN parse_error")
    con.execute("INSERT INTO raw_labs (row_id, source_file, source_row, patient_id) VALUES (1, 'old.csv', 1, 'p0')")
    write_input(tmp_path / "inbox", HEADER + lab_line("p1") + lab_line("p2", care_unit='"a","b"'))
    ingest_inbox(con, tmp_path / "inbox", {}, cfg)
    got = con.execute("SELECT row_id, source_row, patient_id, parse_error FROM raw_labs ORDER BY row_id").fetchall()
    assert got == [(1, 1, "p0", None), (2, 1, "p1", None), (3, 2, None, "too many fields")]


def test_parquet_keeps_its_row_numbers(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    con = duckdb.connect()
    con.execute(
        "COPY (SELECT * FROM (VALUES ('p1', '2024-01-01 08:00:00', 'magnesium', '0.7', 'mmol/L'), "
        "('p2', '2024-01-01 08:00:00', 'magnesium', '0.8', 'mmol/L')) "
        "AS t(patient_id, collected_at, analyte, value, unit)) TO ? (FORMAT parquet)",
        [str(folder / "labs.parquet")],
    )
    (folder / "medications.csv").write_text("patient_id,start_at,drug\n")
    con, read = ingest(folder, Config())
    assert rows(con, "patient_id, value, parse_error") == {1: ("p1", "0.7", None), 2: ("p2", "0.8", None)}
    assert read.rows_read == 2
