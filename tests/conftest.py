"""Shared fixtures. Helpers that tests import (hand-made rows, make_db, the `hypomag` subprocess
wrapper, digest) live in tests/builder.py, which this file puts on the import path."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
sys.path.insert(0, str(Path(__file__).parent))

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`hypomag demo` once per test session (a real Prefect flow on a real DuckDB file)."""
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "demo", "--out", str(out / "demo")], cwd=out,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc
