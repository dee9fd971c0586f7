"""Executors: where independent jobs run, in-process or on a distributed engine.

An :class:`Executor` takes a picklable function and a list of argument records and yields
``(index, result)`` pairs as jobs finish (any order). Jobs report their own failures in
their result; an executor raises only for failures of the engine itself. Executors are
context managers (``with get_executor("ray") as ex: ...``) that release what they started.

Registered names: ``local`` (one job after another in this process) and ``ray`` (one Ray
task per job on a local Ray or an existing cluster; ``pip install tta-pansharpening[ray]``).
:func:`default_executor` picks ``ray`` when it is importable, else ``local``.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from tta.errors import InputError

__all__ = ["Executor", "default_executor", "get_executor", "list_executors",
           "register_executor"]


@runtime_checkable
class Executor(Protocol):
    """Runs independent jobs; see the module docstring."""

    name: str

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any], *,
                      on_error: Callable[[Any, BaseException], Any] | None = None
                      ) -> Iterator[tuple[int, Any]]:
        """Run ``fn(item)`` for every item; yield ``(index, result)`` as each finishes.

        ``on_error(item, exc)`` turns an exception escaping ``fn`` (or the engine losing the
        job, e.g. a worker killed) into that job's result; without it the exception is
        raised."""
        ...

    def describe(self) -> dict[str, Any]:
        """Plain-data description (engine, address, resources per job) for reports."""
        ...


_REGISTRY: dict[str, tuple[str, str]] = {
    "local": ("tta.executors.local", "LocalExecutor"),
    "ray": ("tta.executors.ray_executor", "RayExecutor"),
}


def register_executor(name: str, module: str, attr: str) -> None:
    """Register an executor class ``module.attr`` under ``name`` (imported on first use)."""
    _REGISTRY[name] = (module, attr)


def list_executors() -> list[str]:
    """Registered executor names."""
    return sorted(_REGISTRY)


def ray_available() -> bool:
    """Whether the optional ``ray`` package can be imported."""
    return importlib.util.find_spec("ray") is not None


def default_executor() -> str:
    """``ray`` when Ray is installed, else ``local``."""
    return "ray" if ray_available() else "local"


def get_executor(name: str = "auto", **options: Any) -> Executor:
    """The executor registered as ``name`` (``auto``: :func:`default_executor`).

    Raises:
        InputError: Unknown name (close matches listed) or its engine is not installed.
    """
    if name == "auto":
        name = default_executor()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InputError(f"unknown executor {name!r} (known: {', '.join(list_executors())})"
                         f"{hint}")
    module, attr = _REGISTRY[name]
    return getattr(importlib.import_module(module), attr)(**options)
