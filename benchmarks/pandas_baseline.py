"""A baseline a researcher would write by hand: pandas, the same hypokalemia-given-hypomagnesemia
24 h figure (abnormality_given_hypomg, result level), checked to give the same numbers as hypomag.

    .venv/bin/python benchmarks/pandas_baseline.py 1M 10M

The pandas version applies the same loading rules (analyte codes, fluids, censored values, units,
plausibility, duplicates) and then does the obvious thing: merge every low magnesium with every
potassium of the same patient and keep pairs within 24 h. hypomag's time is printed twice: the
whole `hypomag run` (every figure, validation, report, Prefect) and the SQL that computes this
figure (ingest, normalise, flag and partner windows). All three numbers must agree: pandas,
the SQL path, and the figure in the run's results.json.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from common import ROOT, dataset, python_snippet, timed

PANDAS = r"""
import time, pandas as pd, numpy as np, re
t = time.perf_counter()
labs = pd.read_parquet({path!r}).astype(str)
labs = labs.replace({{'None': '', 'nan': ''}})
codes = {{'MG': 'MG', '19123-9': 'MG', '2601-3': 'MG', 'K': 'K', '2823-3': 'K'}}
labs['analyte_c'] = labs['analyte'].str.strip().str.upper().map(codes)
fluid = labs['fluid'].str.strip().str.lower()
labs = labs[labs['analyte_c'].notna() & fluid.isin(['', 'serum', 'plasma', 'serum/plasma'])]
labs = labs[labs['patient_id'].str.strip() != '']
ts = labs['collected_at'].str.strip()
ok_ts = ts.str.match(r'^\d{{4}}-\d{{2}}-\d{{2}}[ T]\d{{2}}:\d{{2}}(:\d{{2}}(\.\d+)?)?$')
labs = labs[ok_ts].copy()
labs['t'] = pd.to_datetime(labs['collected_at'].str.replace('T', ' '), errors='coerce')
labs = labs[labs['t'].notna()]
v = labs['value'].str.strip()
sign = v.str.extract(r'^(<=|>=|<|>)', expand=False).fillna('')
labs['num'] = pd.to_numeric([s[len(g):].strip() for s, g in zip(v, sign)], errors='coerce')
labs = labs[labs['num'].notna()]
unit = labs['unit'].str.strip().str.lower()
factors = {{('MG', 'mg/dl'): 0.4114, ('MG', 'mmol/l'): 1.0, ('MG', 'meq/l'): 0.5, ('K', 'mmol/l'): 1.0, ('K', 'meq/l'): 1.0}}
labs['factor'] = [factors.get(k) for k in zip(labs['analyte_c'], unit)]
labs['unit_key'] = unit
labs = labs[labs['factor'].notna()]
labs['canon'] = labs['num'] * labs['factor'].astype(float)
rng = {{'MG': (0.1, 5.0), 'K': (1.0, 10.0)}}
lo = labs['analyte_c'].map(lambda a: rng[a][0]); hi = labs['analyte_c'].map(lambda a: rng[a][1])
labs = labs[(labs['canon'] >= lo) & (labs['canon'] <= hi)]
labs = labs.drop_duplicates(['patient_id', 'analyte_c', 't', 'num', 'unit_key', 'specimen_id'])
mg = labs[(labs['analyte_c'] == 'MG') & (labs['canon'] < 1.7 * 0.4114)].reset_index(drop=True)
mg['idx'] = np.arange(len(mg))
k = labs[labs['analyte_c'] == 'K'][['patient_id', 't', 'canon']]
pairs = mg[['idx', 'patient_id', 't']].merge(k, on='patient_id', suffixes=('', '_k'))
pairs = pairs[(pairs['t_k'] - pairs['t']).abs() <= pd.Timedelta(hours=24)]
per_index = pairs.assign(low=pairs['canon'] < 3.5).groupby('idx')['low'].any()
print(int(per_index.sum()), int(len(per_index)), time.perf_counter() - t)
"""

HYPOMAG_SQL = """
import time, tempfile, os
from pipelines.config import Config
from pipelines.db import connect, create_parameter_tables
from pipelines.ingest import ingest
from pipelines.models import NORMALISE_MODELS, build_models
t = time.perf_counter()
cfg = Config()
con = connect(os.path.join(tempfile.mkdtemp(), 'b.duckdb'), cfg)
create_parameter_tables(con, cfg)
ingest(con, 'generic', {folder!r}, cfg)
build_models(con, NORMALISE_MODELS + ('intermediate/int_lab_flags', 'intermediate/int_calcium_corrected',
                                      'intermediate/int_result_bits', 'intermediate/int_index_windows'))
num, den = con.execute("SELECT count(*) FILTER (WHERE (i.partner_bits & d.abnormal_bit) <> 0), "
                       "count(*) FILTER (WHERE (i.partner_bits & d.measured_bit) <> 0) "
                       "FROM int_index_windows AS i JOIN param_windows AS w ON w.window_id = i.window_id "
                       "JOIN param_abnormality_definitions AS d ON d.abnormality = 'hypokalemia' "
                       "WHERE w.window_name = '24h' AND i.index_class = 'hypo'").fetchone()
print(num, den, time.perf_counter() - t)
"""


def main(sizes: list[str]) -> None:
    print(f"{'rows':>5} {'pandas s':>9} {'hypomag SQL s':>14} {'ratio':>6} {'hypomag run s':>14} {'ratio':>6}  same numbers")
    for label in sizes:
        folder = dataset(label, "parquet")
        try:
            p_num, p_den, p_s = python_snippet(PANDAS.format(path=str(folder / "labs.parquet")))[2].split()
        except RuntimeError as exc:
            print(f"{label:>5} pandas failed: {str(exc).strip().splitlines()[-1]}")
            continue
        h_num, h_den, h_s = python_snippet(HYPOMAG_SQL.format(folder=str(folder)))[2].split()
        work = Path(tempfile.mkdtemp())
        run_s, _ = timed([sys.executable, "-m", "pipelines.cli", "run", "--source", "generic", "--input", str(folder),
                          "--out", str(work / "out"), "--db", str(work / "b.duckdb")])
        r_num, r_den = run_figure(work / "out" / "results.json")
        same = (p_num, p_den) == (h_num, h_den) == (r_num, r_den)
        print(f"{label:>5} {float(p_s):>9.1f} {float(h_s):>14.1f} {float(p_s) / float(h_s):>6.1f} {run_s:>14.1f} "
              f"{float(p_s) / run_s:>6.1f}  {same} (pandas {p_num}/{p_den}, hypomag SQL {h_num}/{h_den}, "
              f"results.json {r_num}/{r_den})", flush=True)
        shutil.rmtree(work, ignore_errors=True)


def run_figure(results: Path) -> tuple[str, str]:
    """The same figure as the run published it (numerator, denominator), or ('-', '-') if it failed."""
    if not results.is_file():
        return "-", "-"
    for row in json.loads(results.read_text())["cooccurrence"]:
        if (row["abnormality"], row["direction"], row["window"], row["level"]) == (
                "hypokalemia", "abnormality_given_hypomg", "24h", "result"):
            return str(row["numerator"]), str(row["denominator"])
    return "-", "-"


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main(sys.argv[1:] or ["1M", "10M"])
