"""The Spark engine gives the same results.json as DuckDB (docs/spark.md): on data_samples, on the generated
data with planted edge cases (tests/edge_cases.py) and on the MIMIC-IV demo, on Spark local[2] and on a
real standalone cluster (a master and one worker started here from the pyspark installation, on
127.0.0.1, so tasks run in a separate executor JVM), stopped by their process ids.

Counts and text must be equal, floats equal within 1e-9. `parameters.engine` (the engine) and
`parameters.source_path` (the configuration file, when one names the cluster) are the keys that differ. The pipeline runs in this process through its steps (pipelines/stages.py, as the
Prefect flow runs them), so one Spark session serves every run of a module.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from edge_cases import write_edge_cases
from pipelines import steps
from pipelines.paths import DATA_SAMPLES_DIR, PROJECT_ROOT
from pipelines.run_spec import RunSpec
from pipelines.spark import ENGINE_ENV
from pipelines.stages import STAGES

pyspark = pytest.importorskip("pyspark")
pytestmark = pytest.mark.slow

MIMIC_IV = PROJECT_ROOT.parent / "shared" / "data" / "mimic-iv-demo-2.2"
# Keys that name the run's engine and configuration file, not a figure.
ENGINE_KEYS = {("parameters", "engine"), ("parameters", "source_path")}
FLOAT_TOLERANCE = 1e-9


def run_pipeline(tmp: Path, source: str, folder: Path, config_text: str = "") -> dict:
    """One whole run (prepare, every stage with its validation, outputs, publish) into `tmp`; its results.json."""
    config = None
    if config_text:
        config = tmp / "hypomag.toml"
        config.write_text(config_text, encoding="utf-8")
    spec = RunSpec(source=source, input_dir=folder, config_path=config, db_path=tmp / "db" / "h.duckdb",
                   out_dir=tmp / "out")
    run = steps.Run.start(spec)
    try:
        steps.prepare(run)
        for stage in STAGES:
            stage.step(run)
            if stage.validation:
                steps.validate_step(run, stage.validation)
        steps.write_outputs(run)
        steps.publish(run)
    except BaseException:
        steps.abandon(run)
        raise
    return json.loads((tmp / "out" / "results.json").read_text(encoding="utf-8"))


def differences(a, b, path=()) -> list[str]:
    """Where two results.json documents differ: exact for everything but floats (1e-9)."""
    if path in ENGINE_KEYS:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{'.'.join(map(str, path))}: keys {sorted(a.keys() ^ b.keys())}"]
        return [d for k in a for d in differences(a[k], b[k], (*path, k))]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{'.'.join(map(str, path))}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, (*path, i))]
    if isinstance(a, float) and isinstance(b, float):
        same = (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=FLOAT_TOLERANCE,
                                                                 abs_tol=FLOAT_TOLERANCE)
        return [] if same else [f"{'.'.join(map(str, path))}: {a!r} vs {b!r}"]
    return [] if (type(a), a) == (type(b), b) else [f"{'.'.join(map(str, path))}: {a!r} vs {b!r}"]


def assert_same(duckdb_results: dict, spark_results: dict) -> None:
    assert duckdb_results["parameters"]["engine"]["name"] == "duckdb"
    assert spark_results["parameters"]["engine"]["name"] == "spark"
    found = differences(duckdb_results, spark_results)
    assert not found, "results.json differs:\n" + "\n".join(found[:30])


@pytest.fixture(scope="module")
def edge_cases(tmp_path_factory) -> Path:
    return write_edge_cases(tmp_path_factory.mktemp("edge") / "input")


@pytest.fixture(scope="module")
def duckdb_results(tmp_path_factory, edge_cases) -> dict[str, dict]:
    """The default engine's results.json of each data set, computed once per module."""
    os.environ.pop(ENGINE_ENV, None)
    return {name: run_pipeline(tmp_path_factory.mktemp(f"duckdb-{name}"), "generic", folder)
            for name, folder in (("data_samples", DATA_SAMPLES_DIR), ("edge_cases", edge_cases))}


def test_the_comparison_sees_a_changed_count_and_a_changed_float():
    base = {"counts": {"n": 3, "rate": 0.25}, "parameters": {"engine": {"name": "duckdb"}}}
    assert differences(base, {**base, "parameters": {"engine": {"name": "spark"}}}) == []
    assert differences(base, {**base, "counts": {"n": 4, "rate": 0.25}}) == ["counts.n: 3 vs 4"]
    assert differences(base, {**base, "counts": {"n": 3, "rate": 0.25 + 1e-7}})
    assert not differences(base, {**base, "counts": {"n": 3, "rate": 0.25 + 1e-12}})
    assert differences(base, {**base, "counts": {"n": 3.0, "rate": 0.25}}), "an int that became a float is a change"


@pytest.mark.parametrize("name", ["data_samples", "edge_cases"])
def test_spark_local_gives_the_same_results(tmp_path, monkeypatch, duckdb_results, edge_cases, name):
    monkeypatch.setenv(ENGINE_ENV, "spark")
    folder = DATA_SAMPLES_DIR if name == "data_samples" else edge_cases
    spark_results = run_pipeline(tmp_path, "generic", folder)
    assert spark_results["counts"] == duckdb_results[name]["counts"]
    assert_same(duckdb_results[name], spark_results)
    assert not list((tmp_path / "db").glob("*.hypomag/runs/*/spark")), "the inputs handed to Spark are removed"


@pytest.mark.skipif(not (MIMIC_IV / "hosp").is_dir(), reason="../shared/data/mimic-iv-demo-2.2 not present")
def test_spark_local_gives_the_same_results_on_the_mimic_iv_demo(tmp_path, monkeypatch):
    monkeypatch.delenv(ENGINE_ENV, raising=False)
    reference = run_pipeline(tmp_path / "duckdb", "mimic-iv", MIMIC_IV)
    monkeypatch.setenv(ENGINE_ENV, "spark")
    assert_same(reference, run_pipeline(tmp_path / "spark", "mimic-iv", MIMIC_IV))


# --- a standalone cluster: a master and one worker, each its own JVM, on 127.0.0.1 ----------------------

@pytest.fixture(scope="module")
def standalone_cluster(tmp_path_factory):
    """A master (port 7077 when free) and one worker (1 core, 1 GB) started from the pyspark installation
    (pipelines/spark/standalone.py); both stopped by pid when the module ends."""
    from pipelines.spark import standalone
    from pipelines.spark.session import stop_session

    cluster = standalone.start(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        stop_session()  # the application ends before its cluster does
        cluster.stop()
    assert all(p.poll() is not None for p in cluster.processes)


def test_spark_standalone_cluster_gives_the_same_results(tmp_path, monkeypatch, duckdb_results, edge_cases,
                                                        standalone_cluster):
    from pipelines.spark.standalone import driver_settings

    monkeypatch.delenv(ENGINE_ENV, raising=False)
    settings = "".join(f'"{k}" = "{v}"\n' for k, v in driver_settings().items())
    config = f'[engine]\nname = "spark"\nspark_master = "{standalone_cluster.master}"\n[engine.spark_settings]\n{settings}'
    spark_results = run_pipeline(tmp_path, "generic", edge_cases, config)
    assert spark_results["parameters"]["engine"]["spark_master"] == standalone_cluster.master
    assert_same(duckdb_results["edge_cases"], spark_results)
    state = standalone_cluster.state()
    apps = state.get("activeapps", []) + state.get("completedapps", [])
    assert any(a.get("name") == "hypomag" for a in apps), "the run was an application of the cluster"
