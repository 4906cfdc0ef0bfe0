"""User-facing errors: each maps to an exit code of the contract and prints as one line."""
from __future__ import annotations


class HypomagError(Exception):
    """Base of the errors a user can act on (no traceback is shown for these)."""

    exit_code = 2


class ConfigError(HypomagError):
    """A bad configuration file or option (exit code 2)."""


class InputError(HypomagError):
    """A missing or unreadable input file, column or value (exit code 2).

    The message names the file, the column and, where it applies, the row.
    """


class ValidationFailed(HypomagError):
    """The data failed a blocking expectation: nothing new is published (exit code 1)."""

    exit_code = 1
