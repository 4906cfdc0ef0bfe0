"""The engine's configuration (`[engine] name`, `spark_master`, `spark_settings`, `hypomag run --engine`):
checked before anything runs, one line and exit 2 when wrong; no Spark needed."""
from __future__ import annotations

import pytest

from builder import hypomag
from pipelines.config import Config, load_config
from pipelines.errors import ConfigError
from pipelines.paths import DATA_SAMPLES_DIR
from pipelines.spark.session import REQUIRED, session_settings


def write(tmp_path, text: str):
    path = tmp_path / "hypomag.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_default_engine_is_duckdb_on_local_2():
    engine = Config().engine
    assert (engine.name, engine.spark_master, engine.spark_settings) == ("duckdb", "local[2]", {})


def test_a_spark_configuration_loads_with_its_free_form_settings(tmp_path):
    config = load_config(write(tmp_path, '[engine]\nname = "spark"\nspark_master = "spark://10.0.0.5:7077"\n'
                                         '[engine.spark_settings]\n"spark.executor.memory" = "2g"\n'
                                         '"spark.sql.shuffle.partitions" = 64\n"spark.dynamicAllocation.enabled" = true\n'))
    assert config.engine.name == "spark" and config.engine.spark_master == "spark://10.0.0.5:7077"
    assert config.engine.spark_settings == {"spark.executor.memory": "2g", "spark.sql.shuffle.partitions": "64",
                                            "spark.dynamicAllocation.enabled": "true"}
    assert session_settings(config.engine.spark_settings)["spark.sql.shuffle.partitions"] == "64"


@pytest.mark.parametrize("text,key", [
    ('[engine]\nname = "polars"\n', "engine.name"),
    ('[engine]\nspark_master = "http://host:7077"\n', "engine.spark_master"),
    ('[engine]\nspark_settings = ["spark.executor.memory=2g"]\n', "engine.spark_settings"),
    ('[engine.spark_settings]\n"spark.x" = { nested = 1 }\n', "engine.spark_settings"),
])
def test_a_bad_engine_setting_names_its_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(write(tmp_path, text))


def test_settings_the_sql_relies_on_cannot_be_overridden():
    assert session_settings({})["spark.sql.session.timeZone"] == "UTC"
    assert session_settings({"spark.sql.session.timeZone": "utc"})["spark.sql.session.timeZone"] == "UTC"
    for key in REQUIRED:
        with pytest.raises(ConfigError, match=key):
            session_settings({key: "something else"})


@pytest.mark.parametrize("args,message", [
    (["--engine", "polars"], "--engine 'polars': expected one of duckdb, spark"),
    (["--engine", "spark", "--incremental"], "the nightly inbox (--incremental, serve) runs on DuckDB only"),
])
def test_the_cli_refuses_an_engine_it_cannot_run(tmp_path, args, message):
    proc = hypomag("run", "--source", "generic", "--input", str(DATA_SAMPLES_DIR), "--db", str(tmp_path / "h.duckdb"),
                   "--out", str(tmp_path / "out"), *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
