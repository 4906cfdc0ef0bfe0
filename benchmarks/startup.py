"""Fixed start-up cost: `hypomag run` on an empty input (header-only files), end to end.

    .venv/bin/python benchmarks/startup.py

An empty input has no magnesium result, so the run stops at the blocking expectation (exit 1)
after every fixed cost has been paid: Python imports, Prefect's temporary API, GX's import and
context, DuckDB. The time of each part is printed too.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from common import python_snippet, timed


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="hypomag-empty-"))
    inputs = folder / "input"  # outputs must not be inside the input (path safety)
    inputs.mkdir()
    (inputs / "labs.csv").write_text("patient_id,collected_at,analyte,value,unit\n")
    (inputs / "medications.csv").write_text("patient_id,start_at,drug\n")
    seconds, _ = timed([sys.executable, "-m", "pipelines.cli", "run", "--source", "generic", "--input", str(inputs),
                        "--out", str(folder / "out"), "--db", str(folder / "empty.duckdb")])
    print(f"hypomag run on an empty input: {seconds:.1f} s (exit 1: no magnesium result, a blocking expectation)")
    for label, code in (
        ("import pipelines.cli", "import pipelines.cli"),
        ("import prefect + flow module", "import pipelines.flows"),
        ("import great_expectations", "import great_expectations"),
        ("import duckdb", "import duckdb"),
    ):
        s, _, _ = python_snippet(code)
        print(f"  {label}: {s:.1f} s")
    s, _, _ = python_snippet(
        "import os; os.environ['PREFECT_SERVER_ANALYTICS_ENABLED']='false'\n"
        "from prefect import flow\n@flow\ndef f():\n    return 1\nf()")
    print(f"  a trivial Prefect flow run (temporary local API): {s:.1f} s")


if __name__ == "__main__":
    main()
