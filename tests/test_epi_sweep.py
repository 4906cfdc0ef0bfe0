"""Sensitivity sweep over windows and thresholds (docs/definitions.md section 8, Sweep), both directions,
on one patient whose answers were worked out by hand; the run's own cell repeats the co-occurrence row."""
from __future__ import annotations

from builder import lab, make_db
from pipelines.analyse import build_results
from pipelines.config import Config, Privacy, Sweep


def test_sweep_counts_by_hand(tmp_path):
    # Mg 1.5 mg/dL at 08:00; K 3.2 three hours later, K 2.8 thirty hours later
    labs = [lab("p1", "2024-03-01 08:00", "MG", "1.5", "mg/dL"),
            lab("p1", "2024-03-01 11:00", "K", "3.2", "mmol/L"),
            lab("p1", "2024-03-02 14:00", "K", "2.8", "mmol/L")]
    config = Config(privacy=Privacy(min_cell_size=0), sweep=Sweep(windows_hours=(1.0, 6.0, 48.0)))
    results = build_results(make_db(tmp_path, labs=labs, config=config), config)
    sweep = results["sweep"]
    assert sweep["windows_hours"] == [1.0, 6.0, 24.0, 48.0]  # the run's 24 h is added
    cells = {(r["direction"], r["threshold"], r["window_hours"]): (r["numerator"], r["denominator"])
             for r in sweep["rows"] if r["abnormality"] == "hypokalemia"}
    given_mg = {(t, h): cells[("abnormality_given_hypomg", t, h)] for t in (3.0, 3.5) for h in (1.0, 6.0, 24.0, 48.0)}
    assert given_mg == {(3.5, 1.0): (0, 0), (3.5, 6.0): (1, 1), (3.5, 24.0): (1, 1), (3.5, 48.0): (1, 1),
                        (3.0, 1.0): (0, 0), (3.0, 6.0): (0, 1), (3.0, 24.0): (0, 1), (3.0, 48.0): (1, 1)}
    # low Mg among low K: index = K results below the threshold; denominator = Mg within the window
    given_k = {(t, h): cells[("hypomg_given_abnormality", t, h)] for t in (3.0, 3.5) for h in (1.0, 6.0, 24.0, 48.0)}
    assert given_k == {(3.5, 1.0): (0, 0), (3.5, 6.0): (1, 1), (3.5, 24.0): (1, 1), (3.5, 48.0): (2, 2),
                       (3.0, 1.0): (0, 0), (3.0, 6.0): (0, 0), (3.0, 24.0): (0, 0), (3.0, 48.0): (1, 1)}
    for r in sweep["rows"]:  # the run's cell is the co-occurrence row of its direction, 24 h, result level
        if r["is_run_setting"]:
            row = next(c for c in results["cooccurrence"] if (c["abnormality"], c["direction"], c["window"], c["level"])
                       == (r["abnormality"], r["direction"], "24h", "result"))
            assert (r["numerator"], r["denominator"]) == (row["numerator"], row["denominator"])
    assert sum(r["is_run_setting"] for r in sweep["rows"]) == 8  # 4 abnormalities x 2 directions
