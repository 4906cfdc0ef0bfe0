"""Report builders and templates: report.html from results.json-shaped data (never row-level data)."""
