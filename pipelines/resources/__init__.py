"""The project's data folders, shipped as package data (pyproject.toml maps them here).

pipelines.resources.sql is the top-level sql/ folder (models and seeds), .expectations is
expectations/ and .data_samples is data_samples/; pipelines/paths.py turns them into folders.
"""
