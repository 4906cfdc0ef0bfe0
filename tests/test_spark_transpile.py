"""The Spark SQL the engine runs (pipelines/spark/transpile.py) is checked, not trusted.

- A snapshot: every model's Spark SQL, made by the pinned sqlglot, has the digest recorded in
  tests/spark_sql_snapshot.json beside the digest of its DuckDB source. A new sqlglot (or a change in
  the rewrites) that changes the output of an unchanged model fails here; so does a changed model,
  whose entry is refreshed once the parity test (tests/test_spark_parity.py) passes:
  HYPOMAG_UPDATE_SPARK_SNAPSHOT=1 .venv/bin/python -m pytest tests/test_spark_transpile.py
- Lint of the output: none of the constructs whose meaning differs survives (UNIX_TIMESTAMP, a frame
  bounded by a column), and int_index_windows is one SELECT per window with literal bounds.
- Each rewrite evaluated on both engines: the same inputs through DuckDB and through the transpiled
  expression on Spark give the same values (hand-picked edge values: 24:00, 1_000, 12d, .5 casts).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
import sqlglot

from pipelines.config import Config
from pipelines.db import connect, create_parameter_tables
from pipelines.ingest import ingest_generic
from pipelines.models import BUILD_ORDER, model_sql
from pipelines.paths import DATA_SAMPLES_DIR, PROJECT_ROOT
from pipelines.spark import engine, transpile

SNAPSHOT = Path(__file__).with_name("spark_sql_snapshot.json")
UPDATE = os.environ.get("HYPOMAG_UPDATE_SPARK_SNAPSHOT") == "1"


@pytest.fixture(scope="module")
def catalog():
    """The DuckDB types of every input and model, and the windows, as a run on data_samples has them."""
    config = Config()
    con = connect(":memory:", config)
    create_parameter_tables(con, config)
    ingest_generic(con, DATA_SAMPLES_DIR, config.columns, config)
    inputs = engine.input_schema(con)
    schema = {**inputs, **engine.model_schema(inputs)}
    per_row = {t: engine._rows(con, t) for t in transpile.PER_ROW_TABLES}
    con.close()
    return schema, per_row


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_sqlglot_is_the_pinned_version():
    pinned = re.search(r'"sqlglot==([^"]+)"', (PROJECT_ROOT / "pyproject.toml").read_text()).group(1)
    assert sqlglot.__version__ == pinned


def test_every_model_transpiles_as_recorded(catalog):
    schema, per_row = catalog
    now = {name: {"source": sha(model_sql(name)), "spark": sha(transpile.spark_sql(name, schema, per_row))}
           for name in BUILD_ORDER}
    if UPDATE:
        SNAPSHOT.write_text(json.dumps(now, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    recorded = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    output_changed = [n for n in now if n in recorded and recorded[n]["source"] == now[n]["source"]
                      and recorded[n]["spark"] != now[n]["spark"]]
    assert not output_changed, (f"the Spark SQL of unchanged models changed (sqlglot or the rewrites): "
                                f"{output_changed}; check tests/test_spark_parity.py, then refresh the snapshot")
    stale = sorted(set(now) ^ set(recorded) | {n for n in now if n in recorded and recorded[n] != now[n]})
    assert not stale, f"models changed since the snapshot: {stale}; run the parity test, then refresh it"


def test_transpiling_is_deterministic(catalog):
    schema, per_row = catalog
    name = "intermediate/int_index_windows"
    assert transpile.spark_sql(name, schema, per_row) == transpile.spark_sql(name, dict(schema), per_row)


@pytest.mark.parametrize("name", BUILD_ORDER)
def test_no_construct_of_changed_meaning_survives(catalog, name):
    schema, per_row = catalog
    spark = transpile.spark_sql(name, schema, per_row)
    assert sqlglot.parse_one(spark, read="spark").named_selects == list(schema[name.split("/")[-1]]), \
        "the same columns in the same order as on DuckDB"
    code = re.sub(r"/\*.*?\*/", "", spark, flags=re.S).upper()
    assert "UNIX_TIMESTAMP" not in code, "epoch() must keep its microseconds"
    assert not re.search(r"(RANGE|ROWS)\s+BETWEEN\s+`", code), "a frame bound must be a literal on Spark"
    assert not re.search(r"(?<![\w_])/(?!\*)", code.replace("/ CAST(1000000 AS DOUBLE)", "")), \
        "divisions go through TRY_DIVIDE"


def test_index_windows_run_once_per_window_with_literal_bounds(catalog):
    schema, per_row = catalog
    spark = transpile.spark_sql("intermediate/int_index_windows", schema, per_row)
    windows = per_row["param_windows"]
    assert len(windows) >= 2
    for w in windows:
        bound = f"CAST({w['window_seconds']!r} AS DOUBLE)"
        assert f"RANGE BETWEEN {bound} PRECEDING AND {bound} FOLLOWING" in spark.upper().replace("\n", " ")
        assert f"`W`.`WINDOW_ID` = {w['window_id']}" in spark.upper()
    assert spark.upper().count("UNION ALL") >= len(windows) - 1


def test_a_frame_bounded_by_another_table_is_refused():
    schema = {"t": {"x": "DOUBLE", "k": "INTEGER"}, "widths": {"w": "DOUBLE"}}
    with pytest.raises(ValueError, match="param_windows"):
        transpile.transpile_sql("SELECT sum(t.x) OVER (ORDER BY t.x RANGE BETWEEN s.w PRECEDING AND s.w FOLLOWING) "
                                "AS v FROM t CROSS JOIN widths AS s", schema)


# --- the rewrites on both engines ---------------------------------------------------------------------

TEXTS = ["12", " 12 ", "1_000", "1__0", "_1", "12d", "12F", "inf", "-Infinity", "nan", "1e3", "+.5", "5.", "0x10",
         "", "abc", "1.0_1", None]
TIMES = ["2024-03-01 08:00", "2024-03-01T08:00:00", "2024-03-01 24:00", "2024-03-01 24:00:00.000",
         "2024-02-29 24:00:00", "2024-12-31 24:00", "2024-03-01 24:00:01", "2024-03-01 24:00:00.5",
         "2024-02-30 08:00", "2024-3-1 08:00", "2024-03-01 08:00:00.1234567", "x", None]
DOUBLES = [2.5, 3.5, -2.5, -3.5, 0.4999, 1.5000001, 1e15 + 0.5, 2024.0 - 1950.5, None]


@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark")
    from pipelines.spark.session import get_session

    return get_session("local[2]", {})


def both(spark, expression: str, column_type: str, values: list) -> tuple[list, list]:
    """`expression` over column x of a one-column table of `values`: DuckDB's and the transpiled Spark's."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE TABLE t (i INTEGER, x {column_type})")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(values)))
    sql = f"SELECT t.i AS i, {expression} AS v FROM t AS t ORDER BY t.i"
    expected = [r[1] for r in con.execute(sql).fetchall()]
    frame = con.sql("SELECT * FROM t").to_arrow_table()
    spark.createDataFrame(frame).createOrReplaceTempView("t")
    got = [r["v"] for r in spark.sql(transpile.transpile_sql(sql, {"t": {"i": "INTEGER", "x": column_type}})).collect()]
    return expected, got


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b


def test_try_cast_text_to_double_reads_what_duckdb_reads(spark):
    expected, got = both(spark, "try_cast(t.x AS DOUBLE)", "VARCHAR", TEXTS)
    assert all(same(a, b) for a, b in zip(expected, got)), list(zip(TEXTS, expected, got))


def test_try_cast_text_to_timestamp_reads_hour_24_as_duckdb_does(spark):
    expected, got = both(spark, "try_cast(t.x AS TIMESTAMP)", "VARCHAR", TIMES)
    assert expected == got, list(zip(TIMES, expected, got))
    assert expected[2] == datetime(2024, 3, 2, 0, 0) and expected[6] is None


def test_cast_of_a_float_to_an_integer_rounds_half_to_even_as_duckdb_does(spark):
    expected, got = both(spark, "CAST(t.x AS BIGINT)", "DOUBLE", DOUBLES)
    assert expected == got, list(zip(DOUBLES, expected, got))
    assert expected[:4] == [2, 4, -2, -4]


def test_epoch_keeps_microseconds(spark):
    times = [datetime(2024, 1, 1, 0, 0, 0, 123457), datetime(1969, 12, 31, 23, 59, 59, 500000),
             datetime(2024, 3, 1, 8, 0), None]
    expected, got = both(spark, "epoch(t.x)", "TIMESTAMP", times)
    assert expected == got and expected[0] == 1704067200.123457


def test_division_by_zero_is_null(spark):
    expected, got = both(spark, "CAST(t.x AS DOUBLE) / NULLIF(t.x - t.x, 0)", "DOUBLE", [1.0, None])
    assert expected == got == [None, None]
    _, unguarded = both(spark, "1 / (t.x - t.x)", "DOUBLE", [1.0])
    assert unguarded == [None], "an unguarded zero divisor gives NULL on Spark (DuckDB 2.0 gives inf)"
