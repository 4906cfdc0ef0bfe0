"""`hypomag generate` at scale: wall time and peak memory (it streams chunks of 20,000 patients).

    .venv/bin/python benchmarks/generate_scale.py 10M [100M] [--format csv|parquet]
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from common import DATA, ROWS_PER_PATIENT, SIZES, peak_rss_of


def main(labels: list[str], fmt: str) -> None:
    for label in labels:
        out = Path(tempfile.mkdtemp(prefix=f"gen-{label}-", dir=DATA))
        patients = int(SIZES[label] / ROWS_PER_PATIENT)
        seconds, peak, _ = peak_rss_of([sys.executable, "-m", "pipelines.cli", "generate", "--patients", str(patients),
                                     "--seed", "7", "--out", str(out), "--format", fmt])
        size = sum(p.stat().st_size for p in out.iterdir()) / 1e9
        print(f"generate {label} ({patients:,} patients, {fmt}): {seconds:.0f} s, peak RSS {peak / 1e6:.0f} MB, "
              f"{size:.1f} GB written", flush=True)
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    fmt = "csv" if "--format" in sys.argv and sys.argv[sys.argv.index("--format") + 1] == "csv" else "parquet"
    DATA.mkdir(parents=True, exist_ok=True)
    main([a for a in sys.argv[1:] if a in SIZES] or ["10M"], fmt)
