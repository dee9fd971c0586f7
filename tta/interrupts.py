"""Ctrl-C and SIGTERM as exceptions, so that every ``finally`` (temporary files) runs.

The CLI installs the handlers for the duration of a command: SIGINT and SIGTERM raise
:class:`Interrupted` (a :class:`KeyboardInterrupt`, so ``except Exception`` never swallows
it), and the command exits with ``128 + signal`` (130, 143). A signal whose exception was
swallowed where Python cannot raise (a weakref callback during an h5py write: Python drops
it as "unraisable"; that report is silenced here) is still pending:
:func:`raise_pending` raises it again, and :func:`tta.io.atomic.atomic_output` calls it
before a product replaces its final name, so an interrupted run never commits one.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

__all__ = ["Interrupted", "deferred_signals", "handling_signals", "raise_pending"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_pending: list[int] = []


class Interrupted(KeyboardInterrupt):
    """A command was stopped by a signal; ``exit_code`` is ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


def _handler(signum: int, _frame) -> None:
    _pending.append(signum)
    raise Interrupted(signum)


def _unraisable(previous):
    """An unraisable-exception hook that drops our own :class:`Interrupted` (still pending)."""

    def hook(unraisable) -> None:
        if not isinstance(unraisable.exc_value, Interrupted):
            previous(unraisable)

    return hook


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back inside the block (delivered when it ends), so that a step
    such as "create a temporary file and register its cleanup" is not cut in two."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def raise_pending() -> None:
    """Raise :class:`Interrupted` if a signal arrived inside :func:`handling_signals`."""
    if _pending:
        raise Interrupted(_pending[-1])


@contextlib.contextmanager
def handling_signals() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into :class:`Interrupted` inside the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    previous_hook = sys.unraisablehook
    _pending.clear()
    sys.unraisablehook = _unraisable(previous_hook)
    for s in _SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sys.unraisablehook = previous_hook
        _pending.clear()
