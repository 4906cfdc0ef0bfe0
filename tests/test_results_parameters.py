"""results.json states the run's own parameters: a run with a 48 h co-occurrence window, a 2 h same
draw, a potassium threshold of 3.4 mmol/L and min_cell_size 5 names its window "48h", gives every
row its window_hours, and says "24h" nowhere. Every expected number was worked out by hand from the
rows below."""
from __future__ import annotations

import json

import pytest

from builder import lab, make_db
from pipelines.analyse import build_results
from pipelines.config import load_config

CONFIG = """\
[thresholds]
hypokalemia_mmol_l = 3.4

[windows]
same_draw_hours = 2
cooccurrence_hours = 48

[privacy]
min_cell_size = 5
"""
GROUP = 6  # patients per kind below: every count is 0 or at least 6, so min_cell_size 5 hides none


def labs() -> list[dict]:
    """Hypomagnesemia (1.5 mg/dL) at 08:00 for every patient, and potassium in another tube:
    `in_draw_low`: 3.3 mmol/L 1.5 h later (same draw only with 2 h; low only below 3.4);
    `in_draw_345`: 3.45 mmol/L 1.5 h later (low by the default 3.5, not by 3.4);
    `at_30h_low`: 3.3 mmol/L 30 h later (in a 48 h window, not in 24 h);
    `no_k`: no potassium."""
    kinds = (("in_draw_low", "2024-03-01 09:30", "3.3"), ("in_draw_345", "2024-03-01 09:30", "3.45"),
             ("at_30h_low", "2024-03-02 14:00", "3.3"), ("no_k", None, None))
    rows = []
    for i in range(GROUP):
        for kind, k_at, k_value in kinds:
            patient = f"{kind}_{i}"
            rows.append(lab(patient, "2024-03-01 08:00", "MG", "1.5", "mg/dL", specimen_id=f"mg_{patient}"))
            if k_at:
                rows.append(lab(patient, k_at, "K", k_value, "mmol/L", specimen_id=f"k_{patient}"))
    return rows


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parameters")
    (folder / "hypomag.toml").write_text(CONFIG)
    config = load_config(folder / "hypomag.toml")
    assert (config.windows.cooccurrence_hours, config.windows.same_draw_hours) == (48, 2)
    assert (config.thresholds.hypokalemia_mmol_l, config.privacy.min_cell_size) == (3.4, 5)
    return build_results(make_db(folder, labs=labs(), config=config), config)


def pick(rows: list[dict], **labels) -> dict:
    found = [r for r in rows if all(r.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, labels
    return found[0]


def test_windows_are_named_by_the_runs_hours_and_carry_them(results):
    for section in ("cooccurrence", "prevalence_ratios", "sensitivity"):
        assert {(r["window"], r["window_hours"]) for r in results[section]} == {("same_draw", 2.0), ("48h", 48.0)}
    assert results["parameters"]["windows"] == {"same_draw_hours": 2, "cooccurrence_hours": 48}


def test_no_default_window_name_is_left(results):
    text = json.dumps(results)
    assert "24h" not in text and "24 h" not in text


def test_counts_follow_the_48h_window_the_2h_draw_and_the_3_4_threshold(results):
    rows = results["cooccurrence"]
    given_hypomg = {"abnormality": "hypokalemia", "direction": "abnormality_given_hypomg", "level": "result"}
    # 24 hypomagnesemia results; same draw (2 h): the two in-draw kinds measured, the 3.3s low
    assert (pick(rows, window="same_draw", **given_hypomg)["numerator"],
            pick(rows, window="same_draw", **given_hypomg)["denominator"]) == (6, 12)
    # 48 h adds the potassium at 30 h, low
    assert (pick(rows, window="48h", **given_hypomg)["numerator"],
            pick(rows, window="48h", **given_hypomg)["denominator"]) == (12, 18)
    given_k = {"abnormality": "hypokalemia", "direction": "hypomg_given_abnormality", "level": "result"}
    # 12 results below 3.4 (the 3.45s are not); same draw: 6 with magnesium, all low; 48 h: all 12
    same_draw, wide = pick(rows, window="same_draw", **given_k), pick(rows, window="48h", **given_k)
    assert (same_draw["numerator"], same_draw["denominator"], same_draw["mg_tested_fraction"]) == (6, 6, 0.5)
    assert (wide["numerator"], wide["denominator"], wide["mg_tested_fraction"]) == (12, 12, 1.0)
    assert not same_draw["mg_tested_suppressed"] and not wide["mg_tested_suppressed"]
    sensitivity = pick(results["sensitivity"], abnormality="hypokalemia", direction="hypomg_given_abnormality",
                       mg_threshold_mg_dl=1.7, window="48h")
    assert (sensitivity["numerator"], sensitivity["denominator"], sensitivity["window_hours"]) == (12, 12, 48.0)
