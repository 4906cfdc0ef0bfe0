"""Telling someone, the Prefect way: each run's Prefect artifacts and events.

Artifacts (the flow run's Artifacts tab, and the UI's Artifacts page under their keys): a markdown
summary (headline rates with their 95% intervals, rejected files, data-quality warnings, drift
flags, where the report is) and a link to the report. Events, for Prefect automations to act on:

| event                    | resource id                    | when                                         |
|--------------------------|--------------------------------|----------------------------------------------|
| `hypomag.run.published`  | `hypomag.run.<run id>`         | a run published (also with rejected files)   |
| `hypomag.run.failed`     | `hypomag.run.<run id>`         | a run failed; nothing new published          |
| `hypomag.file.rejected`  | `hypomag.file.<sha256>`        | one per extract refused by a file-level check|
| `hypomag.rate.drifted`   | `hypomag.rate.<measure>`       | one per headline rate outside the previous interval |
| `hypomag.feed.stale`     | `hypomag.inbox.<inbox path>`   | no new file for `max_hours_without_data`     |

Payloads carry facts only: names, counts and rates as results.json publishes them (small cells
withheld), reasons with row numbers; never a row's values. Emitting needs a Prefect API (the run's
temporary one or a server); a notification that cannot be sent is logged and never fails a run.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pipelines.publish import headline

LOG = logging.getLogger("hypomag")

SUMMARY_KEY = "hypomag-run-summary"
REPORT_KEY = "hypomag-report"
WARNING_LIMIT = 20


def _emit(event: str, resource_id: str, name: str, payload: dict[str, Any]) -> None:
    from prefect.events import emit_event

    emit_event(event=event, resource={"prefect.resource.id": resource_id, "prefect.resource.name": name},
               payload=json.loads(json.dumps(payload, default=str)))


def _safely(what: str, send, *args: Any) -> None:
    """Run one notification; a failure to notify is a warning, never the run's failure."""
    try:
        send(*args)
    except Exception as exc:  # noqa: BLE001 - notifications are best effort by design
        LOG.warning("could not send %s to Prefect: %s", what, " ".join(str(exc).split())[:200])


def headline_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The headline rates with intervals (pipelines/publish.py headline), as plain rows."""
    return [{"measure": name, "rate": v["prevalence"], "ci_low": v["ci_low"], "ci_high": v["ci_high"]}
            for name, v in headline(results).items()]


def warnings_of(validation: dict[str, Any]) -> list[dict[str, Any]]:
    """Failed non-blocking expectations: id, suite and count (no examples)."""
    return [{"id": e["id"], "suite": s["suite"], "unexpected_count": e["unexpected_count"]}
            for s in validation.get("suites", []) for e in s["expectations"] if not e["success"] and not e["blocking"]]


def _pct(value: float | None) -> str:
    return "withheld" if value is None else f"{100 * value:.1f}%"


def summary_markdown(run_name: str, outcome: str, report: Path | None, rates: list[dict[str, Any]],
                     rejected: list[dict[str, Any]], warnings: list[dict[str, Any]], flags: list[dict[str, Any]],
                     feed: dict[str, Any]) -> str:
    """The run's summary artifact (markdown)."""
    lines = [f"# hypomag run {run_name}: {outcome}", ""]
    if report is not None:
        lines += [f"Report: [{report}]({report.as_uri()})", ""]
    if rates:
        lines += ["| headline rate | value | 95% interval |", "|---|---|---|"]
        lines += [f"| {r['measure']} | {_pct(r['rate'])} | "
                  f"{'withheld' if r['ci_low'] is None else _pct(r['ci_low']) + ' - ' + _pct(r['ci_high'])} |"
                  for r in rates]
        lines.append("")
    lines.append(f"**Rejected files**: {len(rejected)}")
    lines += [f"- `{r['path']}`: {r['check']}: {r['figure']}" for r in rejected]
    lines.append(f"\n**Data-quality warnings**: {len(warnings)}")
    lines += [f"- {w['id']} ({w['suite']}): {w['unexpected_count']} unexpected" for w in warnings[:WARNING_LIMIT]]
    lines.append(f"\n**Drift flags**: {len(flags)}")
    lines += [f"- {f['measure']} {_pct(f['rate'])} is outside the previous run's 95% interval "
              f"{_pct(f['previous_ci_low'])} - {_pct(f['previous_ci_high'])}" for f in flags]
    if feed:
        state = "stale" if feed.get("stale") else "fresh"
        lines.append(f"\n**Feed**: {feed.get('new_files', 0)} new file(s); last file loaded "
                     f"{feed.get('last_loaded_at') or 'never'} ({state})")
    return "\n".join(lines) + "\n"


def run_published(run, published: Path) -> None:
    """Artifacts and events of a published run (steps.Run `run`, its outputs at `published`)."""
    _safely("the run's notifications", _published, run, Path(published).absolute())


def _published(run, published: Path) -> None:
    results = json.loads((published / "results.json").read_text(encoding="utf-8"))
    rejected = [r.to_dict() for r in run.rejected]
    flags = results.get("history_flags") or []
    rates, warnings = headline_rows(results), warnings_of(run.validation)
    outcome = f"published; {len(rejected)} file(s) rejected" if rejected else "published"
    report = published / "report.html"
    _safely("the run's artifacts", _artifacts, run.run_name, summary_markdown(
        run.run_name, outcome, report, rates, rejected, warnings, flags, run.feed), report)
    base = {"run_id": run.run_id, "run": run.run_name, "published_to": str(published)}
    _safely("hypomag.run.published", _emit, "hypomag.run.published", f"hypomag.run.{run.run_id}", run.run_name,
            {**base, "report": str(report), "headline": rates, "files_loaded": [Path(f.path).name for f in run.inputs],
             "files_rejected": [r["path"] for r in rejected], "warnings": warnings, "drift_flags": flags,
             "feed": run.feed})
    _rejections_and_feed(run, base)
    for f in flags:
        _safely("hypomag.rate.drifted", _emit, "hypomag.rate.drifted", f"hypomag.rate.{f['measure'].replace(' ', '-')}",
                f["measure"], {**base, **f})


def run_failed(run, reason: str) -> None:
    """Artifact and events of a failed run: the reason; nothing new was published."""
    _safely("the run's notifications", _failed, run, reason)


def _failed(run, reason: str) -> None:
    rejected = [r.to_dict() for r in run.rejected]
    _safely("the run's artifacts", _artifacts, run.run_name, summary_markdown(
        run.run_name, f"FAILED: {reason}", None, [], rejected, warnings_of(run.validation), [], run.feed), None)
    base = {"run_id": run.run_id, "run": run.run_name}
    _safely("hypomag.run.failed", _emit, "hypomag.run.failed", f"hypomag.run.{run.run_id}", run.run_name,
            {**base, "reason": reason, "files_rejected": [r["path"] for r in rejected]})
    _rejections_and_feed(run, base)


def _rejections_and_feed(run, base: dict[str, Any]) -> None:
    for r in run.rejected:
        _safely("hypomag.file.rejected", _emit, "hypomag.file.rejected", f"hypomag.file.{r.sha256}", r.name,
                {**base, **r.to_dict()})
    if run.feed.get("stale"):
        inbox = str(Path(run.spec.input_dir).resolve())
        _safely("hypomag.feed.stale", _emit, "hypomag.feed.stale", f"hypomag.inbox.{inbox}", inbox,
                {**base, "inbox": inbox, **run.feed})


def _artifacts(run_name: str, markdown: str, report: Path | None) -> None:
    from prefect.artifacts import create_link_artifact, create_markdown_artifact

    create_markdown_artifact(markdown=markdown, key=SUMMARY_KEY, description=f"hypomag run {run_name}")
    if report is not None:
        create_link_artifact(link=report.as_uri(), link_text=f"report {run_name}", key=REPORT_KEY,
                             description="the run's report.html")
