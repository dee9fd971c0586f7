"""One registry per extension point: adapters, samplers, loss terms, output writers.

A :class:`Registry` maps names to entries in registration order. The CLI's choices, the
config validation and the README's lists read from the registries, so adding an entry is
one ``register`` call (see the README's Contributing section); nothing keeps a copy.

Reference: the ``register_model`` / ``create_model`` / ``list_models`` pattern of timm.

Example:
    >>> reg = Registry("sampler")
    >>> @reg.register("first")
    ... def first(features, k, *, seed=0):
    ...     return features[:k]
    >>> reg.names()
    ('first',)
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from tta.errors import InputError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one extension point, in registration order.

    Args:
        what: What an entry is, for messages (``"adapter"``, ``"output format"``).
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T) -> T: ...

    def register(self, name: str, entry: T | None = None):
        """Add ``entry`` as ``name`` (or decorate it: ``@registry.register(name)``).

        Raises:
            ValueError: ``name`` is empty or taken (a programming error, not a user's).
        """
        def add(obj: T) -> T:
            if not isinstance(name, str) or not name:
                raise ValueError(f"a {self.what} needs a non-empty name, got {name!r}")
            if name in self._entries:
                raise ValueError(f"{self.what} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return add if entry is None else add(entry)

    def unregister(self, name: str) -> T:
        """Remove and return the entry ``name`` (tests and plug-ins that clean up)."""
        return self._entries.pop(name)

    def get(self, name: str) -> T:
        """The entry ``name``.

        Raises:
            InputError: Unknown name; lists the names and the closest one.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            pass
        close = difflib.get_close_matches(str(name), list(self._entries), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(f"unknown {self.what} {name!r}{hint}; choose one of "
                         f"{', '.join(self._entries)}")

    def names(self) -> tuple[str, ...]:
        """Every name, in registration order."""
        return tuple(self._entries)

    def items(self):
        return self._entries.items()

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:  # unhashable
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._entries)})"
