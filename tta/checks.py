"""Up-front checks of numbers: settings in range before any work, products finite after it.

* :func:`check_adapt_config` - every :class:`~tta.engine.AdaptConfig` field that the config's
  own validation leaves to the engine (learning rate, seed, tiling, loss weights, adapter
  options), so that a bad value is an :class:`~tta.errors.InputError` before the scene is
  read, not a failure deep in tiling, losses or adapters;
* :func:`check_adapt_scene` - the same plus what depends on the scene (tile and patch against
  its ratio and size);
* :func:`check_finite_product` - a fused product must be finite outside the nodata mask.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tta.errors import InputError

__all__ = ["MAX_BANDS", "MAX_LR", "MAX_SEED", "check_adapt_config", "check_adapt_scene",
           "check_finite_product", "check_seed"]

#: Largest band count a model may be built for (multispectral sensors have up to 16).
MAX_BANDS = 256
#: Largest accepted seed (numpy, torch and scikit-learn all take it).
MAX_SEED = 2**32 - 1
#: Largest accepted learning rate: AdamW steps are about ``lr`` per weight, and every
#: weight the adapters train lives in [-1, 1].
MAX_LR = 1.0
_INT_OPTIONS = {"hidden": 4096, "cond_hidden": 4096, "kernel_size": 31}


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _int(value: Any, name: str, low: int, high: int | None = None) -> int:
    if not _is_int(value) or value < low or (high is not None and value > high):
        span = f">= {low}" if high is None else f"in {low}..{high}"
        raise InputError(f"{name} must be an integer {span}, got {value!r}")
    return int(value)


def _real(value: Any, name: str, low: float, high: float | None = None) -> float:
    ok = isinstance(value, int | float | np.number) and not isinstance(value, bool)
    v = float(value) if ok else float("nan")
    if not (math.isfinite(v) and v >= low and (high is None or v <= high)):
        span = f">= {low:g}" if high is None else f"in [{low:g}, {high:g}]"
        raise InputError(f"{name} must be a finite number {span}, got {value!r}")
    return v


def check_seed(seed: Any, name: str = "seed") -> int:
    """A seed in ``0..MAX_SEED``.

    Raises:
        InputError: Not an integer or out of range.
    """
    return _int(seed, name, 0, MAX_SEED)


def _check_adapter_options(kind: str, options: Any) -> None:
    from adapters import create_adapter

    if not isinstance(options, dict):
        raise InputError(f"adapter_options must be a mapping, got {options!r}")
    for key, high in _INT_OPTIONS.items():
        value = options.get(key)
        if value is not None:
            _int(value, f"adapter_options.{key}", 1, high)
    if options.get("kernel_size", 1) % 2 == 0:
        raise InputError(f"adapter_options.kernel_size must be odd, got {options['kernel_size']}")
    create_adapter(kind, **options)  # unknown options and the adapter's own checks


def check_adapt_config(cfg: Any) -> None:
    """Check the numbers of an :class:`~tta.engine.AdaptConfig` (see the module docstring).

    Raises:
        InputError: One line naming the setting and the accepted range.
    """
    from tta.losses.physics import _check_weights

    if cfg.lr is not None:
        _real(cfg.lr, "lr", 0.0, MAX_LR)
    _real(cfg.fraction, "fraction", 0.0, 1.0)
    _real(cfg.weight_decay, "weight_decay", 0.0)
    _real(cfg.max_nodata, "max_nodata", 0.0, 1.0)
    check_seed(cfg.seed)
    for name in ("steps", "patch", "tile", "min_patches", "max_patches"):
        _int(getattr(cfg, name), name, 0)
    _int(cfg.calibration_batches, "calibration_batches", 1)
    for name in ("batch_size", "inference_batch"):
        if getattr(cfg, name) is not None:
            _int(getattr(cfg, name), name, 1)
    if cfg.overlap is not None:
        _int(cfg.overlap, "overlap", 0, cfg.tile - 1)
    if cfg.loss_weights is not None:
        try:
            _check_weights(cfg.loss_weights, "loss_weights")
        except ValueError as exc:
            raise InputError(str(exc)) from None
    _check_adapter_options(cfg.adapter, cfg.adapter_options)


def check_adapt_scene(cfg: Any, scene: Any) -> None:
    """:func:`check_adapt_config` plus the settings that depend on ``scene``.

    Raises:
        InputError: Tile or patch not a multiple of the scene's ratio, overlap leaving no
            stride, or a scene smaller than one training patch.
    """
    check_adapt_config(cfg)
    r = int(scene.ratio)
    for name in ("tile", "patch"):
        value = getattr(cfg, name)
        if value % r:
            raise InputError(f"{name} {value} must be a multiple of the ratio {r}; try "
                             f"{max(r, value - value % r)}")
    if cfg.overlap is not None and cfg.overlap > cfg.tile - r:
        raise InputError(f"overlap {cfg.overlap} must be at most tile - ratio "
                         f"({cfg.tile - r}) so that tiles advance")
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
