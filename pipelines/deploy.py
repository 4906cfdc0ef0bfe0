"""The nightly Prefect deployment `hypomag-nightly`, defined in code and served by `hypomag serve`.

It runs the pipeline flow in incremental mode on an inbox folder, on the cron schedule and time
zone of the config ([schedule], default `0 2 * * *` UTC). Served deployments need a Prefect
server (`prefect server start`, then PREFECT_API_URL=http://127.0.0.1:4200/api): Prefect's
temporary local API does not run the scheduler.
"""
from __future__ import annotations

from pathlib import Path

from prefect.schedules import Cron

from pipelines.config import load_config
from pipelines.flows import hypomag_pipeline

DEPLOYMENT_NAME = "hypomag-nightly"


def nightly_deployment(source: str, input_dir: Path, config_path: Path | None, db_path: Path, out_dir: Path):
    """The deployment object: flow, schedule from the config, and absolute paths as parameters."""
    config = load_config(config_path)
    return hypomag_pipeline.to_deployment(
        name=DEPLOYMENT_NAME,
        schedule=Cron(config.schedule.cron, timezone=config.schedule.timezone),
        parameters={
            "source": source,
            "input_dir": str(Path(input_dir).resolve()),
            "config_path": str(Path(config_path).resolve()) if config_path else None,
            "db_path": str(Path(db_path).resolve()),
            "out_dir": str(Path(out_dir).resolve()),
            "incremental": True,
        },
        description="hypomag nightly: new inbox extracts -> validated DuckDB -> dated report, latest and history.",
        tags=["hypomag", "nightly"],
    )


def serve_nightly(source: str, input_dir: Path, config_path: Path | None, db_path: Path, out_dir: Path) -> None:
    """Serve the deployment until interrupted (Prefect's Runner polls for scheduled runs)."""
    from prefect import serve

    serve(nightly_deployment(source, input_dir, config_path, db_path, out_dir))
