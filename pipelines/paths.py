"""Where the project's non-Python parts live (the package is installed in editable mode)."""
from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = PROJECT_ROOT / "sql"
SEEDS_DIR = SQL_DIR / "seeds"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
REPORTS_DIR = PROJECT_ROOT / "reports"
DATA_SAMPLES_DIR = PROJECT_ROOT / "data_samples"
