"""`hypomag generate`: a deterministic synthetic data set in the generic format.

Vectorised (numpy + polars) and written in chunks of patients, so 100M lab rows never sit in
memory at once. Each patient has a few blood draws; a draw carries a chemistry panel (Mg with
K/Na/PHOS/Ca and sometimes albumin) and sometimes a blood-gas ionized calcium. A latent
"magnesium-depleted" state, drawn per patient with probability `hypomg_share`, lowers magnesium
and makes low K/PHOS/Ca more likely, so hypomagnesemia co-occurs with the other abnormalities.
Units are mixed (mg/dL, mmol/L, mEq/L), analytes are named by canonical names or LOINC codes, and
a small share of rows is made faulty on purpose (censored, non-numeric, implausible, duplicated,
missing patient, bad timestamp, unknown unit, out-of-scope analyte or fluid) so that every
quarantine path is exercised. Drug orders cover every class of docs/definitions.md section 6.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from pipelines.errors import InputError

CHUNK_PATIENTS = 20_000
START = np.datetime64("2024-01-01T00:00:00", "s")
SPAN_DAYS = 700

# analyte: (share of draws measured, normal mean, normal sd, depleted mean, depleted sd) in canonical units
PANEL = {
    "MG": (0.6, 0.86, 0.10, 0.62, 0.09),
    "K": (0.95, 4.05, 0.45, 3.45, 0.50),
    "NA": (0.95, 139.0, 4.0, 135.5, 5.0),
    "PHOS": (0.5, 1.10, 0.20, 0.85, 0.25),
    "CA": (0.7, 2.30, 0.12, 2.12, 0.16),
    "ALB": (0.35, 35.0, 6.0, 32.0, 6.0),
}
ICA = (0.12, 1.18, 0.07, 1.10, 0.08)
# analyte: [(code written, unit written, divide canonical by, decimals, weight)]
WRITTEN = {
    "MG": [("MG", "mg/dL", 0.4114, 1, 0.45), ("19123-9", "mg/dL", 0.4114, 1, 0.15), ("2601-3", "mmol/L", 1, 2, 0.25),
           ("mg", "mEq/L", 0.5, 2, 0.15)],
    "K": [("K", "mEq/L", 1, 1, 0.6), ("2823-3", "mmol/L", 1, 1, 0.4)],
    "NA": [("NA", "mEq/L", 1, 0, 0.6), ("2951-2", "mmol/L", 1, 0, 0.4)],
    "PHOS": [("PHOS", "mg/dL", 0.3229, 1, 0.6), ("14879-1", "mmol/L", 1, 2, 0.4)],
    "CA": [("CA", "mg/dL", 0.2495, 1, 0.6), ("2000-8", "mmol/L", 1, 2, 0.3), ("17861-6", "mg/dL", 0.2495, 1, 0.1)],
    "ALB": [("ALB", "g/dL", 10, 1, 0.7), ("1751-7", "g/L", 1, 0, 0.3)],
    "ICA": [("ICA", "mmol/L", 1, 2, 1.0)],
}
DRUGS = [
    ("Furosemide", "C03CA01", 0.30), ("Bumetanide", "C03CA02", 0.03), ("Hydrochlorothiazide", "C03AA03", 0.10),
    ("Metolazone", "C03BA08", 0.02), ("Pantoprazole Sodium", "A02BC02", 0.30), ("Omeprazole 20mg", "A02BC01", 0.10),
    ("Gentamicin Sulfate", "J01GB03", 0.04), ("Amphotericin B", "J02AA01", 0.01), ("Cisplatin", "L01XA01", 0.01),
    ("Tacrolimus", "L04AD02", 0.03), ("Magnesium Sulfate", "B05XA05", 0.25), ("Magnesium Oxide 400 mg", "A12CC10", 0.08),
    ("Magnesium Citrate", "A06AD19", 0.02), ("Potassium Chloride", "B05XA01", 0.30), ("Potassium Citrate", "A12BA02", 0.02),
    ("Acetaminophen", "N02BE01", 0.40), ("Heparin", "B01AB01", 0.30),
]
FAULTS = {  # share of lab rows made faulty, by kind
    "censored": 0.002, "non_numeric": 0.003, "implausible": 0.001, "duplicate": 0.002,
    "missing_patient": 0.0005, "bad_timestamp": 0.0005, "unknown_unit": 0.0005,
}
OUT_OF_SCOPE_SHARE = 0.02  # glucose rows and urine potassium
MED_FAULT_SHARE = 0.003  # medication orders with a missing patient, and as many with an unreadable start
MG_RARELY_TESTED_SHARE = 0.35  # patients whose panels seldom include magnesium
# Low results that get a repletion order soon after: analyte -> (below, drug, ATC, share, max delay h)
REPLETION = {
    "MG": (0.69, "Magnesium Sulfate", "B05XA05", 0.6, 8),
    "K": (3.4, "Potassium Chloride", "B05XA01", 0.5, 6),
}


START_S = int(START.astype("int64"))


def _fmt_times(seconds) -> pl.Series:
    """Seconds after START as 'YYYY-MM-DD HH:MM:SS' text (vectorised in polars)."""
    return pl.from_epoch(pl.Series(seconds).cast(pl.Int64) + START_S, time_unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")


def _ids(prefix: str, numbers) -> pl.Series:
    """'P123'-style identifiers (vectorised in polars)."""
    return pl.select(pl.concat_str([pl.lit(prefix), pl.Series(numbers).cast(pl.Int64).cast(pl.String)])).to_series()


def _lab_chunk(rng: np.random.Generator, first_patient: int, n_patients: int, hypomg_share: float,
               skewed: bool = False) -> tuple[pl.DataFrame, pl.DataFrame]:
    pids = np.arange(first_patient, first_patient + n_patients)
    depleted = rng.random(n_patients) < hypomg_share
    draws = rng.poisson(4, n_patients) + 1
    if skewed:  # ICU-like skew: 1% of patients carry about half of all results
        hot = rng.random(n_patients) < 0.01
        draws = np.where(hot, rng.poisson(500, n_patients) + 1, draws)
    draw_patient = np.repeat(np.arange(n_patients), draws)
    base = rng.integers(0, SPAN_DAYS * 86400, n_patients)
    gaps = rng.exponential(10 * 3600, draw_patient.size).astype(np.int64)
    starts = np.r_[0, np.cumsum(draws)[:-1]]
    cum = np.cumsum(gaps)
    draw_time = base[draw_patient] + cum - np.repeat(cum[starts], draws)
    draw_time -= draw_time % 60
    draw_ids = np.arange(draw_patient.size)

    # Magnesium is tested selectively: some patients almost never have it in their panel.
    mg_rarely_tested = rng.random(n_patients) < MG_RARELY_TESTED_SHARE
    frames, orders = [], []
    for analyte, spec in [*PANEL.items(), ("ICA", ICA)]:
        share, mean, sd, dmean, dsd = spec
        if analyte == "MG":
            share = np.where(mg_rarely_tested[draw_patient], 0.08, share)
        present = rng.random(draw_patient.size) < share
        idx = draw_ids[present]
        pat = draw_patient[idx]
        dep = depleted[pat]
        canonical = np.where(dep, rng.normal(dmean, dsd, idx.size), rng.normal(mean, sd, idx.size))
        low, high = {"MG": (0.25, 2.0), "K": (1.8, 7.5), "NA": (110, 165), "PHOS": (0.2, 3.0),
                     "CA": (1.2, 3.4), "ALB": (12, 55), "ICA": (0.6, 1.6)}[analyte]
        canonical = np.clip(canonical, low, high)
        options = WRITTEN[analyte]
        choice = rng.choice(len(options), idx.size, p=[o[4] for o in options])
        codes = np.array([o[0] for o in options])[choice]
        units = np.array([o[1] for o in options])[choice]
        divisor = np.array([o[2] for o in options], dtype=float)[choice]
        decimals = np.array([o[3] for o in options])[choice]
        reported = canonical / divisor
        values = np.where(decimals == 0, np.round(reported, 0), np.where(decimals == 1, np.round(reported, 1),
                                                                         np.round(reported, 2)))
        times = draw_time[idx] + (rng.integers(-20, 20, idx.size) * 60 if analyte == "ICA" else 0)
        if analyte in REPLETION:
            threshold, drug, atc, share_treated, max_delay_h = REPLETION[analyte]
            treated = (canonical < threshold) & (rng.random(idx.size) < share_treated)
            start = times[treated] + rng.integers(0, max_delay_h * 60, treated.sum()) * 60
            orders.append(pl.DataFrame({
                "patient_id": _ids("P", pids[pat[treated]]), "s": start.astype(np.int64),
                "e": (start + 4 * 3600).astype(np.int64), "drug": [drug] * int(treated.sum()),
                "atc_code": [atc] * int(treated.sum()), "route": ["IV"] * int(treated.sum()),
            }))
        specimen = _ids("S" if analyte != "ICA" else "G", idx)
        frames.append(pl.DataFrame({
            "patient_id": _ids("P", pids[pat]),
            "t": times.astype(np.int64),
            "analyte": codes,
            "value": pl.Series(values).cast(pl.String),
            "unit": units,
            "specimen_id": specimen,
            "fluid": np.where(analyte == "ICA", "whole blood", np.where(rng.random(idx.size) < 0.5, "serum", "")),
        }))
    labs = pl.concat(frames)
    n = labs.height
    # out-of-scope rows: glucose and urine potassium
    extra = max(1, int(n * OUT_OF_SCOPE_SHARE))
    take = rng.integers(0, n, extra)
    oos = labs[take].with_columns(
        analyte=pl.Series(np.where(rng.random(extra) < 0.7, "GLU", "K")),
        value=pl.Series(np.round(rng.normal(110, 20, extra), 0).astype(str)),
        unit=pl.lit("mg/dL"),
        fluid=pl.Series(np.where(rng.random(extra) < 0.7, "serum", "urine")),
    )
    labs = pl.concat([labs, oos])
    labs = _inject_faults(rng, labs)
    labs = labs.sort(["patient_id", "t", "specimen_id", "analyte"])
    labs = labs.with_columns(collected_at=_fmt_times(labs["t"])).select(
        "patient_id", "collected_at", "analyte", "value", "unit", "specimen_id", "fluid"
    )
    return labs, pl.concat(orders)


def _inject_faults(rng: np.random.Generator, labs: pl.DataFrame) -> pl.DataFrame:
    n = labs.height
    kind = np.full(n, "", dtype=object)
    u = rng.random(n)
    edge = 0.0
    for name, share in FAULTS.items():
        kind[(u >= edge) & (u < edge + share)] = name
        edge += share
    value = labs["value"].to_numpy().astype(object)
    unit = labs["unit"].to_numpy().astype(object)
    pid = labs["patient_id"].to_numpy().astype(object)
    t = labs["t"].to_numpy()
    value[kind == "censored"] = "<0.5"
    value[kind == "non_numeric"] = "HEMOLYZED"
    value[kind == "implausible"] = "999"
    unit[kind == "unknown_unit"] = "mg%"
    pid[kind == "missing_patient"] = ""
    out = labs.with_columns(value=pl.Series(value.astype(str)), unit=pl.Series(unit.astype(str)),
                            patient_id=pl.Series(pid.astype(str)), t=pl.Series(t))
    bad_ts = pl.Series(kind == "bad_timestamp")
    dupes = out.filter(pl.Series(kind == "duplicate"))
    out = pl.concat([out, dupes])
    return out.with_columns(t=pl.when(pl.concat([bad_ts, pl.Series([False] * dupes.height)])).then(pl.lit(-1))
                            .otherwise(pl.col("t")))


def _med_chunk(rng: np.random.Generator, first_patient: int, n_patients: int, repletions: pl.DataFrame) -> pl.DataFrame:
    frames = [repletions]
    for drug, atc, share in DRUGS:
        has = rng.random(n_patients) < share
        pids = np.arange(first_patient, first_patient + n_patients)[has]
        start = rng.integers(0, SPAN_DAYS * 86400, pids.size)
        start -= start % 60
        stop = start + rng.integers(1, 96, pids.size) * 3600
        frames.append(pl.DataFrame({
            "patient_id": _ids("P", pids),
            "s": start, "e": stop, "drug": [drug] * pids.size, "atc_code": [atc] * pids.size,
            "route": np.where(rng.random(pids.size) < 0.5, "IV", "PO"),
        }))
    meds = pl.concat(frames).sort(["patient_id", "s", "drug"])
    meds = meds.with_columns(
        start_at=_fmt_times(meds["s"]), stop_at=_fmt_times(meds["e"])
    ).select("patient_id", "start_at", "stop_at", "drug", "route", "atc_code")
    # a few faulty orders, so the medication quarantine is exercised too
    u = rng.random(meds.height)
    return meds.with_columns(
        patient_id=pl.when(pl.Series(u < MED_FAULT_SHARE)).then(pl.lit("")).otherwise(pl.col("patient_id")),
        start_at=pl.when(pl.Series((u >= MED_FAULT_SHARE) & (u < 2 * MED_FAULT_SHARE)))
        .then(pl.lit("unknown")).otherwise(pl.col("start_at")),
    )


class _Writer:
    """Append chunks to one CSV or Parquet file."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt, self.rows, self._pq, self._csv = path, fmt, 0, None, None

    def write(self, df: pl.DataFrame) -> None:
        if self.fmt == "parquet":
            table = df.to_arrow()
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.path, table.schema)
            self._pq.write_table(table)
        else:
            if self._csv is None:
                self._csv = open(self.path, "wb")
                df.write_csv(self._csv, include_header=True)
            else:
                df.write_csv(self._csv, include_header=False)
        self.rows += df.height

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()
        if self._csv is not None:
            self._csv.close()


def generate(patients: int, seed: int, out_dir: Path, fmt: str = "csv", hypomg_share: float = 0.15,
             skewed: bool = False) -> dict[str, int]:
    """Write labs.<fmt> and medications.<fmt> to out_dir; returns rows written per file.

    skewed: ICU-like data where 1% of patients carry about half of all results (benchmarks).
    """
    if fmt not in ("csv", "parquet"):
        raise InputError(f"--format {fmt!r}: expected csv or parquet")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labs = _Writer(out_dir / f"labs.{fmt}", fmt)
    meds = _Writer(out_dir / f"medications.{fmt}", fmt)
    try:
        for chunk, first in enumerate(range(0, patients, CHUNK_PATIENTS)):
            n = min(CHUNK_PATIENTS, patients - first)
            rng = np.random.default_rng([seed, chunk])
            lab, repletions = _lab_chunk(rng, first + 1, n, hypomg_share, skewed)
            lab = lab.with_columns(
                collected_at=pl.when(pl.col("collected_at").str.starts_with("2023-12-31 23:59:59"))
                .then(pl.lit("2024-13-45 25:61")).otherwise(pl.col("collected_at"))
            )
            labs.write(lab)
            meds.write(_med_chunk(rng, first + 1, n, repletions))
    finally:
        labs.close()
        meds.close()
    return {str(labs.path): labs.rows, str(meds.path): meds.rows}
