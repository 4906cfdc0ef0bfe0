"""Where the project's non-Python parts are, in an editable install and in an installed wheel alike.

The repository keeps sql/, expectations/, data_samples/ and reports/ at its top level; pyproject.toml
ships them as the packages pipelines.resources.* and pipelines.reports, and importlib.resources finds them
wherever the installation put them (the checkout for `pip install -e .`, site-packages for a wheel).
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def package_folder(package: str) -> Path:
    """The folder on disk that holds `package`'s files.

    Callers glob and open these folders, so they must be real directories: true for both install
    modes (wheels are unpacked), but not for a package imported from a zip file.
    """
    try:
        folder = files(package)
    except ModuleNotFoundError as missing:
        raise RuntimeError(f"{package} not found: hypomag is not installed in this Python; run `make install` "
                           "(or `pip install -e .` in the checkout)") from missing
    if not isinstance(folder, Path) or not folder.is_dir():
        raise RuntimeError(f"{package}: its data files are not in a folder on disk ({folder!r}); "
                           "install hypomag with pip (wheel or editable), not as a zip")
    return folder


SQL_DIR = package_folder("pipelines.resources.sql")
SEEDS_DIR = SQL_DIR / "seeds"
EXPECTATIONS_DIR = package_folder("pipelines.resources.expectations")
DATA_SAMPLES_DIR = package_folder("pipelines.resources.data_samples")
REPORTS_DIR = package_folder("pipelines.reports")
# The folder that holds the pipelines package: the checkout in an editable install,
# site-packages in a wheel install.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
