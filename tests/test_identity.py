"""Every figure stays as it was: results.json of data_samples, the generated data with planted edge cases
(tests/edge_cases.py) and the MIMIC-IV demo, section by section, against the digests in
tests/identity.json.

A change to the core (a faster formulation, a refactor) must keep every figure; this test is what says
it did. A change that means to change figures (a new definition, a corrected one) updates the digests
on purpose, and names the sections it changed in its commit message:

    HYPOMAG_UPDATE_IDENTITY=1 .venv/bin/python -m pytest tests/test_identity.py

Floats are compared to 10 significant digits (the last bits of a model fit depend on the machine's
linear algebra). `parameters` echoes the configuration (tests/test_results_parameters.py checks it)
and may gain keys; it is left out.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from builder import hypomag
from edge_cases import write_edge_cases
from pipelines.paths import PROJECT_ROOT

GOLDEN = Path(__file__).with_name("identity.json")
UPDATE = os.environ.get("HYPOMAG_UPDATE_IDENTITY") == "1"
MIMIC_IV = PROJECT_ROOT.parent / "shared" / "data" / "mimic-iv-demo-2.2"
NOT_FIGURES = {"parameters"}


def canonical(value):
    """`value` with every float at 10 significant digits, so digests do not depend on the last bits."""
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def section_digests(results: dict) -> dict[str, str]:
    return {key: hashlib.sha256(json.dumps(canonical(value), sort_keys=True).encode()).hexdigest()
            for key, value in sorted(results.items()) if key not in NOT_FIGURES}


def run_results(tmp_path: Path, source: str, folder: Path) -> dict:
    proc = hypomag("run", "--source", source, "--input", str(folder), "--out", str(tmp_path / "out"),
                   "--db", str(tmp_path / "db.duckdb"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))


def check(name: str, results: dict) -> None:
    digests = section_digests(results)
    golden = json.loads(GOLDEN.read_text(encoding="utf-8")) if GOLDEN.is_file() else {}
    if UPDATE:
        golden[name] = digests
        GOLDEN.write_text(json.dumps(golden, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return
    expected = golden.get(name)
    assert expected is not None, f"no digests for {name} in {GOLDEN.name}: run with HYPOMAG_UPDATE_IDENTITY=1"
    changed = sorted(k for k in expected.keys() | digests.keys() if expected.get(k) != digests.get(k))
    assert not changed, f"{name}: results.json sections changed: {', '.join(changed)}"


def test_data_samples_figures_are_unchanged(tmp_path):
    check("data_samples", run_results(tmp_path, "generic", PROJECT_ROOT / "data_samples"))


def test_planted_edge_case_figures_are_unchanged(tmp_path):
    folder = write_edge_cases(tmp_path / "input")
    check("edge_cases", run_results(tmp_path, "generic", folder))


@pytest.mark.skipif(not (MIMIC_IV / "hosp").is_dir(), reason="../shared/data/mimic-iv-demo-2.2 not present")
def test_mimic_iv_demo_figures_are_unchanged(tmp_path):
    check("mimic_iv_demo", run_results(tmp_path, "mimic-iv", MIMIC_IV))


def test_the_digests_see_a_changed_figure():
    """A figure changed in the tenth digit, or a count by one, changes its section's digest."""
    results = {"counts": {"mg_results": 1000}, "statistics": [{"rate": 0.123456789}]}
    before = section_digests(results)
    assert section_digests({**results, "counts": {"mg_results": 1001}})["counts"] != before["counts"]
    assert section_digests({**results, "statistics": [{"rate": 0.123456788}]})["statistics"] != before["statistics"]
    assert section_digests({**results, "statistics": [{"rate": 0.12345678900001}]}) == before
