"""Every argument and setting check of the toolkit, in one place.

Primitives (each raises :class:`~tta.errors.InputError`, a ``ValueError``, naming the
argument and the accepted range): :func:`check_int`, :func:`check_real`, :func:`check_bool`,
:func:`check_choice`, :func:`check_ratio`, :func:`check_multiple` (a side that must hold whole
MS pixels), :func:`check_gains` (MTF Nyquist gains), :func:`check_bchw` (a ``(B, C, H, W)``
float tensor).

Built on them:

* :func:`check_adapt_scene` - :meth:`tta.engine.AdaptConfig.validate` plus what depends on the
  scene (patch against its size);
* :func:`check_finite_product` - a fused product must be finite outside the nodata mask.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tta.errors import InputError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["MAX_BANDS", "MAX_LR", "MAX_SEED", "check_adapt_scene", "check_bchw",
           "check_bool", "check_choice", "check_finite_product", "check_gains",
           "check_int", "check_multiple", "check_ratio", "check_real", "check_seed"]

#: Largest band count a model may be built for (multispectral sensors have up to 16).
MAX_BANDS = 256
#: Largest accepted seed (numpy, torch and scikit-learn all take it).
MAX_SEED = 2**32 - 1
#: Largest accepted learning rate: AdamW steps are about ``lr`` per weight, and every
#: weight the adapters train lives in [-1, 1].
MAX_LR = 1.0

def _tensor_type() -> type | None:
    """``torch.Tensor`` once torch is imported, else None (nothing can be a tensor yet; the
    checks never import torch themselves, so the CLI starts fast)."""
    torch = sys.modules.get("torch")
    return torch.Tensor if torch is not None else None


def _as_int(value: Any) -> int | None:
    """``value`` as ``int`` when it is an integer (Python, NumPy or 0-d integer tensor), else
    None; ``bool`` is not a count."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    tensor = _tensor_type()
    if tensor is not None and isinstance(value, tensor) and value.ndim == 0 \
            and not value.is_floating_point() and str(value.dtype) != "torch.bool":
        return int(value)
    return None


def check_int(value: Any, name: str, low: int = 0, high: int | None = None) -> int:
    """``value`` as ``int``.

    Raises:
        InputError: Not an integer (``bool`` and floats are refused) or outside
            ``low..high``.
    """
    v = _as_int(value)
    if v is None or v < low or (high is not None and v > high):
        span = f">= {low}" if high is None else f"in {low}..{high}"
        raise InputError(f"{name} must be an integer {span}, got {value!r}")
    return v


def check_real(value: Any, name: str, low: float, high: float | None = None, *,
               low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite ``float`` in ``[low, high]`` (ends excluded when ``*_open``).

    Raises:
        InputError: Not a number, not finite or out of range.
    """
    ok = isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)
    v = float(value) if ok else float("nan")
    inside = (math.isfinite(v) and (v > low if low_open else v >= low)
              and (high is None or (v < high if high_open else v <= high)))
    if not inside:
        left = "(" if low_open else "["
        span = (f"> {low:g}" if low_open else f">= {low:g}") if high is None else \
            f"in {left}{low:g}, {high:g}{')' if high_open else ']'}"
        raise InputError(f"{name} must be a finite number {span}, got {value!r}")
    return v


def check_bool(value: Any, name: str) -> bool:
    """``value`` when it is ``True`` or ``False`` (a YAML ``yes``/``no`` is one; a string is
    not)."""
    if not isinstance(value, bool | np.bool_):
        raise InputError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """``value`` when it is one of ``choices``.

    Raises:
        InputError: Naming the choices.
    """
    options = list(choices)
    try:
        known = value in options
    except TypeError:  # unhashable or uncomparable value
        known = False
    if not known:
        listed = ", ".join("none" if c is None else str(c) for c in options)
        raise InputError(f"unknown {name} {value!r}; choose one of {listed}")
    return value


def check_ratio(ratio: Any, name: str = "ratio") -> int:
    """A PAN/MS resolution ratio: an integer >= 1."""
    return check_int(ratio, name, 1)


def check_multiple(value: Any, ratio: int, name: str) -> int:
    """A PAN-grid side (tile, patch) that holds whole MS pixels: a positive multiple of
    ``ratio``.

    Raises:
        InputError: Naming the nearest smaller multiple to use instead.
    """
    v = check_int(value, name, 1)
    if v % ratio:
        raise InputError(f"{name} {v} must be a multiple of the ratio {ratio}; try "
                         f"{max(ratio, v - v % ratio)}")
    return v


def check_gains(gnyq: Sequence[float] | Tensor | float, n: int | None = None) -> tuple[float, ...]:
    """MTF Nyquist gains as a tuple of Python floats (length ``n`` when given; a scalar is
    repeated), each in (0, 1). Gains are settings, never part of an autograd graph.

    Raises:
        InputError: No gain, a count other than ``n``, or a gain outside (0, 1).
    """
    tensor = _tensor_type()
    if tensor is not None and isinstance(gnyq, tensor):
        values = [float(v) for v in gnyq.detach().reshape(-1).cpu().tolist()]
    else:
        try:
            values = [float(v) for v in np.asarray(gnyq, dtype=np.float64).reshape(-1)]
        except (TypeError, ValueError):
            raise InputError(f"MTF gains must be numbers, got {gnyq!r}") from None
    if n is not None and len(values) == 1:
        values = values * n
    if not values:
        raise InputError("no MTF gain given")
    if n is not None and len(values) != n:
        raise InputError(f"{len(values)} MTF gains given for {n} bands")
    for g in values:
        if not 0.0 < g < 1.0:
            raise InputError(f"MTF Nyquist gains must lie in (0, 1), got {g}")
    return tuple(values)


def check_bchw(x: Any, name: str = "x") -> Tensor:
    """``x`` when it is a floating-point ``(B, C, H, W)`` tensor.

    Raises:
        InputError: Not a tensor, not 4-D or not floating point.
    """
    tensor = _tensor_type()
    if tensor is None or not isinstance(x, tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise InputError(f"{name} must be (B, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor, got {x.dtype}")
    return x


def check_seed(seed: Any, name: str = "seed") -> int:
    """A seed in ``0..MAX_SEED``.

    Raises:
        InputError: Not an integer or out of range.
    """
    return check_int(seed, name, 0, MAX_SEED)


def check_adapt_scene(cfg: Any, scene: Any) -> None:
    """:meth:`~tta.engine.AdaptConfig.validate` at the scene's ratio, plus the scene's size.

    Raises:
        InputError: Tile or patch not a multiple of the scene's ratio, overlap leaving no
            stride, or a scene smaller than one training patch.
    """
    cfg.validate(ratio=int(scene.ratio))
    height, width = scene.pan.shape
    if min(height, width) < cfg.patch:
        raise InputError(f"patch {cfg.patch} is larger than the scene ({height}x{width}); "
                         "pass a smaller --patch")


def check_finite_product(fused: np.ndarray, scene: Any, what: str = "fused product") -> None:
    """Refuse a product with NaN or infinite values outside the scene's nodata mask.

    Raises:
        InputError: Naming the share of bad pixels and the usual cause.
    """
    bad = ~np.isfinite(fused).all(axis=0)
    if scene.nodata is not None:
        bad &= ~scene.nodata
    n = int(bad.sum())
    if n:
        raise InputError(
            f"{scene.source}: the {what} has NaN or infinite values in {n} of {bad.size} "
            "pixels; nothing written. Areas without signal (e.g. all-zero fill) need a nodata "
            "mask, and a network or setting that diverges needs other settings")
