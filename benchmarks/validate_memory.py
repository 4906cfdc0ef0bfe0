"""Great Expectations validation inside DuckDB on a 5M-row generated table: time and peak memory.

    .venv/bin/python benchmarks/validate_memory.py [5M]

A first process loads the data and builds the normalised tables into a DuckDB file; a second,
fresh process runs only the 'normalise' suites (GX's SQL engine through the DuckDB adapter) and
reports its wall time and peak resident memory, so the figure is the validation's alone. GX's
DuckDB connections get the run's memory_limit (1 GB here), so a larger table spills instead of
growing.
Compare with the size of the table: nothing is copied into pandas.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from common import ROOT, dataset, peak_rss_of, python_snippet

BUILD = """
from pipelines.config import Config
from pipelines.db import connect, create_parameter_tables
from pipelines.ingest import ingest
from pipelines.models import NORMALISE_MODELS, build_models
cfg = Config()
con = connect({db!r}, cfg)
create_parameter_tables(con, cfg)
ingest(con, 'generic', {folder!r}, cfg)
build_models(con, NORMALISE_MODELS)
print(con.execute('SELECT count(*) FROM stg_lab_rows').fetchone()[0], con.execute('SELECT count(*) FROM int_lab_results').fetchone()[0])
con.close()
"""

VALIDATE = """
import time
from pathlib import Path
from pipelines.config import Config, Engine
from pipelines.validate import run_suites, _gx
_gx()
t = time.perf_counter()
summaries = run_suites(Path({db!r}), 'normalise', Config(engine=Engine(memory_limit='1GB')))
n = sum(len(s['expectations']) for s in summaries)
print('validated', n, 'expectations in', round(time.perf_counter() - t, 2), 's')
"""


def main(label: str) -> None:
    folder = dataset(label, "parquet")
    db = Path(tempfile.mkdtemp()) / "v.duckdb"
    rows = python_snippet(BUILD.format(db=str(db), folder=str(folder)))[2].split()
    print(f"{label}: stg_lab_rows {int(rows[0]):,} rows, int_lab_results {int(rows[1]):,} rows; "
          f"database {db.stat().st_size / 1e6:.0f} MB")
    seconds, peak, _ = peak_rss_of([sys.executable, "-c", VALIDATE.format(db=str(db))])
    print(f"normalised suites (GX in DuckDB): {seconds:.1f} s wall including GX import, peak RSS {peak / 1e6:.0f} MB")
    baseline, base_peak, _ = peak_rss_of([sys.executable, "-c", "import great_expectations, duckdb, sqlalchemy"])
    print(f"(GX + DuckDB imports alone: {baseline:.1f} s, peak RSS {base_peak / 1e6:.0f} MB)")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main(sys.argv[1] if len(sys.argv) > 1 else "5M")
