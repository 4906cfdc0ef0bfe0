"""Fixed start-up cost: `hypomag run` on an empty input (header-only files), end to end.

    .venv/bin/python benchmarks/startup.py [--server]

An empty input has no magnesium result, so the run stops at the blocking expectation (exit 1)
after every fixed cost has been paid: Python imports, Prefect's temporary API, the flow and its
task runs, GX's import and context, DuckDB. The time of each part is printed too, and which of the
heavy libraries the run imported. With --server the same run is also timed against a standing
Prefect server (`prefect server start`, as the nightly deployment runs): no temporary API to boot.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from common import python_snippet, standing_server, timed

# Libraries a run imports only in the step that needs them: an empty run should load none but GX's own
# (GX's import loads scipy.stats, for one of its expectations).
HEAVY = ("scipy.stats", "statsmodels", "polars", "plotly.graph_objs", "openpyxl", "xlsxwriter", "pyarrow.parquet")


def empty_input() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="hypomag-empty-"))
    inputs = folder / "input"  # outputs must not be inside the input (path safety)
    inputs.mkdir()
    (inputs / "labs.csv").write_text("patient_id,collected_at,analyte,value,unit\n")
    (inputs / "medications.csv").write_text("patient_id,start_at,drug\n")
    return folder


def run_empty(env: dict | None = None) -> float:
    folder = empty_input()
    seconds, _ = timed([sys.executable, "-m", "pipelines.cli", "run", "--source", "generic", "--input",
                        str(folder / "input"), "--out", str(folder / "out"), "--db", str(folder / "empty.duckdb")],
                       env=env)
    return seconds


def imported_by_the_run() -> list[str]:
    """The HEAVY modules loaded by the time an empty run ends (the CLI in-process, its exit caught)."""
    folder = empty_input()
    code = (
        "import sys\nsys.argv = ['hypomag', 'run', '--source', 'generic', '--input', "
        f"{str(folder / 'input')!r}, '--out', {str(folder / 'out')!r}, '--db', {str(folder / 'e.duckdb')!r}]\n"
        "from pipelines.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print('IMPORTED:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    line = [t for t in python_snippet(code)[2].splitlines() if t.startswith("IMPORTED:")][-1]  # not the run's lines
    return [m for m in line.removeprefix("IMPORTED:").split(",") if m]


def main() -> None:
    seconds = run_empty()
    print(f"hypomag run on an empty input: {seconds:.1f} s (exit 1: no magnesium result, a blocking expectation)")
    if "--server" in sys.argv[1:]:
        server, url = standing_server()
        try:
            run_empty({"PREFECT_API_URL": url})  # the server's first flow run registers the flow: not timed
            seconds = run_empty({"PREFECT_API_URL": url})
        finally:
            server.terminate()
            server.wait(timeout=30)
        print(f"the same against a standing Prefect server (the nightly deployment's case): {seconds:.1f} s")
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
    loaded = imported_by_the_run()
    by_gx = python_snippet(f"import sys, great_expectations\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))")[2]
    by_gx = [m for m in by_gx.strip().split(",") if m]
    print(f"  of {', '.join(HEAVY)}: the empty run imported {', '.join(loaded) or 'none'}; "
          f"GX's own import loads {', '.join(by_gx) or 'none'}")


if __name__ == "__main__":
    main()
