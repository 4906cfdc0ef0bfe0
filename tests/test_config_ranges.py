"""Configuration range checks (issue 15): every bad value is a ConfigError naming the key, and no
setting reaches DuckDB as SQL text."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from builder import lab, write_generic
from pipelines.config import Config, Engine, cron_problem, load_config, memory_limit_problem
from pipelines.db import connect
from pipelines.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hypomag.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,key", [
    # not finite (TOML allows nan and inf)
    ("[windows]\ncooccurrence_hours = nan\n", "windows.cooccurrence_hours: must be a finite number"),
    ("[windows]\nsame_draw_hours = inf\n", "windows.same_draw_hours: must be a finite number"),
    ("[analysis]\nsensitivity_mg_thresholds_mg_dl = [1.5, -inf]\n",
     r"analysis.sensitivity_mg_thresholds_mg_dl\[1\]: must be a finite number"),
    ("[validation]\nmax_quarantine_fraction = nan\n", "validation.max_quarantine_fraction: must be a finite number"),
    # windows and hours
    ("[windows]\nsame_draw_hours = -1\n", "windows.same_draw_hours: must be >= 0"),
    ("[windows]\ncooccurrence_hours = 0\n", "windows.cooccurrence_hours: must be > 0"),
    ("[windows]\nsame_draw_hours = 48\n", "windows.cooccurrence_hours: must be at least windows.same_draw_hours"),
    ("[audit]\nepisode_gap_hours = -72\n", "audit.episode_gap_hours: must be > 0"),
    ("[audit]\nmg_check_hours = 0\n", "audit.mg_check_hours: must be > 0"),
    ("[audit]\nrefractory_after_hours = -1\n", "audit.refractory_after_hours: must be > 0"),
    ("[audit]\nexposure_default_hours = 0\n", "audit.exposure_default_hours: must be > 0"),
    # thresholds: positive, plausible, ordered
    ("[thresholds]\nhypomagnesemia_mg_dl = -1.7\n", "thresholds.hypomagnesemia_mg_dl: must be within the plausible"),
    ("[thresholds]\nhypomagnesemia_mg_dl = 0\n", "thresholds.hypomagnesemia_mg_dl: must be within the plausible"),
    # 0.1 mmol/L is magnesium's plausible low: 0.2 mg/dL * 0.4114 = 0.082 mmol/L is below it
    ("[thresholds]\nhypomagnesemia_mg_dl = 0.2\n", "thresholds.hypomagnesemia_mg_dl: must be within the plausible"),
    ("[thresholds]\nhyponatremia_mmol_l = 350\n", "thresholds.hyponatremia_mmol_l: must be within the plausible"),
    ("[thresholds]\nhypocalcemia_mg_dl = 85\n", "thresholds.hypocalcemia_mg_dl: must be within the plausible"),
    ("[thresholds]\nnormomagnesemia_upper_mg_dl = 1.6\n",
     "thresholds.normomagnesemia_upper_mg_dl: must be above thresholds.hypomagnesemia_mg_dl"),
    ("[thresholds]\nsevere_hypokalemia_mmol_l = 3.0\n", "thresholds.severe_hypokalemia_mmol_l: must be below"),
    ("[thresholds]\nmoderate_hypokalemia_mmol_l = 3.6\n", "thresholds.severe_hypokalemia_mmol_l: must be below"),
    ("[analysis]\nsensitivity_mg_thresholds_mg_dl = []\n",
     "analysis.sensitivity_mg_thresholds_mg_dl: must list at least one threshold"),
    ("[analysis]\nsensitivity_mg_thresholds_mg_dl = [1.5, 40]\n",
     r"analysis.sensitivity_mg_thresholds_mg_dl\[1\]: must be within the plausible"),
    ("[analysis]\nalbumin_reference_g_l = 0\n", "analysis.albumin_reference_g_l: must be > 0"),
    # privacy and validation
    ("[privacy]\nmin_cell_size = -1\n", "privacy.min_cell_size: must be >= 0"),
    ("[validation]\nmax_quarantine_fraction = 1.5\n", "validation.max_quarantine_fraction: must be within 0..1"),
    ("[validation]\nmax_malformed_fraction = -0.1\n", "validation.max_malformed_fraction: must be within 0..1"),
    ("[validation]\nmax_out_of_scope_share_ratio = 0.5\n", "validation.max_out_of_scope_share_ratio: must be >= 1"),
    ("[validation]\nmake_blocking = ['labs_colum_analyte']\n",
     r"validation.make_blocking\[0\]: unknown expectation id 'labs_colum_analyte'"),
    ("[validation]\nmake_warning = ['nope']\n", r"validation.make_warning\[0\]: unknown expectation id 'nope'"),
    ("[validation]\nmake_blocking = ['labs_not_empty']\nmake_warning = ['labs_not_empty']\n",
     "validation.make_warning: 'labs_not_empty' is also in validation.make_blocking"),
    # schedule
    ("[schedule]\ncron = '61 2 * * *'\n", "schedule.cron: minute field '61'"),
    ("[schedule]\ncron = '0 24 * * *'\n", "schedule.cron: hour field '24'"),
    ("[schedule]\ncron = '0 2 0 * *'\n", "schedule.cron: day of month field '0'"),
    ("[schedule]\ncron = '0 2 * 13 *'\n", "schedule.cron: month field '13'"),
    ("[schedule]\ncron = '0 2 * * FUN'\n", "schedule.cron: day of week field 'FUN'"),
    ("[schedule]\ncron = '*/0 2 * * *'\n", "schedule.cron: minute field '\\*/0': step must be >= 1"),
    ("[schedule]\ncron = '0 5-1 * * *'\n", "schedule.cron: hour field '5-1': range '5-1' runs backwards"),
    ("[schedule]\ncron = '0 2 * * *; rm -rf /'\n", "schedule.cron: expected 5 fields"),
    ("[schedule]\ntimezone = 'Mars/Olympus_Mons'\n", "schedule.timezone: not an IANA time zone"),
    ("[schedule]\ntimezone = '../../etc/passwd'\n", "schedule.timezone: not an IANA time zone"),
    ("[schedule]\ntimezone = ''\n", "schedule.timezone: not an IANA time zone"),
    # engine
    ("[engine]\nmemory_limit = \"1GB'; COPY (SELECT 1) TO 'x.csv'; --\"\n", "engine.memory_limit: expected a size"),
    ("[engine]\nmemory_limit = 'abc'\n", "engine.memory_limit: expected a size"),
    ("[engine]\nmemory_limit = '4'\n", "engine.memory_limit: expected a size"),
    ("[engine]\nmemory_limit = '1KB'\n", "engine.memory_limit: must be at least 64MB"),
    ("[engine]\nmemory_limit = '120%'\n", "engine.memory_limit: a percentage must be within 0..100"),
    ("[engine]\nthreads = 0\n", "engine.threads: must be >= 1"),
    # CSV dialect and column mapping
    ("[csv]\ndelimiter = ';;'\n", "csv.delimiter: must be one character"),
    ("[csv]\nquote = ''\n", "csv.quote: must be one character"),
    ("[csv]\nescape = \"\\n\"\n", "csv.escape: must be one character"),
    ("[csv]\ndelimiter = '\"'\n", "csv.delimiter: must differ from csv.quote"),
    ("[columns.labs]\npatient_id = '  '\n", "columns.labs.patient_id: must name a column"),
])
def test_bad_value_is_a_config_error_naming_the_key(tmp_path, text, key):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=key) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert info.value.exit_code == 2


@pytest.mark.parametrize("text", [
    "[windows]\nsame_draw_hours = 0\n",  # same timestamp only: allowed
    "[schedule]\ncron = '*/15 0-6,22-23 1,15 JAN-mar mon-FRI'\ntimezone = 'America/New_York'\n",
    "[schedule]\ncron = '0 2 * * 7'\n",  # Sunday as 7
    "[engine]\nmemory_limit = '512 MiB'\nthreads = 1\n",
    "[engine]\nmemory_limit = '1.5gb'\n",
    "[engine]\nmemory_limit = '80%'\n",
    "[validation]\nmake_blocking = ['labs_not_empty']\nmake_warning = ['accounting_identity']\n",
    "[thresholds]\nsevere_hypokalemia_mmol_l = 2.5\nmoderate_hypokalemia_mmol_l = 3.5\n",  # moderate == hypokalemia
    "[csv]\ndelimiter = \"\\t\"\nquote = \"'\"\nescape = \"\\\\\"\n",
])
def test_good_values_load(tmp_path, text):
    load_config(write(tmp_path, text))


def test_every_accepted_memory_limit_is_accepted_by_duckdb():
    con = duckdb.connect()
    for value in ("4GB", "4 gb", "512 MiB", "1.5GiB", "100MB", "1TB", "80%"):
        assert memory_limit_problem(value) is None
        con.execute("SET memory_limit = ?", [value])
    assert cron_problem("0 2 * * *") is None


def test_connect_refuses_an_unchecked_memory_limit_and_threads(tmp_path):
    """A Config built in code skips load_config: connect() checks again and binds the values."""
    target = tmp_path / "pwned.csv"
    bad = Config(engine=Engine(memory_limit=f"1GB'; COPY (SELECT 42) TO '{target}'; SET memory_limit='1GB"))
    with pytest.raises(ConfigError, match="engine.memory_limit"):
        connect(tmp_path / "a.duckdb", bad)
    assert not target.exists() and not (tmp_path / "a.duckdb").exists()
    with pytest.raises(ConfigError, match="engine.threads"):
        connect(tmp_path / "b.duckdb", Config(engine=Engine(threads=0)))
    con = connect(tmp_path / "c.duckdb", Config(engine=Engine(memory_limit="512MiB", threads=1)))
    assert con.execute("SELECT current_setting('memory_limit'), current_setting('threads')").fetchone() == (
        "512.0 MiB", 1)


@pytest.mark.slow
def test_cli_injection_in_memory_limit_exits_2_and_writes_nothing(tmp_path):
    inputs = write_generic(tmp_path / "input", labs=[lab("p1", "2024-03-01 08:00", "MG", "1.5", "mg/dL")])
    target = tmp_path / "pwned.csv"
    config = write(tmp_path, f"[engine]\nmemory_limit = \"1GB'; COPY (SELECT 42) TO '{target}'; --\"\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--source", "generic", "--input", str(inputs),
         "--config", str(config), "--db", str(tmp_path / "h.duckdb"), "--out", str(tmp_path / "out")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "engine.memory_limit" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no pwned.csv, no database, no --out
