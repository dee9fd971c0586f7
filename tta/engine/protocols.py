"""What the engine needs of a scene and of an adapter (its seams, as Protocols).

A scene read lazily by window (streaming) or held on another machine plugs in by offering
:class:`SceneLike`; an adapter by offering :class:`AdapterLike` (every
:class:`adapters.Adapter` does). The engine reads nothing else of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np
from torch import Tensor, nn

__all__ = ["AdapterLike", "SceneLike"]


@runtime_checkable
class SceneLike(Protocol):
    """A scene in DN (:class:`tta.io.Scene` is one).

    Attributes:
        ms: ``(C, h, w)`` float32; pan: ``(H, W)`` float32 with ``H = ratio * h``.
        nodata: ``(H, W)`` bool mask or None; gt: reference ``(C, H, W)`` or None.
    """

    ms: np.ndarray
    pan: np.ndarray
    nodata: np.ndarray | None
    gt: np.ndarray | None
    sensor: Any
    ratio: int
    max_value: float
    source: str

    @property
    def n_bands(self) -> int: ...

    @property
    def shape(self) -> tuple[int, int, int]: ...

    @property
    def is_reduced(self) -> bool: ...


@runtime_checkable
class AdapterLike(Protocol):
    """An adapter as the engine drives it (:class:`adapters.Adapter`): attach at a
    decomposition, optionally calibrate, see each batch's inputs, train its parameters."""

    kind: str
    default_lr: float
    trains_extractor: bool
    calibrates: bool

    def attach(self, decomposition: Any) -> AdapterLike: ...

    def calibrate(self, loss_fn: Callable[[], Tensor], n_batches: int = 1
                  ) -> dict[str, Any] | None: ...

    def set_condition(self, ms: Tensor, pan: Tensor, lms: Tensor) -> None: ...

    def trainable_parameters(self) -> list[nn.Parameter]: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def num_trainable(self) -> int: ...

    def config(self) -> dict[str, Any]: ...
