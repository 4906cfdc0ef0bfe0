"""Generated data with planted edge cases: the generic input the identity test (tests/test_identity.py)
and the engine parity tests run on.

`write_edge_cases(folder)` writes labs.csv and medications.csv: a small generated population
(pipelines/generate.py: faults of every kind, skew-free) plus hand-placed patients E1-E10 at the
boundaries the definitions draw (docs/definitions.md sections 1-5):

- E1  partners exactly 24 h before and after a low magnesium (inside), and 24 h + 1 min after (outside)
- E2  a partner exactly 1 h after (same draw), one 1 h + 1 min after (not), one of the same specimen 5 h after
- E3  ties at the patient's earliest time: a hypo and a normal magnesium at one time, result ids that
      order one way as numbers and the other as text
- E4  an exact duplicate row, and the same key with another specimen (not a duplicate)
- E5  blank specimen ids
- E6  every (analyte, unit) of the unit_factors seed once
- E7  total calcium low but normal once corrected for albumin, at the magnesium's time
- E8  ionized calcium on whole blood; a whole-blood potassium (out of scope)
- E9  low potassium exactly 72 h apart (one episode) and 72 h + 1 min later (a new one), magnesium
      checked 12 h in, a magnesium supplement and a potassium supplement during it
- E10 censored values (<, >, <=)
"""
from __future__ import annotations

import csv
from pathlib import Path

from pipelines.generate import generate

PLANTED_LABS: list[dict[str, str]] = [
    # E1: exact 24 h
    {"patient_id": "E1", "collected_at": "2024-03-01 08:00:00", "analyte": "MG", "value": "1.5", "unit": "mg/dL"},
    {"patient_id": "E1", "collected_at": "2024-03-02 08:00:00", "analyte": "K", "value": "3.0", "unit": "mmol/L"},
    {"patient_id": "E1", "collected_at": "2024-02-29 08:00:00", "analyte": "NA", "value": "128", "unit": "mmol/L"},
    {"patient_id": "E1", "collected_at": "2024-03-02 08:01:00", "analyte": "PHOS", "value": "1.5", "unit": "mg/dL"},
    # E2: exact 1 h, and the same specimen 5 h later
    {"patient_id": "E2", "collected_at": "2024-04-01 10:00", "analyte": "MG", "value": "0.6", "unit": "mmol/L",
     "specimen_id": "E2S1"},
    {"patient_id": "E2", "collected_at": "2024-04-01 11:00", "analyte": "K", "value": "3.1", "unit": "mmol/L"},
    {"patient_id": "E2", "collected_at": "2024-04-01 11:01", "analyte": "CA", "value": "7.5", "unit": "mg/dL"},
    {"patient_id": "E2", "collected_at": "2024-04-01 15:00", "analyte": "NA", "value": "130", "unit": "mmol/L",
     "specimen_id": "E2S1"},
    # E3: ties at the earliest time
    {"patient_id": "E3", "collected_at": "2024-05-01 06:00", "analyte": "MG", "value": "1.4", "unit": "mg/dL",
     "result_id": "90000010"},
    {"patient_id": "E3", "collected_at": "2024-05-01 06:00", "analyte": "MG", "value": "2.0", "unit": "mg/dL",
     "result_id": "900002"},
    {"patient_id": "E3", "collected_at": "2024-05-01 06:00", "analyte": "K", "value": "3.2", "unit": "mmol/L",
     "result_id": "900003"},
    {"patient_id": "E3", "collected_at": "2024-05-01 06:00", "analyte": "K", "value": "4.2", "unit": "mmol/L",
     "result_id": "900004"},
    # E4: duplicates
    {"patient_id": "E4", "collected_at": "2024-06-01 09:00", "analyte": "MG", "value": "0.55", "unit": "mmol/L",
     "specimen_id": "E4S1"},
    {"patient_id": "E4", "collected_at": "2024-06-01 09:00", "analyte": "MG", "value": "0.55", "unit": "mmol/L",
     "specimen_id": "E4S1"},
    {"patient_id": "E4", "collected_at": "2024-06-01 09:00", "analyte": "MG", "value": "0.55", "unit": "mmol/L",
     "specimen_id": "E4S2"},
    {"patient_id": "E4", "collected_at": "2024-06-01 09:00", "analyte": "K", "value": "3.4", "unit": "mmol/L",
     "specimen_id": "E4S1"},
    # E5: blank specimens
    {"patient_id": "E5", "collected_at": "2024-07-01 12:00", "analyte": "MG", "value": "0.62", "unit": "mmol/L",
     "specimen_id": ""},
    {"patient_id": "E5", "collected_at": "2024-07-01 12:00", "analyte": "PHOS", "value": "0.5", "unit": "mmol/L",
     "specimen_id": ""},
    {"patient_id": "E5", "collected_at": "2024-07-02 12:00", "analyte": "K", "value": "3.3", "unit": "mmol/L"},
    {"patient_id": "E5", "collected_at": "2024-07-02 13:00", "analyte": "K", "value": "3.6", "unit": "mmol/L"},
    # E7: corrected calcium (total 2.0 mmol/L, albumin 25 g/L: corrected 2.3)
    {"patient_id": "E7", "collected_at": "2024-08-01 07:00", "analyte": "MG", "value": "1.6", "unit": "mg/dL"},
    {"patient_id": "E7", "collected_at": "2024-08-01 07:00", "analyte": "CA", "value": "8.0", "unit": "mg/dL"},
    {"patient_id": "E7", "collected_at": "2024-08-01 07:00", "analyte": "ALB", "value": "2.5", "unit": "g/dL"},
    # E8: ionized calcium on whole blood; whole-blood potassium is out of scope
    {"patient_id": "E8", "collected_at": "2024-08-02 07:00", "analyte": "MG", "value": "0.6", "unit": "mmol/L"},
    {"patient_id": "E8", "collected_at": "2024-08-02 07:00", "analyte": "ICA", "value": "1.0", "unit": "mmol/L",
     "fluid": "whole blood"},
    {"patient_id": "E8", "collected_at": "2024-08-02 07:00", "analyte": "K", "value": "3.0", "unit": "mmol/L",
     "fluid": "whole blood"},
    # E9: episodes at exactly 72 h
    {"patient_id": "E9", "collected_at": "2024-09-01 00:00", "analyte": "K", "value": "3.0", "unit": "mmol/L"},
    {"patient_id": "E9", "collected_at": "2024-09-01 12:00", "analyte": "MG", "value": "0.6", "unit": "mmol/L"},
    {"patient_id": "E9", "collected_at": "2024-09-04 00:00", "analyte": "K", "value": "3.2", "unit": "mmol/L"},
    {"patient_id": "E9", "collected_at": "2024-09-07 00:01", "analyte": "K", "value": "2.4", "unit": "mmol/L"},
    # E10: censored values
    {"patient_id": "E10", "collected_at": "2024-10-01 08:00", "analyte": "MG", "value": "<0.4", "unit": "mmol/L"},
    {"patient_id": "E10", "collected_at": "2024-10-01 08:00", "analyte": "K", "value": "<= 2.5", "unit": "mmol/L"},
    {"patient_id": "E10", "collected_at": "2024-10-01 08:00", "analyte": "NA", "value": ">150", "unit": "mmol/L"},
]

# E6: one in-range value per (analyte, unit) of the unit_factors seed, in canonical units
CANONICAL_VALUE = {"MG": 0.6, "K": 3.2, "NA": 130.0, "PHOS": 0.7, "CA": 2.0, "ICA": 1.0, "ALB": 30.0}

PLANTED_MEDS: list[dict[str, str]] = [
    {"patient_id": "E9", "start_at": "2024-09-01 14:00", "stop_at": "2024-09-01 16:00", "drug": "Magnesium Sulfate",
     "route": "IV"},
    {"patient_id": "E9", "start_at": "2024-09-01 01:00", "stop_at": "2024-09-01 03:00", "drug": "Potassium Chloride",
     "route": "IV"},
    {"patient_id": "E1", "start_at": "2024-03-01 07:00", "stop_at": "2024-03-03 07:00", "drug": "Furosemide",
     "route": "IV"},
]


def every_unit_rows(seed_csv: Path) -> list[dict[str, str]]:
    """E6: one result per (analyte, unit) of the seed, each a minute apart."""
    rows = []
    with open(seed_csv, newline="", encoding="utf-8") as f:
        for minute, unit in enumerate(csv.DictReader(f)):
            value = CANONICAL_VALUE[unit["analyte"]] / float(unit["factor"])
            rows.append({"patient_id": "E6", "collected_at": f"2024-11-01 08:{minute:02d}",
                         "analyte": unit["analyte"], "value": f"{value:.4f}", "unit": unit["unit"]})
    return rows


def append_rows(path: Path, rows: list[dict[str, str]]) -> None:
    """Append `rows` to a CSV, with the file's columns plus any new ones (earlier rows blank there)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        old = list(reader)
        columns = list(reader.fieldnames or [])
    for row in rows:
        columns += [c for c in row if c not in columns]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(old)
        writer.writerows(rows)


def write_edge_cases(folder: Path, patients: int = 300, seed: int = 20241201) -> Path:
    """Generated patients plus the planted ones, as labs.csv and medications.csv in `folder`."""
    from pipelines.paths import SQL_DIR

    generate(patients, seed, folder, fmt="csv")
    append_rows(folder / "labs.csv", PLANTED_LABS + every_unit_rows(SQL_DIR / "seeds" / "unit_factors.csv"))
    append_rows(folder / "medications.csv", PLANTED_MEDS)
    return folder
