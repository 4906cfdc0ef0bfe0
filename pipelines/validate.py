"""Validate: Great Expectations suites (expectations/*.json) run inside DuckDB.

Placeholder wiring for the validation issue: the flow calls these three entry points; until the
suites exist each records nothing and blocks nothing.
"""
from __future__ import annotations

from pipelines.steps import Run


def validate_raw(run: Run) -> Run:
    return run


def validate_normalised(run: Run) -> Run:
    return run


def validate_marts(run: Run) -> Run:
    return run
