"""Marks data_samples/ as the package pipelines.resources.data_samples, so `hypomag demo` has its data in a wheel."""
