"""Typed errors. Each also inherits a builtin so callers can catch either.

The CLI turns any ``SarregError`` into a one-line message naming the file and the problem, and a non-zero
exit code, in one place (``sarreg.cli``).
"""
from __future__ import annotations


class SarregError(Exception):
    """Root of all sarreg errors."""

    exit_code = 1


class InputError(SarregError, ValueError):
    """An input file is missing, unreadable, not a raster, or its content cannot be used."""


class OptionError(InputError):
    """Options that contradict each other, or a value no option takes: a usage error (exit code 2, as click's)."""

    exit_code = 2


class BandError(InputError):
    """A band the raster does not have (``band`` of ``count``); ``option`` names the option that chose it."""

    def __init__(self, path: object, band: int, count: int, option: str = "--band", hint: str = ""):
        self.path, self.band, self.count, self.option = path, band, count, option
        super().__init__(f"{path}: band {band} out of range: it has {count} band{'s' if count != 1 else ''} "
                         f"({option} {band}{hint})")


class CRSError(InputError):
    """Missing or incompatible coordinate reference system."""


class OverlapError(InputError):
    """The scenes do not overlap (enough) in valid data."""


class WeightsError(SarregError, ValueError):
    """A checkpoint is missing, corrupt, or of an unknown architecture."""


class OutputError(SarregError, OSError):
    """An output cannot be written (not writable, exists without overwrite, would overwrite an input)."""


class RegistrationFailed(SarregError, RuntimeError):
    """Registration could not produce a transform (e.g. too few matches). Exit code 3.

    ``details``: what was tried, one line each, for the report (the message stays one short line)."""

    exit_code = 3

    def __init__(self, message: str = "", details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = list(details or [])


class LowQuality(SarregError, RuntimeError):
    """Registration produced a transform that failed the quality gates. Exit code 2."""

    exit_code = 2


class Interrupted(KeyboardInterrupt):
    """A termination signal turned into an exception, so ``finally`` blocks clean up as for Ctrl-C (the CLI: one
    line, exit 128 + ``signum``)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
