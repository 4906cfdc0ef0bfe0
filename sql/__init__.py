"""Marks sql/ as the package pipelines.resources.sql, so the models and seeds ship in the wheel."""
