"""Typed errors of the toolkit.

Every problem a user can fix (a bad file, a wrong option) raises a :class:`TtaError`
subclass; the CLI prints it as one line ``Error: ...`` and exits with code 2. Anything
else is a bug and exits with code 1.
"""

from __future__ import annotations


class TtaError(Exception):
    """Base class of the errors a user can act on (exit code 2 in the CLI)."""

    exit_code = 2


class InputError(TtaError, ValueError):
    """A file, array or setting given by the user is missing, malformed, out of range or
    inconsistent (a ``ValueError`` too, so library callers can catch it as one)."""


class SensorError(TtaError):
    """Unknown sensor or an invalid sensor description."""


class OutputError(TtaError):
    """An output cannot be written where asked (existing file, equals an input, ...)."""


class ResourceError(TtaError):
    """The job as asked does not fit the machine (out of memory); the message says what to
    change."""
