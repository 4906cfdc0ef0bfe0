"""The nightly Prefect deployment `hypomag-nightly`, defined in code and served by `hypomag serve`.

It runs the pipeline flow on a run specification in incremental mode (an inbox folder), on the
cron schedule and time zone of the config ([schedule], default `0 2 * * *` UTC); its parameters
are the specification's fields (pipelines/run_spec.py). Served deployments need a Prefect server
(`prefect server start`, then PREFECT_API_URL=http://127.0.0.1:4200/api): Prefect's temporary
local API does not run the scheduler.
"""
from __future__ import annotations

from prefect import serve
from prefect.schedules import Cron

from pipelines.config import load_config
from pipelines.flows import hypomag_pipeline
from pipelines.run_spec import RunSpec

DEPLOYMENT_NAME = "hypomag-nightly"


def nightly_deployment(spec: RunSpec):
    """The deployment object: flow, schedule from the config, and the spec (absolute paths) as parameters.

    `spec` is an incremental run specification (`hypomag serve` makes one).
    """
    if not spec.incremental:
        raise ValueError("the nightly deployment runs incremental specifications only")
    config = load_config(spec.config_path)
    return hypomag_pipeline.to_deployment(
        name=DEPLOYMENT_NAME,
        schedule=Cron(config.schedule.cron, timezone=config.schedule.timezone),
        parameters=spec.resolved().to_params(),
        description="hypomag nightly: new inbox extracts (bad files set aside) -> validated DuckDB -> a report per "
                    "run under OUT/<UTC start>/, latest and the history page; Prefect events and artifacts.",
        tags=["hypomag", "nightly"],
    )


def serve_nightly(spec: RunSpec) -> None:
    """Serve the deployment until interrupted (Prefect's Runner polls for scheduled runs)."""
    serve(nightly_deployment(spec))
