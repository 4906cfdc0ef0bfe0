"""The sql/ models as Spark SQL: the pinned sqlglot's DuckDB -> Spark transpilation plus the rewrites
that keep each model's meaning where the two engines differ (docs/spark.md, "What the transpiler changes").

Generated at run time, deterministically (the same SQL, schema and windows give the same text);
tests/test_spark_transpile.py holds a digest of every model's output and fails when the pinned
sqlglot's output changes. Every rewrite works on sqlglot's syntax tree, typed by sqlglot's
annotate_types from the DuckDB schema of the inputs and the models before it (`schema`), so a rewrite
that needs a type (a cast of a float to an integer) finds it rather than guessing:

- epoch(ts): DuckDB's DOUBLE seconds with microseconds; sqlglot gives UNIX_TIMESTAMP (whole seconds, a
  BIGINT) -> CAST(UNIX_MICROS(CAST(ts AS TIMESTAMP_LTZ)) AS DOUBLE) / 1000000D (exact in UTC).
- CAST(float AS integer): DuckDB rounds half to even, Spark truncates -> CAST(BROUND(x) AS ...);
  CAST(decimal AS integer): DuckDB rounds half away from zero -> CAST(ROUND(x) AS ...).
- TRY_CAST(text AS DOUBLE): DuckDB reads digit separators (1_000) and refuses Java's suffixes (12d,
  12f); Spark the reverse -> separators between digits removed, a d/f suffix gives NULL.
- TRY_CAST(text AS TIMESTAMP): DuckDB reads 24:00[:00[.000]] as the next day's midnight, Spark gives
  NULL -> that time is read as 00:00 plus one day.
- a / b -> TRY_DIVIDE(a, b): NULL on a zero divisor, as NULLIF-guarded division gives on DuckDB,
  instead of ANSI mode's error.
- a window frame bounded by a column of a cross-joined per-row parameter table (int_index_windows:
  RANGE BETWEEN w.window_seconds PRECEDING AND ...; Spark takes only a literal, SPARK-51565): the
  SELECT is repeated once per row of that table with the row's value as a literal and a filter on its
  key, and the copies are combined with UNION ALL (docs/portable-sql.md rule 10).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify

from pipelines.models import BUILD_ORDER, model_sql, table_name

Schema = Mapping[str, Mapping[str, str]]
# Parameter tables whose rows a window frame may read its bounds from: table -> its key column.
PER_ROW_TABLES: dict[str, str] = {"param_windows": "window_id"}

INTEGER_TYPES = {exp.DataType.Type.TINYINT, exp.DataType.Type.SMALLINT, exp.DataType.Type.INT,
                 exp.DataType.Type.BIGINT, exp.DataType.Type.INT128,
                 exp.DataType.Type.UTINYINT, exp.DataType.Type.USMALLINT, exp.DataType.Type.UINT,
                 exp.DataType.Type.UBIGINT}
FLOAT_TYPES = {exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT}
TEXT_TYPES = {exp.DataType.Type.VARCHAR, exp.DataType.Type.TEXT, exp.DataType.Type.CHAR}
TIMESTAMP_TYPES = {exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPNTZ, exp.DataType.Type.DATETIME}

# Spark text of the rewrites; `__x` is the operand (a placeholder column replaced by the AST).
EPOCH_SPARK = "CAST(UNIX_MICROS(CAST(__x AS TIMESTAMP_LTZ)) AS DOUBLE) / 1000000D"
# DuckDB's double grammar on Spark: no Java d/f suffix (inf and infinity end in f but are numbers);
# one underscore between two digits is a separator.
TRY_DOUBLE_SPARK = (r"CASE WHEN __x RLIKE '[dDfF]\\s*$' AND NOT __x RLIKE '(?i)inf(inity)?\\s*$' THEN NULL "
                    r"ELSE TRY_CAST(REGEXP_REPLACE(__x, '(?<=[0-9])_(?=[0-9])', '') AS DOUBLE) END")
# DuckDB reads hour 24 (24:00, 24:00:00, 24:00:00.000) as the next day's midnight.
TRY_TIMESTAMP_SPARK = (r"CASE WHEN __x RLIKE '^\\s*[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}[ T]24:00(:00(\\.0*)?)?\\s*$' "
                       r"THEN TRY_CAST(SUBSTRING(TRIM(__x), 1, LENGTH(TRIM(__x)) - LENGTH(REGEXP_EXTRACT(TRIM(__x), "
                       r"'[ T]24:00(:00(\\.0*)?)?$', 0))) AS TIMESTAMP_NTZ) + INTERVAL '1' DAY "
                       r"ELSE TRY_CAST(__x AS TIMESTAMP_NTZ) END")


def model_tables() -> set[str]:
    return {table_name(n) for n in BUILD_ORDER}


def referenced_tables(name: str) -> set[str]:
    """The tables and views a model reads (its CTE names excluded)."""
    tree = sqlglot.parse_one(model_sql(name), read="duckdb")
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    return {t.name for t in tree.find_all(exp.Table) if t.name not in ctes}


def input_tables(names: Iterable[str] = BUILD_ORDER) -> set[str]:
    """The tables the models read that no model builds: raw input, parameter and seed tables."""
    built = model_tables()
    return {t for n in names for t in referenced_tables(n)} - built


def spark_sql(name: str, schema: Schema, per_row: Mapping[str, list[dict[str, Any]]] | None = None) -> str:
    """Model `name` as one Spark SQL SELECT. `schema`: DuckDB column types of every table it reads;
    `per_row`: the rows of PER_ROW_TABLES (needed only by a model whose window frame reads one)."""
    return transpile_sql(model_sql(name), schema, per_row)


def transpile_sql(sql: str, schema: Schema, per_row: Mapping[str, list[dict[str, Any]]] | None = None) -> str:
    """One DuckDB SELECT as Spark SQL with the rewrites of this module (spark_sql for a model)."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    schema_lower = {t: {c.lower(): typ for c, typ in cols.items()} for t, cols in schema.items()}
    tree = qualify(tree, schema=schema_lower, dialect="duckdb", validate_qualify_columns=False,
                   quote_identifiers=True)
    tree = annotate_types(tree, schema=schema_lower, dialect="duckdb")
    tree = _expand_column_frames(tree, per_row or {})
    tree = tree.transform(_rewrite)
    return tree.sql(dialect="spark", pretty=True, unsupported_level=sqlglot.ErrorLevel.RAISE)


def _spark_template(template: str, operand: exp.Expression) -> exp.Expression:
    """A Spark expression from `template` with `__x` replaced by `operand` (each occurrence a copy)."""
    tree = sqlglot.parse_one(template, read="spark")
    return tree.transform(lambda n: operand.copy() if isinstance(n, exp.Column) and n.name == "__x" else n)


def _type_in(node: exp.Expression, types: set) -> bool:
    return node.type is not None and node.type.this in types


def _rewrite(node: exp.Expression) -> exp.Expression:
    """One node's Spark form where the engines' meanings differ (the module docstring lists them)."""
    if isinstance(node, exp.TimeToUnix):
        return exp.Paren(this=_spark_template(EPOCH_SPARK, node.this))
    if isinstance(node, exp.Div):
        return exp.Anonymous(this="TRY_DIVIDE", expressions=[node.this, node.expression])
    if isinstance(node, exp.TryCast) and node.to.this == exp.DataType.Type.DOUBLE and _type_in(node.this, TEXT_TYPES):
        return _spark_template(TRY_DOUBLE_SPARK, node.this)
    if isinstance(node, exp.TryCast) and node.to.this in TIMESTAMP_TYPES and _type_in(node.this, TEXT_TYPES):
        return exp.Paren(this=_spark_template(TRY_TIMESTAMP_SPARK, node.this))
    if isinstance(node, exp.Cast) and not isinstance(node, exp.TryCast) and node.to.this in INTEGER_TYPES:
        if _type_in(node.this, FLOAT_TYPES):
            return exp.Cast(this=exp.Anonymous(this="BROUND", expressions=[node.this]), to=node.to)
        if _type_in(node.this, {exp.DataType.Type.DECIMAL}):
            return exp.Cast(this=exp.Round(this=node.this), to=node.to)
    return node


def _expand_column_frames(tree: exp.Expression, per_row: Mapping[str, list[dict[str, Any]]]) -> exp.Expression:
    """Each SELECT whose window frame is bounded by a column of a PER_ROW_TABLES table becomes the
    UNION ALL of one copy per row of that table: the bound a literal, the row chosen by its key."""
    for select in list(tree.find_all(exp.Select)):
        specs = [w for w in select.find_all(exp.WindowSpec) if w.find_ancestor(exp.Select) is select]
        bounds = [w.args[key] for w in specs for key in ("start", "end") if isinstance(w.args.get(key), exp.Column)]
        if not bounds:
            continue
        aliases = {t.alias_or_name: t.name for t in select.find_all(exp.Table) if t.find_ancestor(exp.Select) is select}
        tables = {aliases.get(c.table) for c in bounds}
        if len(tables) != 1 or next(iter(tables)) not in PER_ROW_TABLES:
            raise ValueError(f"a window frame bounded by {', '.join(c.sql() for c in bounds)}: only a column of "
                             f"one of {', '.join(PER_ROW_TABLES)} can be expanded per row")
        table = next(iter(tables))
        alias = bounds[0].table
        rows = per_row.get(table)
        if not rows:
            raise ValueError(f"the rows of {table} are needed to expand a window frame per row")
        copies = [_one_row_copy(select, alias, PER_ROW_TABLES[table], row) for row in rows]
        union = copies[0]
        for copy in copies[1:]:
            union = exp.Union(this=union, expression=copy, distinct=False)
        select.replace(exp.Subquery(this=union) if not isinstance(select.parent, (exp.CTE, exp.Subquery))
                       else union)
    return tree


def _one_row_copy(select: exp.Select, alias: str, key: str, row: Mapping[str, Any]) -> exp.Select:
    """The SELECT for one parameter row: its frame bounds as literals, filtered on the row's key."""
    copy = select.copy()
    for spec in (w for w in copy.find_all(exp.WindowSpec) if w.find_ancestor(exp.Select) is copy):
        for side in ("start", "end"):
            bound = spec.args.get(side)
            if isinstance(bound, exp.Column) and bound.table == alias:
                spec.set(side, _literal(row[bound.name]))
    condition = exp.EQ(this=exp.column(key, table=alias, quoted=True), expression=_literal(row[key]))
    return copy.where(condition, copy=False)


def _literal(value: Any) -> exp.Expression:
    """A parameter value as a SQL literal: a finite number only (a bound, a key), never text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"a per-row parameter must be a finite number, got {value!r}")
    if isinstance(value, float):
        return exp.cast(exp.Literal.number(repr(value)), "DOUBLE")
    return exp.Literal.number(str(value))
