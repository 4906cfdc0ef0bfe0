"""The co-occurrence models' cost: linear in rows, and skew-proof.

    .venv/bin/python benchmarks/models_scaling.py 1M 10M

For each size, an evenly spread data set and an ICU-like skewed one (1% of patients carry about
half of all results) are loaded (ingest + normalise, untimed), then every flag and mart model is
timed in a fresh process. Prints each model's seconds, the skewed/even ratio of the partner-window
model and of all the flag and mart models together, per loaded result (issue 17's target: at most 1.5),
and the partner windows' seconds per million rows (flat = linear).
"""
from __future__ import annotations

import json
import sys

from common import ROOT, dataset, python_snippet

CODE = """
import json, time, tempfile, os
from pipelines.config import Config
from pipelines.db import connect, create_parameter_tables
from pipelines.ingest import ingest
from pipelines.models import NORMALISE_MODELS, FLAG_MODELS, MART_MODELS, build_models, table_name
cfg = Config()
con = connect(os.path.join(tempfile.mkdtemp(), 'm.duckdb'), cfg)
create_parameter_tables(con, cfg)
ingest(con, 'generic', {folder!r}, cfg)
build_models(con, NORMALISE_MODELS)
times = {{}}
for name in FLAG_MODELS + MART_MODELS:
    t = time.perf_counter()
    build_models(con, (name,))
    times[table_name(name)] = time.perf_counter() - t
rows = con.execute('SELECT count(*) FROM int_lab_results').fetchone()[0]
print(json.dumps({{'rows': rows, 'times': times}}))
"""


def measure(folder) -> dict:
    _, _, out = python_snippet(CODE.format(folder=str(folder)))
    return json.loads(out.strip().splitlines()[-1])


def main(sizes: list[str]) -> None:
    for label in sizes:
        even = measure(dataset(label, "parquet"))
        skew = measure(dataset(label, "parquet", skewed=True))
        print(f"== {label}: loaded results even {even['rows']:,}, skewed {skew['rows']:,}")
        print(f"{'model':<28} {'even s':>8} {'skewed s':>9} {'ratio':>6}")
        for name in even["times"]:
            e, s = even["times"][name], skew["times"][name]
            print(f"{name:<28} {e:>8.2f} {s:>9.2f} {s / e if e else float('nan'):>6.2f}")
        pw_even, pw_skew = even["times"]["int_index_windows"], skew["times"]["int_index_windows"]
        print(f"int_index_windows per million loaded results: even {pw_even / even['rows'] * 1e6:.2f} s, "
              f"skewed {pw_skew / skew['rows'] * 1e6:.2f} s; skewed/even per row "
              f"{(pw_skew / skew['rows']) / (pw_even / even['rows']):.2f}", flush=True)
        all_even, all_skew = sum(even["times"].values()), sum(skew["times"].values())
        print(f"every flag and mart model: even {all_even:.2f} s, skewed {all_skew:.2f} s; skewed/even per "
              f"loaded result {(all_skew / skew['rows']) / (all_even / even['rows']):.2f}", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main(sys.argv[1:] or ["1M", "10M"])
