"""What one run is asked to do: the run parameters, written once.

The CLI (`run`, `demo`, `validate`, `serve`) builds a RunSpec from its options; the Prefect flow
(pipelines/flows.py) takes the same fields as its parameters and rebuilds the RunSpec from them;
the nightly deployment (pipelines/deploy.py) stores `RunSpec.to_params()` as its parameters.
tests/test_imports.py checks that the three agree. A RunSpec that cannot run is refused when it is
made, before anything starts (ConfigError, exit 2).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import ConfigError
from pipelines.paths import DATA_SAMPLES_DIR

SOURCES = ("generic", "mimic-iv", "omop")
# The nightly inbox (--incremental) takes extracts in the generic layout only.
INCREMENTAL_SOURCES = ("generic",)
PATH_FIELDS = ("input_dir", "config_path", "db_path", "out_dir")


@dataclass(frozen=True)
class RunSpec:
    """One run's parameters. Paths given as text (Prefect's parameters) become Paths.

    source: input layout (SOURCES). input_dir: folder of the input tables, or the inbox when
    incremental. config_path: TOML configuration, None for the defaults of docs/definitions.md.
    db_path: the DuckDB database to (re)build. out_dir: where the outputs are published.
    incremental: the nightly mode: load only extracts not loaded before into db_path and publish
    to out_dir/<run date>/ with `latest` and `index.html`.
    """

    source: str = "generic"
    input_dir: Path = DATA_SAMPLES_DIR
    config_path: Path | None = None
    db_path: Path = Path("out/hypomag.duckdb")
    out_dir: Path = Path("out/run")
    incremental: bool = False

    def __post_init__(self) -> None:
        for name in PATH_FIELDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))  # frozen: set once, while it is made
        check_source(self.source, self.incremental)

    def to_params(self) -> dict[str, Any]:
        """The fields as Prefect parameters (JSON: paths as text), in field order."""
        params = dataclasses.asdict(self)
        for name in PATH_FIELDS:
            if params[name] is not None:
                params[name] = str(params[name])
        return params

    def resolved(self) -> RunSpec:
        """The same run with absolute paths (a served deployment runs from another folder)."""
        return dataclasses.replace(self, **{name: getattr(self, name).resolve() for name in PATH_FIELDS
                                            if getattr(self, name) is not None})


def field_names() -> tuple[str, ...]:
    """The run parameters' names, in order: the flow's and the deployment's parameters."""
    return tuple(f.name for f in dataclasses.fields(RunSpec))


def check_source(source: str, incremental: bool) -> None:
    """The one check of --source: a known layout, and the generic one for the nightly inbox."""
    if source not in SOURCES:
        raise ConfigError(f"--source {source!r}: expected one of {', '.join(SOURCES)}")
    if incremental and source not in INCREMENTAL_SOURCES:
        raise ConfigError(f"--source {source!r}: the nightly inbox (run --incremental, serve) takes "
                          f"{', '.join(INCREMENTAL_SOURCES)} extracts only")
