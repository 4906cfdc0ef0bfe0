"""Marks expectations/ as the package pipelines.resources.expectations, so the suites ship in the wheel."""
