"""The configuration documents itself: every key has a meaning, the parameters table (docs/configuration.md) and
the shipped example file are exactly what the code generates, and the example loads."""
from __future__ import annotations

import re
from pathlib import Path

from pipelines.config import MEANINGS, defaults, defaults_toml, load_config, parameters_table

ROOT = Path(__file__).resolve().parent.parent


def test_every_key_has_a_meaning_and_no_meaning_is_orphaned():
    keys = {f"{section}.{key}" for section, key, _ in defaults()}
    assert keys == set(MEANINGS)


def test_parameters_table_is_the_generated_one():
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- parameters:begin[^>]*-->\n(.*?)<!-- parameters:end -->", page, re.S)
    assert block, "docs/configuration.md lacks the generated parameters block"
    assert "docs/configuration.md" in (ROOT / "README.md").read_text(encoding="utf-8"), "README links the table"
    assert block.group(1) == parameters_table(), "regenerate: python -c 'from pipelines.config import parameters_table'"


def test_example_config_is_the_defaults_and_loads(tmp_path):
    example = ROOT / "hypomag.example.toml"
    assert example.read_text(encoding="utf-8") == defaults_toml(), "regenerate: hypomag config --defaults"
    assert load_config(example).to_dict() | {"source_path": None} == load_config(None).to_dict()


def test_readme_stays_a_users_page():
    assert len((ROOT / "README.md").read_bytes()) < 12 * 1024
