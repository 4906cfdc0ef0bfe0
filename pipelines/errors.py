"""User-facing errors: each maps to an exit code of the contract and prints as one line.

Exit codes (docs/contract.md): 1 blocking data failure (ValidationFailed only); 2 usage, configuration,
path or environment error (HypomagError and its other subclasses, and OSErrors such as a full
disk, mapped by `classify`); 130/143 stopped by SIGINT/SIGTERM (Stopped).
"""
from __future__ import annotations

import errno
import signal

EXIT_ENVIRONMENT = 2
EXIT_INTERNAL = 70  # sysexits EX_SOFTWARE: a bug, not one of the contract's cases


class HypomagError(Exception):
    """Base of the errors a user can act on (no traceback is shown for these)."""

    exit_code = 2


class ConfigError(HypomagError):
    """A bad configuration file or option (exit code 2)."""


class InputError(HypomagError):
    """A missing or unreadable input file, column or value (exit code 2).

    The message names the file, the column and, where it applies, the row.
    """


class PathError(HypomagError):
    """--out, --db or --input unsafe to use: not hypomag's, overlapping, unwritable, no space (exit code 2)."""


class EnvironmentFailure(HypomagError):
    """The machine cannot run hypomag as set up (e.g. Prefect's temporary API does not start): exit 2."""


class ValidationFailed(HypomagError):
    """The data failed a blocking expectation: nothing new is published (exit code 1)."""

    exit_code = 1


class Stopped(BaseException):
    """The run was stopped by SIGINT or SIGTERM (exit code 128 + signal number: 130 or 143).

    A BaseException, so that no `except Exception` on the way up swallows it.
    """

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum


def _chain(exc: BaseException):
    """The exception and its causes/contexts (Prefect re-raises errors wrapped in its own)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _signal_number(exc: BaseException) -> int | None:
    """SIGINT/SIGTERM behind an exception: ours (Stopped), Python's (KeyboardInterrupt) or Prefect's."""
    if isinstance(exc, Stopped):
        return exc.signum
    if isinstance(exc, KeyboardInterrupt):
        return signal.SIGINT
    if type(exc).__name__ == "TerminationSignal":  # prefect.exceptions.TerminationSignal
        return getattr(exc, "signal", signal.SIGTERM)
    return None


def _os_error_line(exc: OSError) -> str:
    """One line for an environment error: the file and what the system said."""
    where = exc.filename if exc.filename is not None else "hypomag"
    if exc.errno == errno.ENOSPC:
        return f"{where}: no space left on device (free some space or choose another --db/--out)"
    reason = exc.strerror or str(exc)
    return f"{where}: {reason}"


def classify(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for any exception that ends a command.

    A signal wins over whatever it interrupted; then a user error; then an environment error
    (OSError, or DuckDB's I/O and out-of-memory errors: exit 2); anything else is a bug (70).
    """
    chain = list(_chain(exc))
    for e in chain:
        signum = _signal_number(e)
        if signum is not None:
            return 128 + signum, f"stopped by {signal.Signals(signum).name}; the previous outputs are intact"
    for e in chain:
        if isinstance(e, HypomagError):
            return e.exit_code, str(e)
    for e in chain:
        if isinstance(e, OSError):
            return EXIT_ENVIRONMENT, _os_error_line(e)
        if "duckdb" in type(e).__module__ and type(e).__name__ in ("IOException", "OutOfMemoryException"):
            return EXIT_ENVIRONMENT, " ".join(str(e).split())
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return EXIT_INTERNAL, (f"internal error: {type(exc).__name__}: {first_line} "
                           "(run `hypomag --debug ...` for the traceback)")
