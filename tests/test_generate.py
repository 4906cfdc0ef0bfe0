"""`hypomag generate`: deterministic, chunked, realistic enough to exercise every path."""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

from pipelines import generate as gen
from pipelines.models import NORMALISE_MODELS

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    gen.generate(200, 7, tmp_path / "a")
    gen.generate(200, 7, tmp_path / "b")
    gen.generate(200, 8, tmp_path / "c")
    assert sha(tmp_path / "a" / "labs.csv") == sha(tmp_path / "b" / "labs.csv")
    assert sha(tmp_path / "a" / "medications.csv") == sha(tmp_path / "b" / "medications.csv")
    assert sha(tmp_path / "a" / "labs.csv") != sha(tmp_path / "c" / "labs.csv")


def test_committed_sample_is_what_the_documented_command_makes(tmp_path):
    gen.generate(300, 42, tmp_path)
    assert sha(tmp_path / "labs.csv") == sha(PROJECT_ROOT / "data_samples" / "labs.csv")
    assert sha(tmp_path / "medications.csv") == sha(PROJECT_ROOT / "data_samples" / "medications.csv")
    assert (PROJECT_ROOT / "data_samples" / "labs.csv").stat().st_size < 1_000_000


def test_chunks_stream_into_one_file_with_one_header(tmp_path, monkeypatch):
    monkeypatch.setattr(gen, "CHUNK_PATIENTS", 50)
    written = gen.generate(120, 1, tmp_path)
    with open(tmp_path / "labs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == written[str(tmp_path / "labs.csv")]
    assert sum(1 for r in rows if r["patient_id"] == "patient_id") == 0
    patients = {r["patient_id"] for r in rows if r["patient_id"]}
    assert {f"P{i}" for i in (1, 50, 51, 100, 101, 120)} <= patients


def test_parquet_output(tmp_path):
    import duckdb

    written = gen.generate(60, 3, tmp_path, fmt="parquet")
    with duckdb.connect() as con:
        n = con.execute(f"SELECT count(*) FROM '{tmp_path / 'labs.parquet'}'").fetchone()[0]
    assert n == written[str(tmp_path / "labs.parquet")]


def test_generated_data_exercise_every_fate_unit_and_drug_class(tmp_path):
    from builder import scalar
    from pipelines.config import Config
    from pipelines.db import connect, create_parameter_tables
    from pipelines.ingest import ingest_generic
    from pipelines.models import build_models

    gen.generate(2000, 11, tmp_path)
    con = connect(":memory:", Config())
    create_parameter_tables(con, Config())
    ingest_generic(con, tmp_path, {})
    build_models(con, NORMALISE_MODELS)
    reasons = {r[0] for r in con.execute("SELECT DISTINCT reason FROM stg_lab_rows WHERE reason IS NOT NULL").fetchall()}
    assert reasons == {"missing_patient_id", "bad_timestamp", "non_numeric_value", "unknown_unit",
                       "implausible_value", "duplicate"}
    assert scalar(con, "SELECT count(*) FROM stg_lab_rows WHERE status = 'out_of_scope'") > 0
    assert scalar(con, "SELECT count(*) FROM int_lab_results WHERE censored") > 0
    units = {tuple(r) for r in con.execute("SELECT DISTINCT s.analyte, t.unit_key FROM stg_lab_rows AS s "
                                           "JOIN stg_lab_fields AS t ON t.row_id = s.row_id "
                                           "WHERE s.status = 'loaded' AND s.analyte = 'MG'").fetchall()}
    assert units == {("MG", "mg/dl"), ("MG", "mmol/l"), ("MG", "meq/l")}
    atc = {r[0] for r in con.execute("SELECT DISTINCT atc_code FROM stg_medication_rows").fetchall()}
    classes = {r[0] for r in con.execute("SELECT drug_class, pattern FROM ref_drug_classes WHERE match_type = 'atc'").fetchall()
               if any(a.startswith(r[1]) for a in atc)}
    assert classes == {"loop_diuretic", "thiazide", "ppi", "aminoglycoside", "amphotericin_b", "platinum",
                       "calcineurin_inhibitor", "mg_supplement", "k_supplement"}


def test_bad_format_is_a_user_error(tmp_path):
    from pipelines.errors import InputError

    with pytest.raises(InputError, match="expected csv or parquet"):
        gen.generate(10, 1, tmp_path, fmt="xlsx")
