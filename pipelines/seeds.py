"""Seed tables (sql/seeds/*.csv): analyte codes, unit factors, ranges, drug classes, references.

They are loaded into DuckDB as `ref_<stem>` tables, read as text by DuckDB itself (so that
sodium's canonical name `NA` stays a string), and read here for the few values Python needs.
"""
from __future__ import annotations

import csv
from functools import lru_cache

from pipelines.paths import SEEDS_DIR

# Column types of each seed; every other column is text.
SEED_TYPES: dict[str, dict[str, str]] = {
    "analytes": {"plausible_low": "DOUBLE", "plausible_high": "DOUBLE"},
    "unit_factors": {"factor": "DOUBLE"},
    "reference_sets": {"value": "DOUBLE"},
}


@lru_cache(maxsize=None)
def read_seed(stem: str) -> tuple[dict[str, str], ...]:
    """All rows of one seed CSV as dicts of text (no NA-to-null conversion)."""
    with open(SEEDS_DIR / f"{stem}.csv", newline="", encoding="utf-8") as f:
        return tuple(csv.DictReader(f))


def unit_factor(analyte: str, unit: str) -> float:
    """The plan's exact conversion factor from `unit` to the analyte's canonical unit."""
    for row in read_seed("unit_factors"):
        if row["analyte"] == analyte and row["unit"] == unit.strip().lower():
            return float(row["factor"])
    raise KeyError(f"no conversion factor for {analyte} in {unit}")


def load_seeds(con) -> None:
    """Create one `ref_<stem>` table per seed CSV in the DuckDB connection."""
    for path in sorted(SEEDS_DIR.glob("*.csv")):
        types = SEED_TYPES.get(path.stem, {})
        header = next(csv.reader(open(path, encoding="utf-8")))
        columns = ", ".join(f"'{c}': '{types.get(c, 'VARCHAR')}'" for c in header)
        con.execute(
            f"CREATE OR REPLACE TABLE ref_{path.stem} AS "
            f"SELECT * FROM read_csv(?, header = true, columns = {{{columns}}}, nullstr = '')",
            [str(path)],
        )
