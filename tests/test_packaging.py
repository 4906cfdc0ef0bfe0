"""The built wheel, not the editable checkout: it carries every module and every file the pipeline
reads (SQL models, seeds, expectation suites, report template, sample data), and once installed
into a fresh virtual environment outside the checkout, `hypomag demo` runs there on its own.

An editable install finds everything through the source tree, so only a wheel shows a package or a
package-data glob missing from pyproject.toml. The wheel is built from a copy of the checkout so
that setuptools' build/ folder neither lands in the checkout nor carries stale files into the wheel.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The bundled sample's figures, as results.json of `hypomag demo` (editable install) reports them.
SAMPLE_LAB_ROWS_READ = 6088
SAMPLE_MG_RESULTS = 610

# What a wheel is not built from: version control, environments, build output, run output.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
    "test-artifacts", "benchmarks", "out", "runs", "*.duckdb*",
)

# (checkout folder, the same folder inside the wheel, the files of it that must ship)
SHIPPED_DATA = (
    ("sql", "pipelines/resources/sql", "**/*.sql"),
    ("sql/seeds", "pipelines/resources/sql/seeds", "*.csv"),
    ("expectations", "pipelines/resources/expectations", "*.json"),
    ("data_samples", "pipelines/resources/data_samples", "*.csv"),
    ("reports", "pipelines/reports", "*.html"),
)
# (checkout folder of Python code, where it lands in the wheel)
PYTHON_PACKAGES = (("pipelines", "pipelines"), ("reports", "pipelines/reports"))


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run one command to completion; on failure the assertion shows the end of its output."""
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(command)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def outside_env(venv: Path, home: Path) -> dict[str, str]:
    """The environment of a user of the installed wheel: its venv first on PATH, nothing of the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv),
               PREFECT_HOME=str(home / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    """A temporary folder that is not inside the checkout."""
    folder = tmp_path_factory.mktemp("packaging")
    assert PROJECT_ROOT not in folder.resolve().parents, folder
    return folder


@pytest.fixture(scope="module")
def wheel(outside) -> Path:
    """The wheel of the current checkout, built from a clean copy of it."""
    source = outside / "source"
    shutil.copytree(PROJECT_ROOT, source, ignore=NOT_SOURCE)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(outside / "dist"), str(source)],
        cwd=outside)
    (built,) = (outside / "dist").glob("hypomag-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(outside, wheel) -> Path:
    """A fresh virtual environment with the wheel installed (not editable), dependencies from the index."""
    venv = outside / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=outside)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile", str(wheel)],
        cwd=outside, env=outside_env(venv, outside))
    return venv


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def missing_from_wheel(names: set[str], folder: str, inside: str, pattern: str) -> list[str]:
    """The checkout's files `folder/pattern` that are not at `inside/...` in the wheel."""
    files = sorted((PROJECT_ROOT / folder).glob(pattern))
    assert files, f"{folder}/{pattern} matches no file in the checkout"
    return [f"{folder}/{p.relative_to(PROJECT_ROOT / folder).as_posix()}" for p in files
            if f"{inside}/{p.relative_to(PROJECT_ROOT / folder).as_posix()}" not in names]


def test_wheel_ships_every_sql_model_seed_suite_template_and_sample(wheel):
    names = wheel_names(wheel)
    for folder, inside, pattern in SHIPPED_DATA:
        missing = missing_from_wheel(names, folder, inside, pattern)
        assert not missing, (f"{wheel.name} lacks {missing}: add them to "
                             "[tool.setuptools] packages / package-data in pyproject.toml")


def test_wheel_ships_every_module_of_every_subpackage(wheel):
    names = wheel_names(wheel)
    missing = [f"{inside}/{p.relative_to(PROJECT_ROOT / folder).as_posix()}" for folder, inside in PYTHON_PACKAGES
               for p in sorted((PROJECT_ROOT / folder).rglob("*.py"))
               if f"{inside}/{p.relative_to(PROJECT_ROOT / folder).as_posix()}" not in names]
    assert not missing, f"{wheel.name} lacks {missing}: list the subpackage in [tool.setuptools] packages"


def test_installed_wheel_reads_its_files_from_the_environment_not_the_checkout(installed, outside):
    work = outside / "paths-cwd"
    work.mkdir()
    names = ("SQL_DIR", "SEEDS_DIR", "EXPECTATIONS_DIR", "DATA_SAMPLES_DIR", "REPORTS_DIR")
    proc = run([str(installed / "bin" / "python"), "-c",
                "import json, pipelines.paths as p; "
                f"print(json.dumps({{n: str(getattr(p, n)) for n in {names!r}}}))"],
               cwd=work, env=outside_env(installed, outside))
    folders = {name: Path(folder) for name, folder in json.loads(proc.stdout).items()}
    for name, folder in folders.items():
        assert installed in folder.parents and folder.is_dir(), f"{name} = {folder}"
    assert (folders["SEEDS_DIR"] / "unit_factors.csv").is_file()
    assert (folders["REPORTS_DIR"] / "template.html").is_file()


def test_installed_wheel_runs_the_demo_outside_the_checkout(installed, outside):
    work = outside / "demo-cwd"
    work.mkdir()
    out = outside / "demo"
    run([str(installed / "bin" / "hypomag"), "demo", "--out", str(out)], cwd=work,
        env=outside_env(installed, outside))
    counts = json.loads((out / "results.json").read_text(encoding="utf-8"))["counts"]
    assert (counts["lab_rows_read"], counts["mg_results"]) == (SAMPLE_LAB_ROWS_READ, SAMPLE_MG_RESULTS)
    assert (out / "report.html").stat().st_size > 0
