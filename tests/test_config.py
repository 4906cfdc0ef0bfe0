"""Configuration: one TOML file, typed and validated, defaults from the analysis plan."""
from __future__ import annotations

import pytest

from pipelines.config import Config, load_config
from pipelines.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "hypomag.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_analysis_plans():
    cfg = load_config(None)
    assert cfg.thresholds.hypomagnesemia_mg_dl == 1.7
    assert cfg.windows.same_draw_hours == 1 and cfg.windows.cooccurrence_hours == 24
    assert cfg.audit.episode_gap_hours == 72 and cfg.privacy.min_cell_size == 11
    assert cfg.schedule.cron == "0 2 * * *" and cfg.schedule.timezone == "UTC"
    assert cfg.canonical_thresholds()["hypomagnesemia_mmol_l"] == 1.7 * 0.4114


def test_contract_example_loads(tmp_path):
    cfg = load_config(write(tmp_path, """
[thresholds]
hypomagnesemia_mg_dl = 1.6
[windows]
same_draw_hours = 1
cooccurrence_hours = 48
[audit]
episode_gap_hours = 72
[privacy]
min_cell_size = 5
[schedule]
cron = "30 3 * * *"
timezone = "Europe/London"
"""))
    assert cfg.thresholds.hypomagnesemia_mg_dl == 1.6 and cfg.windows.cooccurrence_hours == 48.0
    assert cfg.privacy.min_cell_size == 5 and cfg.schedule.timezone == "Europe/London"


@pytest.mark.parametrize("text,message", [
    ("[thresholds]\nhypomagnesemia = 1.7\n", r"thresholds.hypomagnesemia: unknown key"),
    ("[threshold]\nx = 1\n", r"unknown section \[threshold\]"),
    ("[thresholds]\nhypokalemia_mmol_l = 'low'\n", r"thresholds.hypokalemia_mmol_l: expected a number"),
    ("[privacy]\nmin_cell_size = 10.5\n", r"privacy.min_cell_size: expected a whole number"),
    ("[analysis]\nhypocalcemia_definition = 'albumin'\n", r"analysis.hypocalcemia_definition: must be one of"),
    ("[analysis]\nsensitivity_mg_thresholds_mg_dl = [1.5, 'x']\n", r"sensitivity_mg_thresholds_mg_dl\[1\]: expected a number"),
    ("[schedule]\ncron = 'nightly'\n", r"schedule.cron: expected 5 fields"),
    ("[thresholds\n", r"not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_parameters_travel_with_results():
    params = Config().to_dict()
    assert params["analysis"]["sensitivity_mg_thresholds_mg_dl"] == [1.5, 1.6, 1.7, 1.8]
    assert params["canonical_thresholds"]["hypophosphatemia_mmol_l"] == 2.5 * 0.3229
