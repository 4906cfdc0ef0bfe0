"""The SQL models: one build order, every file in it once, each file documented, and portable
to Spark SQL through sqlglot (portable-sql.md)."""
from __future__ import annotations

import re

import pytest
import sqlglot
from sqlglot import ErrorLevel, exp

from pipelines.models import BUILD_ORDER, model_path
from pipelines.paths import SQL_DIR

SQL_FILES = sorted(p.relative_to(SQL_DIR).with_suffix("").as_posix() for p in SQL_DIR.rglob("*.sql"))


def test_every_sql_file_is_in_the_build_order_exactly_once():
    assert sorted(BUILD_ORDER) == SQL_FILES
    assert len(set(BUILD_ORDER)) == len(BUILD_ORDER)


def test_layers_build_in_order():
    layers = [name.split("/")[0] for name in BUILD_ORDER]
    rank = {"staging": 0, "intermediate": 1, "marts": 2}
    assert [rank[x] for x in layers] == sorted(rank[x] for x in layers)


@pytest.mark.parametrize("name", BUILD_ORDER)
def test_model_opens_with_its_definition_and_grain(name):
    text = model_path(name).read_text()
    stem = name.split("/")[-1]
    assert text.startswith(f"-- {stem}:"), "first line names the table and its purpose"
    header = "\n".join(line for line in text.splitlines() if line.startswith("--"))
    assert "Grain: one row per" in header, "the header states the grain"
    assert re.search(r"docs/(definitions|contract)\.md section|STYLE", header), "cites the section of docs/ it implements"


@pytest.mark.parametrize("name", BUILD_ORDER)
def test_model_transpiles_to_spark_and_avoids_nonportable_constructs(name):
    sql = model_path(name).read_text()
    statements = sqlglot.parse(sql, read="duckdb")
    assert len([s for s in statements if s is not None]) == 1, "one SELECT per file"
    # a construct Spark lacks raises instead of being dropped with a warning; the Spark text must
    # parse back as one SELECT of the same columns
    spark = sqlglot.transpile(sql, read="duckdb", write="spark", unsupported_level=ErrorLevel.RAISE)
    assert len(spark) == 1
    back = sqlglot.parse_one(spark[0], read="spark")
    assert isinstance(back, exp.Select)
    assert back.named_selects == sqlglot.parse_one(sql, read="duckdb").named_selects
    code = "\n".join(line.split("--")[0] for line in sql.splitlines()).lower()
    for banned in ("date_diff", "datediff", "date_sub", r"age\s*\(", "epoch_ms", "asof", "percentile_cont",
                   "quantile", r"round\s*\(", "dayofweek", "qualify", r"distinct\s+on", r"extract\s*\("):
        assert not re.search(rf"(?<![\w]){banned}", code), f"{banned} is outside the portable subset"


@pytest.mark.parametrize("name", BUILD_ORDER)
def test_no_literal_thresholds_in_models(name):
    code = "\n".join(line.split("--")[0] for line in model_path(name).read_text().splitlines())
    for literal in ("0.4114", "0.3229", "0.2495", "3.5", "135", "1.15", "1.7", "2.5", "8.5", "3600", "86400"):
        assert not re.search(rf"(?<![\w.]){re.escape(literal)}(?![\w.])", code), f"literal {literal} in {name}"


def test_a_model_changes_kind_over_a_database_built_by_an_earlier_version(tmp_path):
    # incremental runs build on the last published database; a model that became a view (or a
    # table again) replaces the other kind of object of the same name
    from pipelines.config import Config
    from pipelines.db import connect, create_parameter_tables
    from pipelines.ingest import ingest_generic
    from pipelines.models import VIEWS, build_models, table_name
    from builder import lab, write_generic

    con = connect(tmp_path / "old.duckdb", Config())
    create_parameter_tables(con, Config())
    view = "intermediate/int_result_bits"
    assert view in VIEWS
    con.execute(f"CREATE TABLE {table_name(view)} AS SELECT 42 AS stale")
    con.execute("CREATE VIEW stg_lab_rows AS SELECT 42 AS stale")
    folder = write_generic(tmp_path / "in", [lab("p1", "2024-03-01 08:00", "MG", "1.5", "mg/dL"),
                                             lab("p1", "2024-03-01 08:00", "K", "3.1", "mmol/L")])
    ingest_generic(con, folder, {})
    build_models(con, BUILD_ORDER)
    kinds = dict(con.execute("SELECT table_name, 'table' FROM duckdb_tables() UNION ALL "
                             "SELECT view_name, 'view' FROM duckdb_views() WHERE NOT internal").fetchall())
    assert kinds[table_name(view)] == "view" and kinds["stg_lab_rows"] == "table"
    # K 3.1 mmol/L: hypokalemia (definition 1) measured (bit 0) and abnormal (bit 24); MG 1.5 mg/dL:
    # measured (48), hypomagnesemia (49), below the grid's 1.6, 1.7 and 1.8 mg/dL (bits 51-53) but not 1.5
    assert con.execute(f"SELECT index_class, bits FROM {table_name(view)} ORDER BY bits").fetchall() == [
        (None, 2**0 + 2**24), ("hypo", 2**48 + 2**49 + 2**51 + 2**52 + 2**53)]
