"""One way through a run: the pipelines package's imports form no cycle, no import inside a
function dodges one, and the run parameters are written once (pipelines/run_spec.py) and are the
flow's and the deployment's parameters; the stage table names every validation stage."""
from __future__ import annotations

import ast
import importlib.util
import inspect
import pkgutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

import pipelines
from pipelines.errors import ConfigError
from pipelines.run_spec import SOURCES, RunSpec, field_names

PACKAGE = "pipelines"
# Imports of a pipelines module inside a function, each there only to defer a slow import, with why.
# Nothing else may import a pipelines module inside a function (it would hide a cycle).
DEFERRED = {
    ("pipelines.cli", "pipelines.flows"): "Prefect's import (seconds) overlaps the temporary API's boot",
    ("pipelines.cli", "pipelines.stages"): "DuckDB and SciPy: `hypomag --help`, config and generate stay fast",
    ("pipelines.cli", "pipelines.deploy"): "Prefect: only `hypomag serve` needs it",
    ("pipelines.cli", "pipelines.generate"): "NumPy and Polars: only `hypomag generate` needs them",
    ("pipelines.cli", "pipelines.inbox"): "DuckDB: only `hypomag validate --incremental` needs it",
    ("pipelines.steps", "pipelines.analyse"): "SciPy's statistics: only a run that reaches the analyse step needs them",
    ("pipelines.spark", "pipelines.spark.engine"): "sqlglot's optimizer and pyspark: only a Spark run needs them",
}


@lru_cache(maxsize=None)
def source_file(name: str) -> Path | None:
    """The .py file of module `name`, or None when it is not a module (a class, a function, ...).

    A dotted name is only looked up under a package, so that no module is imported to find out.
    """
    parent, _, _ = name.rpartition(".")
    if parent and not is_package(parent):
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def is_package(name: str) -> bool:
    path = source_file(name)
    return path is not None and path.name == "__init__.py"


def imports_of(name: str) -> list[tuple[str, int, bool]]:
    """(imported pipelines module, line, inside a function) for every import statement of a module.

    `from X import a` counts as an import of X.a where X.a is a module, else of X; imports under
    `if TYPE_CHECKING:` count as module-level (a layering that needs them upside down is wrong too).
    """
    path = source_file(name)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for a in child.names:
                    target = f"{base}.{a.name}"
                    found.append((target if source_file(target) else base, child.lineno, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return [(target, line, inner) for target, line, inner in found
            if (target == PACKAGE or target.startswith(PACKAGE + ".")) and source_file(target)]


@lru_cache(maxsize=1)
def package_modules() -> tuple[str, ...]:
    """Every module of the package: those under pipelines/ and those it imports from folders that
    the installation maps into it (pipelines.reports is the top-level reports/ folder)."""
    names = [PACKAGE] + [m.name for m in pkgutil.walk_packages(pipelines.__path__, PACKAGE + ".")]
    seen = set(names)
    for name in names:  # grows while it is walked
        for target, _, _ in imports_of(name):
            if target not in seen:
                seen.add(target)
                names.append(target)
    return tuple(sorted(names))


def import_graph(include_functions: bool) -> dict[str, set[str]]:
    return {name: {t for t, _, inner in imports_of(name) if t != name and (include_functions or not inner)}
            for name in package_modules()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (depth-first search, white/grey/black)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "grey"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "grey":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "black"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_walk_finds_the_package_and_its_mapped_folders():
    modules = package_modules()
    for name in ("pipelines.cli", "pipelines.steps", "pipelines.validate", "pipelines.ingest.common",
                 "pipelines.reports.build", "pipelines.run_spec", "pipelines.stages"):
        assert name in modules, name


def test_the_cycle_finder_names_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_pipelines_modules():
    cycle = find_cycle(import_graph(include_functions=False))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_import_inside_a_function_dodges_a_cycle():
    """Imports of pipelines modules inside functions are only the listed deferrals, each with its
    one-line comment; counted in, the graph still has no cycle (so none of them dodges one)."""
    deferred = {}
    for name in package_modules():
        lines = source_file(name).read_text(encoding="utf-8").splitlines()
        for target, line, inner in imports_of(name):
            if inner:
                deferred[(name, target)] = lines[line - 1]
    unlisted = sorted(set(deferred) - set(DEFERRED))
    assert not unlisted, f"imports inside functions (import at module level, or list a deferral with its reason): {unlisted}"
    assert set(DEFERRED) == set(deferred), f"listed deferrals that are gone: {sorted(set(DEFERRED) - set(deferred))}"
    for (name, target), text in deferred.items():
        assert "# deferred" in text, f"{name}: the import of {target} says why it is deferred ({text.strip()!r})"
    cycle = find_cycle(import_graph(include_functions=True))
    assert cycle is None, "import cycle through a function-level import: " + " -> ".join(cycle)


@pytest.mark.parametrize("module,allowed", [
    ("pipelines.cli", ()),  # `hypomag run` launches Prefect's temporary API right after this import
    ("pipelines.flows", ("prefect", "duckdb")),  # the flow's module: GX imports in a thread, SciPy at analyse
])
def test_a_run_imports_heavy_libraries_only_when_a_step_needs_them(module, allowed):
    """docs/performance.md (fixed cost): neither module loads GX, SciPy's statistics, pandas, Polars,
    statsmodels or plotly's figures; only the flow's module loads Prefect and DuckDB."""
    heavy = ("prefect", "great_expectations", "duckdb", "scipy.stats", "pandas", "polars", "statsmodels",
             "plotly.graph_objs", "sqlalchemy", "openpyxl", "xlsxwriter")
    code = f"import sys, {module}; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = [m for m in proc.stdout.strip().split(",") if m]
    assert loaded == list(allowed)


def test_validate_sits_below_steps():
    graph = import_graph(include_functions=True)
    assert graph["pipelines.validate"] <= {"pipelines.paths"}, graph["pipelines.validate"]
    assert "pipelines.validate" in graph["pipelines.steps"]


# --- the run specification: one list of parameters -------------------------------------------

def test_the_flow_parameters_are_the_run_specification():
    from pipelines.flows import hypomag_pipeline

    parameters = inspect.signature(hypomag_pipeline.fn).parameters
    assert tuple(parameters) == field_names()
    assert {name: p.default for name, p in parameters.items()} == RunSpec().to_params()


def test_the_deployment_parameters_are_the_run_specification(tmp_path):
    from pipelines.deploy import nightly_deployment

    spec = RunSpec(source="generic", input_dir=tmp_path / "inbox", config_path=None, db_path=tmp_path / "n.duckdb",
                   out_dir=tmp_path / "reports", incremental=True)
    deployment = nightly_deployment(spec)
    assert tuple(deployment.parameters) == field_names()
    assert RunSpec(**deployment.parameters) == spec.resolved()
    assert deployment.parameters["incremental"] is True


def test_the_spec_round_trips_through_prefect_parameters(tmp_path):
    spec = RunSpec(source="omop", input_dir=tmp_path, config_path=tmp_path / "c.toml", db_path=Path("a.duckdb"),
                   out_dir=Path("o"))
    params = spec.to_params()
    assert all(v is None or isinstance(v, (str, bool)) for v in params.values())
    assert RunSpec(**params) == spec


@pytest.mark.parametrize("source,incremental,message", [
    ("csv", False, "--source 'csv': expected one of generic, mimic-iv, omop"),
    ("mimic-iv", True, "--source 'mimic-iv': the nightly inbox (run --incremental, serve) takes generic extracts only"),
    ("omop", True, "--source 'omop': the nightly inbox"),
])
def test_the_spec_refuses_a_source_it_cannot_run(source, incremental, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunSpec(source=source, incremental=incremental)


def test_every_source_runs_in_full():
    for source in SOURCES:
        assert RunSpec(source=source).source == source


@pytest.mark.parametrize("args", [
    ["serve", "--source", "omop"],
    ["run", "--incremental", "--source", "mimic-iv", "--input", "in"],
])
def test_a_nightly_run_of_another_source_is_refused_at_once(tmp_path, args):
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "takes generic extracts only" in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing started, nothing written


# --- the stage table ----------------------------------------------------------------------------

def test_every_suite_checks_a_stage_of_the_table():
    from pipelines.stages import STAGES, validation_stages
    from pipelines.validate import load_suites

    assert {s["meta"]["stage"] for s in load_suites()} == set(validation_stages())
    names = [s.name for s in STAGES]
    assert len(set(names)) == len(names)
    assert all(s.validation in (None, s.name) for s in STAGES)  # a validation stage is named after its step


def test_the_flow_has_a_task_per_stage():
    from pipelines.flows import STAGE_TASKS
    from pipelines.stages import STAGES

    assert list(STAGE_TASKS) == [s.name for s in STAGES]
    assert all(STAGE_TASKS[s.name].fn is s.step for s in STAGES)
